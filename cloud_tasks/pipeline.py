"""The pipeline's stages for one day of data, keyed by date and product (never by run id).

The Airflow DAG and the ``pipeline`` command both call these functions, so a re-run or a
backfill of the same day finds the same files and skips the work already done. Where each
output lives is ``cloud_tasks.layout``'s business.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cloud_tasks.atomic import write_json
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import DAY_SPLIT, SPLITS, DataRoot, matchups_path
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.naming import MISSIONS, ProductName

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayRun:
    """What every stage needs to find its inputs and outputs: the day processed and the data root."""

    day: dt.date
    data: DataRoot

    @classmethod
    def of(cls, day: str | dt.date, data_root: str | Path) -> DayRun:
        """From the plan's values as they travel between tasks (ISO date, path string)."""
        return cls(day if isinstance(day, dt.date) else dt.date.fromisoformat(day), DataRoot(data_root))


DEFAULT_CHUNK_SIZE = 8  # products per mapped convert instance (at least)
MAX_MAPPED_INSTANCES = 256  # well below [core] max_map_length (1024): the scheduler stays responsive


def chunk_products(paths: list[str], chunk_size: int, max_chunks: int = MAX_MAPPED_INSTANCES) -> list[list[str]]:
    """Split a day's products into chunks of ``chunk_size``, enlarged so that at most ``max_chunks`` remain.

    A day of S3A + S3B (~2000 products) at chunk size 1 becomes 250 chunks of 8, not 2000 instances.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    size = max(chunk_size, math.ceil(len(paths) / max_chunks))
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def chunk_label(chunk: list[str]) -> str:
    """What the Airflow UI shows for a mapped instance: its product (or first product and a count)."""
    first = Path(chunk[0]).name.removesuffix(".zip").removesuffix(".SEN3")
    return first if len(chunk) == 1 else f"{first} (+{len(chunk) - 1} more)"


def train_command(run: DayRun, options: TrainOptions) -> list[str]:
    """The ``python -m cloud_tasks`` arguments training a day's model; the same in the GPU image and locally.

    Paths are the data root's own, so the image must see the data root at the same path (bind mount).
    """
    inputs, out = run.data.hdf_split(run.day, DAY_SPLIT), run.data.model(run.day).folder
    return ["train", str(inputs), str(out), *options.cli_arguments()]


def inference_command(run: DayRun, model: Path) -> list[str]:
    """The ``python -m cloud_tasks`` arguments masking a day's products with ``model``."""
    return ["inference", str(model), str(run.data.hdf_split(run.day, DAY_SPLIT)), str(run.data.masks(run.day).folder)]


@dataclass(frozen=True)
class RunPlan:
    """What a run processes: its day, products, ML commands (with what each only reads) and match-up table."""

    run: DayRun
    products: tuple[str, ...]
    matchups: Path
    train_options: TrainOptions | None  # None: masks are made with an existing model
    model: Path  # the model inference uses (the day's own when training)
    train_arguments: list[str] = field(init=False)
    inference_arguments: list[str] = field(init=False)

    def __post_init__(self):
        train = train_command(self.run, self.train_options) if self.train_options else []
        object.__setattr__(self, "train_arguments", train)
        object.__setattr__(self, "inference_arguments", inference_command(self.run, self.model))

    @property
    def train_inputs(self) -> list[str]:
        """What training only reads, mounted read-only in its container."""
        return [str(self.run.data.hdf_split(self.run.day, DAY_SPLIT))]

    @property
    def inference_inputs(self) -> list[str]:
        return [str(self.run.data.hdf_split(self.run.day, DAY_SPLIT)), str(self.model)]

    def as_xcom(self) -> dict:
        """The plan as the DAG's tasks receive it (JSON values, one key per downstream need)."""
        return {
            "day": self.run.day.isoformat(),
            "data_root": str(self.run.data.root),
            "products": list(self.products),
            "matchups": str(self.matchups),
            "train_arguments": self.train_arguments,
            "train_inputs": self.train_inputs,
            "inference_arguments": self.inference_arguments,
            "inference_inputs": self.inference_inputs,
        }


def _find_products(params: dict, data_interval_start, data_interval_end) -> tuple[list, dt.date, str]:
    """The run's product zips, its day and where they were looked for (for the error when there is none)."""
    from cloud_tasks.archive import discover, discover_from_list

    if params.get("file_list"):
        zips = discover_from_list(params["file_list"])
        if not zips:
            raise CloudTasksError(f"{params['file_list']}: the file list names no product")
        day = dt.date.fromisoformat(params["date"]) if params.get("date") else ProductName.parse(zips[0]).start.date()
        return zips, day, params["file_list"]
    if params.get("date"):
        start = dt.datetime.combine(dt.date.fromisoformat(params["date"]), dt.time(), tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1)
    elif data_interval_start is not None and data_interval_end is not None:
        start, end = data_interval_start, data_interval_end
    else:
        raise CloudTasksError("a run without a data interval needs the 'date' or the 'file_list' param")
    missions = params.get("missions") or list(MISSIONS)
    zips = discover(params["archive_root"], start, end, missions)
    return zips, start.date(), f"{params['archive_root']} for {', '.join(missions)} in [{start}, {end})"


def plan_run(params: dict, *, data_interval_start=None, data_interval_end=None) -> RunPlan:
    """Decide what a run processes: its day, products and the ML commands.

    Products come from ``params['file_list']`` if set, else from the archive for ``params['date']``
    if set, else for the run's data interval. Training options are the ``TrainOptions`` fields among
    ``params`` (the others keep their defaults).
    """
    zips, day, where = _find_products(params, data_interval_start, data_interval_end)
    if not zips:
        raise CloudTasksError(f"no SLSTR product found in {where}")
    train = params.get("train", True)
    if not train and not params.get("model_path"):
        raise CloudTasksError("training is off ('train' param false): set 'model_path' to an existing model")
    run = DayRun(day, DataRoot(params["data_root"]))
    return RunPlan(
        run=run,
        products=tuple(str(z) for z in zips),
        matchups=Path(params.get("matchups") or matchups_path(params["archive_root"], day)),
        train_options=TrainOptions.from_mapping(params) if train else None,
        model=run.data.model(day).model if train else Path(params["model_path"]),
    )


def extract_chunk(zips: list[str], run: DayRun) -> list[str]:
    """Extract a chunk's products, skipping those already converted; fail (after extracting the good
    ones) if any product is bad."""
    from cloud_tasks.convert import existing_output
    from cloud_tasks.extract import extract_products

    hdf = run.data.hdf(run.day)
    todo = [Path(z) for z in zips if existing_output(hdf, ProductName.parse(z).stem) is None]
    if len(todo) < len(zips):
        log.info("%d of %d products already converted: not extracted again", len(zips) - len(todo), len(zips))
    return [str(p) for p in extract_products(todo, run.data.extracted(run.day), keep_going=True)]


def convert_chunk(zips: list[str], run: DayRun, *, keep_extracted: bool = False) -> list[str]:
    """Convert a chunk's extracted products; those whose extraction failed are left to that failure.

    Unless ``keep_extracted``, a product's extracted folder is removed once its HDF5 file exists.
    """
    from cloud_tasks.convert import convert_products, existing_output

    hdf = run.data.hdf(run.day)
    stems = [ProductName.parse(z).stem for z in zips]
    todo, not_extracted = [], []
    for stem in stems:
        folder = run.data.extracted_product(run.day, stem)
        if existing_output(hdf, stem) is None:
            (todo if folder.is_dir() else not_extracted).append(folder)
    if not_extracted:
        log.warning("%d product(s) were not extracted (see the extract task): %s", len(not_extracted), not_extracted)
    try:
        convert_products(todo, hdf, keep_going=True)
    finally:
        done = {stem: existing_output(hdf, stem) for stem in stems}
        if not keep_extracted:
            for stem, path in done.items():
                if path is not None:
                    shutil.rmtree(run.data.extracted_product(run.day, stem), ignore_errors=True)
    return [str(path) for path in done.values() if path is not None]


def run_ml_step(arguments: list[str]) -> None:
    """Run an ML command in this process (the ``local`` runner does the same in a child process)."""
    from cloud_tasks.cli import main

    if arguments and main(arguments) != 0:
        raise CloudTasksError(f"`python -m cloud_tasks {' '.join(arguments)}` failed")


def compare_day(run: DayRun, matchups: str | Path) -> dict | None:
    """SST comparison of a day's masks; None when there is no match-up table for the day."""
    from cloud_tasks.sst import compare

    if not Path(matchups).exists():
        log.warning("no SST match-up table at %s: comparison skipped", matchups)
        return None
    return compare(matchups, run.data.masks(run.day).folder, run.data.sst(run.day).folder)


def summarise_day(products: list[str], run: DayRun) -> dict:
    """Count what the day's products became, from the files on disk, and write the run summary."""
    from cloud_tasks.convert import existing_output

    hdf, masks = run.data.hdf(run.day), run.data.masks(run.day)
    converted, masked, failed = dict.fromkeys(SPLITS, 0), 0, []
    for product in products:
        stem = ProductName.parse(product).stem
        output = existing_output(hdf, stem)
        if output is None:
            failed.append(stem)
            continue
        converted[output.parent.name] += 1
        masked += masks.mask(stem).exists()
    sst_summary = run.data.sst(run.day).summary
    summary = {
        "date": run.day.isoformat(),
        "products": len(products),
        "converted": converted,
        "masked": masked,
        "failed": failed,
        "model": str(run.data.model(run.day).folder),
        "masks": str(masks.folder),
        "sst": json.loads(sst_summary.read_text()) if sst_summary.exists() else None,
    }
    write_json(run.data.summary(run.day), summary)
    log.info(
        "%s: %d products, converted %s, masked %d, failed %d", run.day, len(products), converted, masked, len(failed)
    )
    return summary


def run_sample_pipeline(
    workdir: str | Path, *, day: dt.date, n_products: int, grid: str, seed: int, options: TrainOptions
) -> dict:
    """Every stage in one process over a generated sample archive, as the DAG runs them; returns the summary."""
    from cloud_tasks.sample import make_sample_archive

    workdir = Path(workdir)
    archive = workdir / "archive"
    make_sample_archive(archive, day, n_products, grid=grid, seed=seed)
    params = {"archive_root": str(archive), "date": day.isoformat(), "data_root": str(workdir / "data")}
    plan = plan_run(params | options.as_dict())
    for chunk in chunk_products(list(plan.products), DEFAULT_CHUNK_SIZE):
        extract_chunk(chunk, plan.run)
        convert_chunk(chunk, plan.run)
    run_ml_step(plan.train_arguments)
    run_ml_step(plan.inference_arguments)
    compare_day(plan.run, plan.matchups)
    return summarise_day(list(plan.products), plan.run)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="run every stage on a generated sample archive (no Airflow)",
        description="Generate a sample archive in WORKDIR/archive and run extract, convert-hdf, train, "
        "inference and sst-comp over it, with outputs under WORKDIR/data.",
    )
    parser.add_argument("workdir", type=Path, metavar="WORKDIR")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2024, 6, 1))
    parser.add_argument("--products", type=int, default=6)
    parser.add_argument("--grid", choices=("small", "full"), default="small")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the generated archive")
    TrainOptions.add_arguments(parser)
    # a quick demonstration by default, not the production training
    parser.set_defaults(func=run_cli, epochs=3, batch_size=8)


def run_cli(args: argparse.Namespace) -> None:
    summary = run_sample_pipeline(
        args.workdir,
        day=args.date,
        n_products=args.products,
        grid=args.grid,
        seed=args.sample_seed,
        options=TrainOptions.from_args(args),
    )
    print(json.dumps(summary, indent=2, default=str))
