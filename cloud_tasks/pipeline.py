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
import shutil
from collections.abc import Sequence
from pathlib import Path

from cloud_tasks.atomic import atomic_file, write_json
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import DAY_SPLIT, SPLITS, DataRoot, converted_path
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.naming import ProductName
from cloud_tasks.planning import DEFAULT_CHUNK_SIZE, DayRun, TrainingPlan, chunk_products, plan_day
from cloud_tasks.registry import KINDS

log = logging.getLogger(__name__)


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
    """Convert a chunk's products extracted by an earlier step; return the chunk's HDF5 files. A product left
    unconverted (a failed conversion, or no extracted folder) fails the chunk after the others are converted."""
    from cloud_tasks.errors import BatchFailures

    converted, failures, not_extracted = _convert_extracted(zips, run, keep_extracted=keep_extracted)
    failures += _not_extracted(not_extracted)
    if failures:
        raise BatchFailures("convert", failures, converted, len(zips))
    return converted


def extract_and_convert(zips: list[str], run: DayRun, *, keep_extracted: bool = False) -> list[str]:
    """Extract then convert a chunk's products (what one mapped instance of the DAGs does); return its HDF5 files.

    The products that extracted are converted even when others did not; then the chunk fails naming every bad
    product with its own error: the extraction's for a product that did not extract, else the conversion's.
    A full disk stops the chunk at once (``DiskFullError``: a retry once space is freed, not a bad product).
    """
    from cloud_tasks.errors import BatchFailures

    try:
        extract_chunk(zips, run)
        extract_failures = []
    except BatchFailures as exc:
        extract_failures = exc.failures  # one per product not extracted (its folder is named after its zip)
    converted, failures, not_extracted = _convert_extracted(zips, run, keep_extracted=keep_extracted)
    # a product neither extracted nor reported by the extraction (its folder removed meanwhile) is named too
    failures = extract_failures + failures + (_not_extracted(not_extracted) if not extract_failures else [])
    if failures:
        raise BatchFailures("extract and convert", failures, converted, len(zips))
    return converted


def _not_extracted(folders: list[Path]) -> list[CloudTasksError]:
    from cloud_tasks.errors import InputError

    return [InputError(folder, "was not extracted (see the extraction's error in the log)") for folder in folders]


def _convert_extracted(
    zips: list[str], run: DayRun, *, keep_extracted: bool
) -> tuple[list[str], list[CloudTasksError], list[Path]]:
    """Convert the chunk's extracted products not converted yet: the chunk's HDF5 files, the conversion
    failures, and the folders of the products neither converted nor extracted.

    Unless ``keep_extracted``, the extracted folders are removed afterwards, a failed product's too: a re-run
    extracts it again from its zip as it is then (replaced, once the error is seen), not from a stale copy.
    """
    from cloud_tasks.convert import convert_products, existing_output
    from cloud_tasks.errors import BatchFailures

    hdf = run.data.hdf(run.day)
    stems = [ProductName.parse(z).stem for z in zips]
    todo, not_extracted = [], []
    for stem in stems:
        folder = run.data.extracted_product(run.day, stem)
        if existing_output(hdf, stem) is None:
            (todo if folder.is_dir() else not_extracted).append(folder)
    failures: list[CloudTasksError] = []
    try:
        convert_products(todo, hdf, keep_going=True)
    except BatchFailures as exc:
        failures = exc.failures
    finally:
        if not keep_extracted:
            for stem in stems:
                shutil.rmtree(run.data.extracted_product(run.day, stem), ignore_errors=True)
    done = [existing_output(hdf, stem) for stem in stems]
    return [str(path) for path in done if path is not None], failures, not_extracted


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


def masks_made_by(run: DayRun, stems: list[str], models: list[dict]) -> list[str]:
    """The products whose mask on disk was made by the run's models (``{"kind", "version", "sha256"}`` each, as
    the plan lists them): the run's own masks, or those it confirmed."""
    from cloud_tasks.errors import InputError
    from cloud_tasks.product.cf_mask import Model, read_models

    expected = tuple(Model(model["version"], model["sha256"], model["kind"]) for model in models)
    made = []
    for stem in stems if expected else []:
        path = run.data.masks(run.day).mask(stem)
        try:
            recorded = read_models(path) if path.is_file() else ()
        except InputError:
            continue  # an unreadable mask: not made by this run
        if recorded == expected:
            made.append(stem)
    return made


def count_converted(products: list[str], run: DayRun, *, thermal: bool) -> tuple[dict[str, int], list[str], list[str]]:
    """Converted products per split, the stems left unconverted, and the stems a mask is expected for.

    Day products are maskable with the day model; night ones only when a thermal model is given.
    """
    from cloud_tasks.convert import existing_output

    hdf = run.data.hdf(run.day)
    converted, failed, maskable = dict.fromkeys(SPLITS, 0), [], []
    for product in products:
        stem = ProductName.parse(product).stem
        output = existing_output(hdf, stem)
        if output is None:
            failed.append(stem)
            continue
        converted[output.parent.name] += 1
        if thermal or output.parent.name == DAY_SPLIT:
            maskable.append(stem)
    return converted, failed, maskable


def summarise_day(
    products: list[str],
    run: DayRun,
    *,
    models: list[dict] | None = None,
    sst: dict | None = None,
    failed_stages: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> dict:
    """What the run's products became (from the files on disk) and what failed; written as the day's summary.

    ``models`` are the run's (``{"kind", "version", "sha256"}``, day model first; none when masking was skipped):
    ``masked`` counts only masks made by exactly these, never one left by an earlier run with other models. Every
    converted product is expected masked, night ones only with a thermal model. ``sst`` is the comparison this
    run made, if it made one.
    """
    models = models or []
    thermal = any(model["kind"] == "thermal" for model in models)
    converted, failed, maskable = count_converted(products, run, thermal=thermal)
    masked = masks_made_by(run, maskable, models)
    names = " + ".join(model["version"] for model in models)
    notes = list(notes or [])
    if models and len(masked) < len(maskable):
        missing = len(maskable) - len(masked)
        notes.append(f"{missing} product(s) not masked by {names}: clear `mask` or run the day again")
    summary = {
        "date": run.day.isoformat(),
        "products": len(products),
        "converted": converted,
        "masked": len(masked),
        "failed": failed,
        "failed_stages": failed_stages or {},
        "model": next(({"version": m["version"], "sha256": m["sha256"]} for m in models if m["kind"] == "day"), None),
        "models": models,
        "masks": str(run.data.masks(run.day).folder),
        "sst": sst,
        "notes": notes,
    }
    write_json(run.data.summary(run.day), summary)
    log.info(
        "%s: %d products, converted %s, masked %d with %s, failed %d, failed stages %s",
        run.day,
        len(products),
        converted,
        len(masked),
        names or "no model",
        len(failed),
        failed_stages or "none",
    )
    return summary


# The converted products a kind's file lists hold: training itself keeps those the kind trains on
# (``ml.data.select_products``: a thermal model those with enough night or twilight pixels, in either split).
KIND_SPLITS = {"day": (DAY_SPLIT,), "thermal": SPLITS}


def write_training_lists(
    data_root: str | Path, key: str, by_day: dict[str, list[str]], holdout_days: list[str], kind: str
) -> dict:
    """Write the file lists of a ``kind`` training run's converted products: ``train`` and (by day) ``holdout``.

    Only the run's own products (``by_day``: day -> zips) are listed, whatever else the day folders hold: the
    day kind's in the day split, the thermal kind's in both (``KIND_SPLITS``). Returns the counts.
    """
    if kind not in KIND_SPLITS:
        raise CloudTasksError(f"model kind must be one of {', '.join(KIND_SPLITS)}, not {kind!r}")
    registry = DataRoot(data_root).registry
    lists: dict[str, list[str]] = {"train": [], "holdout": []}
    for day, zips in by_day.items():
        run = DayRun.of(day, data_root)
        for stem in sorted(ProductName.parse(z).stem for z in zips):
            paths = [converted_path(run.data.hdf(run.day), split, stem) for split in KIND_SPLITS[kind]]
            found = [str(path) for path in paths if path.is_file()]
            lists["holdout" if day in holdout_days else "train"] += found
    which = f"{' or '.join(KIND_SPLITS[kind])}-split product"
    if not lists["train"]:
        raise CloudTasksError(
            f"{registry.folder}: no {which} of {sorted(by_day)} converted: nothing to train the {kind} model on"
        )
    if holdout_days and not lists["holdout"]:
        raise CloudTasksError(
            f"{registry.folder}: no {which} of the held-out day(s) {holdout_days} converted: "
            f"nothing to evaluate the {kind} model on"
        )
    for name, paths in lists.items():
        if name == "train" or holdout_days:
            with atomic_file(registry.training_list(key, name)) as tmp:
                tmp.write_text("".join(f"{p}\n" for p in paths))
    return {name: len(paths) for name, paths in lists.items()}


def convert_period(chunks: list[dict], data_root: str | Path) -> None:
    """Extract and convert chunks of products one after the other (the ``pipeline`` command's way)."""
    for chunk in chunks:
        extract_and_convert(chunk["products"], DayRun.of(chunk["day"], data_root))


def train_and_register(plan: TrainingPlan) -> str:
    """Train a kind's model as its plan says (products already converted) and register it; return the version."""
    from cloud_tasks.registry import ModelRegistry

    write_training_lists(plan.data.root, plan.key, plan.products, plan.holdout_days(), plan.kind)
    run_ml_step(plan.train_arguments)
    run_ml_step(plan.register_arguments)
    return next(v.name for v in ModelRegistry(plan.data.root).versions() if v.info.get("key") == plan.key)


def run_sample_pipeline(
    workdir: str | Path,
    *,
    day: dt.date,
    n_products: int,
    grid: str,
    seed: int,
    options: TrainOptions,
    kinds: Sequence[str] = KINDS,
) -> dict:
    """The product flow in one process over a generated sample archive, as the DAGs run it: train a first model
    of each of ``kinds`` on the day, register them and promote each to its kind's production alias (when it has none),
    mask the day with the production model. Returns the day's summary, with ``trained``: kind -> version."""
    from cloud_tasks.planning import plan_training
    from cloud_tasks.registry import ModelRegistry
    from cloud_tasks.sample import make_sample_archive

    workdir = Path(workdir)
    make_sample_archive(workdir / "archive", day, n_products, grid=grid, seed=seed)
    params = {"archive_root": str(workdir / "archive"), "data_root": str(workdir / "data")}
    period = {"start": day.isoformat(), "end": (day + dt.timedelta(days=1)).isoformat()}
    training = plan_training(params | period | options.as_dict() | {"kinds": list(kinds)})
    convert_period(chunk_products(training.products, DEFAULT_CHUNK_SIZE), training.data.root)
    registry, trained = ModelRegistry(training.data.root), {}
    for plan in training.plans:
        trained[plan.kind] = train_and_register(plan)
        if registry.production_name(plan.kind) is None:
            registry.promote(trained[plan.kind], reason=f"first {plan.kind} model of the sample pipeline")
    plan = plan_day(params | {"date": day.isoformat()})
    run_ml_step(plan.inference_arguments)
    sst = compare_day(plan.run, plan.matchups)
    summary = summarise_day(list(plan.products), plan.run, models=plan.model_records, sst=sst, notes=plan.notes)
    return {**summary, "trained": trained}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="run the whole product flow on a generated sample archive (no Airflow)",
        description="Generate a sample archive in WORKDIR/archive, train a first model of each kind (day, thermal) "
        "on its day, register and promote them, then mask the day and compare with SST match-ups; outputs under "
        "WORKDIR/data. Prints the day's summary and the versions trained.",
    )
    parser.add_argument("workdir", type=Path, metavar="WORKDIR")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2024, 6, 1))
    parser.add_argument("--products", type=int, default=6)
    parser.add_argument("--grid", choices=("small", "full"), default="small")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the generated archive")
    TrainOptions.add_arguments(parser)
    # a quick demonstration by default, not the production training; --kind trains that kind only (default: each)
    parser.set_defaults(func=run_cli, epochs=3, batch_size=8, kind=None)


def run_cli(args: argparse.Namespace) -> None:
    kinds = [args.kind] if args.kind else list(KINDS)
    args.kind = args.kind or KINDS[0]
    summary = run_sample_pipeline(
        args.workdir,
        day=args.date,
        n_products=args.products,
        grid=args.grid,
        seed=args.sample_seed,
        options=TrainOptions.from_args(args),
        kinds=kinds,
    )
    print(json.dumps(summary, indent=2, default=str))
