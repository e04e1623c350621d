"""Planning runs: which day and products a run processes, and the commands of its ML steps.

Two plans, one per DAG: ``DayPlan`` (the daily masking run: a day's products, masked with a registered
model) and ``TrainingPlans`` (a training run over a period: its products and, per model kind, a ``TrainingPlan``
with the training command and the registration command). Both travel between Airflow tasks as JSON (``as_xcom``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import DAY_SPLIT, DataRoot, ModelFiles, matchups_path
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.naming import MISSIONS, ProductName
from cloud_tasks.registry import KINDS, NO_MODEL, PRODUCTION, ModelRegistry, Version

DEFAULT_CHUNK_SIZE = 8  # products per mapped extract-and-convert instance (at least)
MAX_MAPPED_INSTANCES = 64  # big days get bigger chunks: the scheduler's CPU grows faster than the instances
MANUAL = "manual"  # Airflow's run type of a triggered run; scheduled and backfill runs own their interval
HOLDOUTS = ("products", "days")  # how a training run keeps products for its evaluation


class PlanError(CloudTasksError):
    """The run cannot be planned as asked (a conflicting conf, an unknown model): retrying will not help."""


@dataclass(frozen=True)
class DayRun:
    """What every stage needs to find its inputs and outputs: the day processed and the data root."""

    day: dt.date
    data: DataRoot

    @classmethod
    def of(cls, day: str | dt.date, data_root: str | Path) -> DayRun:
        """From the plan's values as they travel between tasks (ISO date, path string)."""
        return cls(day if isinstance(day, dt.date) else dt.date.fromisoformat(day), DataRoot(data_root))


def chunk_products(by_day: dict[str, list[str]], chunk_size: int, max_chunks: int = MAX_MAPPED_INSTANCES) -> list:
    """Split each day's products into chunks ``{"day", "products"}`` of ``chunk_size``, enlarged so that at
    most about ``max_chunks`` remain: a day of S3A + S3B (~2000 products) at size 1 becomes 63 chunks of 32.

    Deterministic for a given product set, so that a product keeps its map index across re-runs.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    total = sum(len(products) for products in by_day.values())
    size = max(chunk_size, math.ceil(total / max_chunks))
    return [
        {"day": day, "products": products[i : i + size]}
        for day, products in sorted(by_day.items())
        for i in range(0, len(products), size)
    ]


def chunk_label(chunk: dict) -> str:
    """What the Airflow UI shows for a mapped instance: the day, its product (or first product and a count)."""
    products = chunk["products"]
    first = ProductName.parse(products[0]).stem
    more = f" (+{len(products) - 1} more)" if len(products) > 1 else ""
    return f"{chunk['day']} {first}{more}"


def inference_command(run: DayRun, model: Path, *, thermal_model: Path | None = None, geotiff=False) -> list[str]:
    """The ``python -m cloud_tasks`` arguments masking a day's products with ``model`` (day products) and
    ``thermal_model`` (every product then); the same in the GPU image and locally (paths are the data root's own:
    the image sees it at the same path)."""
    hdf = run.data.hdf(run.day) if thermal_model else run.data.hdf_split(run.day, DAY_SPLIT)
    arguments = ["inference", str(model), str(hdf), str(run.data.masks(run.day).folder)]
    arguments += ["--thermal-model", str(thermal_model)] if thermal_model else []
    return arguments + (["--geotiff"] if geotiff else [])


@dataclass(frozen=True)
class DayPlan:
    """A masking run: its day, products, match-up table and the registered models that mask them."""

    run: DayRun
    products: tuple[str, ...]
    matchups: Path
    model: Version | None  # the day model; None: no production model yet, masking is skipped
    thermal_model: Version | None = None  # None: night products and pixels without reflectances are not masked
    geotiff: bool = False  # also a Cloud-Optimized GeoTIFF of each mask

    @property
    def models(self) -> list[Version]:
        """The models that mask, in the order the masks record them (day, thermal)."""
        return [version for version in (self.model, self.thermal_model) if version is not None] if self.model else []

    @property
    def model_records(self) -> list[dict]:
        """The models as the summary and the mask step see them: ``{"kind", "version", "sha256"}`` each."""
        return [{"kind": v.kind, "version": v.name, "sha256": v.sha256} for v in self.models]

    @property
    def skip_reason(self) -> str:
        if self.model is not None:
            return ""
        return f"no day model has been promoted to production yet in {self.run.data.registry.folder}: masks skipped"

    @property
    def notes(self) -> list[str]:
        """What the summary should say about the masking planned: skipped, or night products left unmasked."""
        if self.skip_reason:
            return [self.skip_reason]
        if self.thermal_model is None:
            return [f"no thermal model in production in {self.run.data.registry.folder}: night products not masked"]
        return []

    @property
    def inference_arguments(self) -> list[str]:
        if not self.model:
            return []
        thermal = self.thermal_model.files.model if self.thermal_model else None
        return inference_command(self.run, self.model.files.model, thermal_model=thermal, geotiff=self.geotiff)

    @property
    def inference_inputs(self) -> list[str]:
        """What masking only reads, mounted read-only in its container: the converted products and the models."""
        if not self.model:
            return []
        hdf = self.run.data.hdf(self.run.day) if self.thermal_model else self.run.data.hdf_split(self.run.day)
        return [str(hdf), *(str(version.files.model) for version in self.models)]

    def as_xcom(self) -> dict:
        """The plan as the DAG's tasks receive it (JSON values, one key per downstream need)."""
        return {
            "day": self.run.day.isoformat(),
            "data_root": str(self.run.data.root),
            "products": list(self.products),
            "matchups": str(self.matchups),
            "model_version": self.model.name if self.model else None,
            "models": self.model_records,
            "inference_arguments": self.inference_arguments,
            "inference_inputs": self.inference_inputs,
            "skip_reason": self.skip_reason,
            "notes": self.notes,
        }


def run_day(params: dict, run_type: str | None, logical_date, data_interval) -> tuple[dt.date, dt.date]:
    """The UTC day ``[start, end)`` a run processes.

    A scheduled or backfill run processes its own data interval; a ``date`` in its conf that names
    another day is refused. A manual run takes the ``date`` param, else the day of its logical date,
    else its data interval.
    """
    asked = dt.date.fromisoformat(params["date"]) if params.get("date") else None
    interval_day = data_interval[0].astimezone(dt.UTC).date() if data_interval and data_interval[0] else None
    if run_type not in (None, MANUAL):
        if params.get("file_list"):
            raise PlanError(f"a {run_type} run processes its data interval: the 'file_list' param is for manual runs")
        if asked is not None and asked != interval_day:
            raise PlanError(
                f"a {run_type} run processes its data interval ({interval_day}); "
                f"its conf asks for date={asked}: trigger a manual run for that day instead"
            )
        day = interval_day
    else:
        day = asked or (logical_date.astimezone(dt.UTC).date() if logical_date else interval_day)
    if day is None:
        raise PlanError("a run without a data interval needs the 'date' or the 'file_list' param")
    return day, day + dt.timedelta(days=1)


def find_products(params: dict, start: dt.date, end: dt.date) -> list[Path]:
    """The product zips of ``[start, end)`` in the archive (or those of the ``file_list`` param)."""
    from cloud_tasks.archive import discover, discover_from_list

    if params.get("file_list"):
        return discover_from_list(params["file_list"])
    begin = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    finish = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)
    return discover(params["archive_root"], begin, finish, params.get("missions") or list(MISSIONS))


def plan_day(params: dict, *, run_type=None, logical_date=None, data_interval=None, deployment=None) -> DayPlan:
    """Plan a masking run; its product list may be empty (the DAG waits for products to arrive).

    With a ``deployment`` (the DAGs'), every path, runner and image the Params name is checked against it.
    """
    if deployment is not None:
        deployment.check_params(params)
    start, end = run_day(params, run_type, logical_date, data_interval)
    data = DataRoot(params["data_root"])
    day_kind, thermal_kind = KINDS
    return DayPlan(
        run=DayRun(start, data),
        products=tuple(str(z) for z in find_products(params, start, end)),
        matchups=Path(params.get("matchups") or matchups_path(params["archive_root"], start)),
        model=_model_version(data, params.get("model") or PRODUCTION, day_kind),
        thermal_model=_model_version(data, params.get("thermal_model") or PRODUCTION, thermal_kind),
        geotiff=bool(params.get("geotiff")),
    )


def _model_version(data: DataRoot, name: str, kind: str) -> Version | None:
    """The registered version of ``kind`` that ``name`` names; None for ``production`` when none of the kind was
    promoted yet, and for ``none``."""
    registry = ModelRegistry(data.root)
    if name == NO_MODEL or (name == PRODUCTION and registry.production_name(kind) is None):
        return None
    try:
        version = registry.version(name, kind)
    except CloudTasksError as exc:
        raise PlanError(f"{kind} model {name!r}: {exc}") from None
    if version.kind != kind:
        raise PlanError(f"{kind} model {name!r}: {version.name} is a {version.kind} model")
    return version


@dataclass(frozen=True)
class TrainingPlan:
    """One model kind's training run: the period's products, the run's key and folder, the train and register
    commands (the kind is ``options.kind``)."""

    data: DataRoot
    start: dt.date
    end: dt.date
    products: dict[str, list[str]]  # day (ISO) -> product zips
    options: TrainOptions
    holdout: str  # one of HOLDOUTS

    @property
    def kind(self) -> str:
        return self.options.kind

    @property
    def key(self) -> str:
        """The run's identity: period, products and options, the kind among them (same key, same training folder
        and version)."""
        stems = sorted(ProductName.parse(p).stem for products in self.products.values() for p in products)
        payload = json.dumps({"options": self.options.as_dict(), "products": stems, "holdout": self.holdout})
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        return f"{self.start:%Y%m%d}-{self.end:%Y%m%d}-{digest}"

    @property
    def training(self) -> ModelFiles:
        return self.data.registry.training(self.key)

    @property
    def train_arguments(self) -> list[str]:
        inputs = self.data.registry.training_list(self.key, "train")
        return ["train", str(inputs), str(self.training.folder), *self.options.cli_arguments()]

    @property
    def register_arguments(self) -> list[str]:
        registry = self.data.registry
        arguments = ["models", "register", str(self.data.root), str(self.training.folder), "--key", self.key]
        arguments += ["--inputs", str(registry.training_list(self.key, "train"))]
        if self.holdout == "days":
            arguments += ["--holdout", str(registry.training_list(self.key, "holdout"))]
        return [*arguments, "--start", self.start.isoformat(), "--end", self.end.isoformat()]

    def holdout_days(self) -> list[str]:
        """Days kept whole for the evaluation (the last one) when holding out by day."""
        return sorted(self.products)[-1:] if self.holdout == "days" else []

    def as_run(self) -> dict:
        """What the kind's own tasks need (JSON values): its key and commands."""
        return {
            "kind": self.kind,
            "key": self.key,
            "train_arguments": self.train_arguments,
            # what training only reads: the converted products and its file list (its OUT stays writable)
            "train_inputs": [str(self.data.root / "hdf"), str(self.data.registry.training_list(self.key, "train"))],
            "register_arguments": self.register_arguments,
        }


@dataclass(frozen=True)
class TrainingPlans:
    """A training run of one or more model kinds over the same period and products: one plan per kind."""

    plans: tuple[TrainingPlan, ...]  # in KINDS order

    @property
    def data(self) -> DataRoot:
        return self.plans[0].data

    @property
    def products(self) -> dict[str, list[str]]:
        return self.plans[0].products

    def of(self, kind: str) -> TrainingPlan:
        """The plan of ``kind`` (KeyError when the run does not train that kind)."""
        return {plan.kind: plan for plan in self.plans}[kind]

    def as_xcom(self) -> dict:
        """The plans as the DAG's tasks receive them: what the kinds share, and a list ``runs`` (one per kind)."""
        return {
            "data_root": str(self.data.root),
            "chunks": self.products,
            "holdout_days": self.plans[0].holdout_days(),
            "runs": [plan.as_run() for plan in self.plans],
        }


def training_kinds(params: dict) -> tuple[str, ...]:
    """The model kinds a training run trains (its ``kinds`` param; every kind by default), in ``KINDS`` order."""
    asked = params.get("kinds") or list(KINDS)
    if not isinstance(asked, list | tuple) or any(kind not in KINDS for kind in asked):
        raise PlanError(f"kinds must list model kinds among {', '.join(KINDS)}, not {asked!r:.100}")
    return tuple(kind for kind in KINDS if kind in asked)


def plan_training(params: dict, *, deployment=None) -> TrainingPlans:
    """Plan a training run over ``[start, end)``: every day's products, converted with the daily functions, and one
    training of each kind the ``kinds`` param names on them."""
    if deployment is not None:
        deployment.check_params(params)
    start, end = dt.date.fromisoformat(params["start"]), dt.date.fromisoformat(params["end"])
    if end <= start:
        raise PlanError(f"the training period is empty: end {end} is not after start {start}")
    holdout = params.get("holdout") or HOLDOUTS[0]
    if holdout not in HOLDOUTS:
        raise PlanError(f"holdout must be one of {', '.join(HOLDOUTS)}, not {holdout!r}")
    kinds = training_kinds(params)
    by_day = {}
    for offset in range((end - start).days):
        day = start + dt.timedelta(days=offset)
        zips = find_products(params, day, day + dt.timedelta(days=1))
        if zips:
            by_day[day.isoformat()] = [str(z) for z in zips]
    if not by_day:
        raise PlanError(f"no SLSTR product found in {params['archive_root']} from {start} to {end}")
    if holdout == "days" and len(by_day) < 2:
        raise PlanError("holding out by day needs products on at least two days")
    options = TrainOptions.from_mapping(params)
    data = DataRoot(params["data_root"])
    return TrainingPlans(
        tuple(TrainingPlan(data, start, end, by_day, options.replace(kind=kind), holdout) for kind in kinds)
    )
