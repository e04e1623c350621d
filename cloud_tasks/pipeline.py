"""The pipeline's stages for one day of data, keyed by date and product (never by run id).

The Airflow DAG and the ``pipeline`` command both call these functions, so a re-run or a
backfill of the same day finds the same files and skips the work already done.

Data root layout::

    <data_root>/extracted/YYYY/MM/DD/<product>.SEN3   extracted products
    <data_root>/hdf/YYYY/MM/DD/{day,night}/<product>.h5 converted products
    <data_root>/models/YYYY/MM/DD/                    model trained on that day (model.keras, history, curves)
    <data_root>/masks/YYYY/MM/DD/<product>.{h5,png}    cloud masks and quicklooks
    <data_root>/sst/YYYY/MM/DD/                        SST comparison (summary.json, table, histogram)
    <data_root>/summaries/YYYY-MM-DD.json              run summary
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from cloud_tasks.atomic import write_json
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.naming import ProductName

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataRoot:
    """Where each stage of the pipeline keeps its outputs for a given day."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def _dated(self, store: str, day: dt.date) -> Path:
        return self.root / store / f"{day:%Y/%m/%d}"

    def extracted(self, day: dt.date) -> Path:
        return self._dated("extracted", day)

    def hdf(self, day: dt.date) -> Path:
        return self._dated("hdf", day)

    def model(self, day: dt.date) -> Path:
        return self._dated("models", day)

    def masks(self, day: dt.date) -> Path:
        return self._dated("masks", day)

    def sst(self, day: dt.date) -> Path:
        return self._dated("sst", day)

    def summary(self, day: dt.date) -> Path:
        return self.root / "summaries" / f"{day:%Y-%m-%d}.json"


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


def ml_command(
    stage: str,
    data: DataRoot,
    day: dt.date,
    *,
    epochs: int = 30,
    batch_size: int = 32,
    label: str = "bayes",
    model_path: str | None = None,
    seed: int = 42,
) -> list[str]:
    """The ``python -m cloud_tasks`` arguments of an ML stage; the same in the GPU image and locally.

    Paths are the data root's own, so the image must see the data root at the same path (bind mount).
    """
    if stage == "train":
        return [
            "train",
            str(data.hdf(day) / "day"),
            str(data.model(day)),
            f"--epochs={epochs}",
            f"--batch-size={batch_size}",
            f"--label={label}",
            f"--seed={seed}",
        ]
    if stage == "inference":
        model = model_path or str(data.model(day) / "model.keras")
        return ["inference", model, str(data.hdf(day) / "day"), str(data.masks(day))]
    raise ValueError(f"unknown ML stage {stage!r} (expected 'train' or 'inference')")


def plan_run(params: dict, *, data_interval_start=None, data_interval_end=None) -> dict:
    """Decide what a run processes: its day, products and the ML commands.

    Products come from ``params['file_list']`` if set, else from the archive for ``params['date']``
    if set, else for the run's data interval.
    """
    from cloud_tasks.archive import discover, discover_from_list

    if params.get("file_list"):
        zips = discover_from_list(params["file_list"])
        if not zips:
            raise CloudTasksError(f"{params['file_list']}: the file list names no product")
        day = dt.date.fromisoformat(params["date"]) if params.get("date") else ProductName.parse(zips[0]).start.date()
        where = params["file_list"]
    else:
        if params.get("date"):
            start = dt.datetime.combine(dt.date.fromisoformat(params["date"]), dt.time(), tzinfo=dt.UTC)
            end = start + dt.timedelta(days=1)
        elif data_interval_start is not None and data_interval_end is not None:
            start, end = data_interval_start, data_interval_end
        else:
            raise CloudTasksError("a run without a data interval needs the 'date' or the 'file_list' param")
        zips = discover(params["archive_root"], start, end, params["missions"])
        day = start.date()
        where = f"{params['archive_root']} for {', '.join(params['missions'])} in [{start}, {end})"
    if not zips:
        raise CloudTasksError(f"no SLSTR product found in {where}")
    if not params["train"] and not params.get("model_path"):
        raise CloudTasksError("training is off ('train' param false): set 'model_path' to an existing model")
    data = DataRoot(params["data_root"])
    products = [str(z) for z in zips]
    model_path = None if params["train"] else params["model_path"]
    train_options = {"epochs": params["epochs"], "batch_size": params["batch_size"], "label": params["label"]}
    return {
        "day": day.isoformat(),
        "data_root": str(data.root),
        "products": products,
        "train_arguments": ml_command("train", data, day, **train_options) if params["train"] else [],
        "inference_arguments": ml_command("inference", data, day, model_path=model_path),
        # what each ML step only reads, mounted read-only in its container
        "train_inputs": [str(data.hdf(day) / "day")],
        "inference_inputs": [str(data.hdf(day) / "day"), model_path or str(data.model(day) / "model.keras")],
        "matchups": params.get("matchups")
        or str(Path(params["archive_root"]) / "matchups" / f"sst_matchups_{day:%Y%m%d}.h5"),
    }


def extract_chunk(zips: list[str], day: str, data_root: str) -> list[str]:
    """Extract a chunk's products, skipping those already converted; fail (after extracting the good
    ones) if any product is bad."""
    from cloud_tasks.convert import existing_output
    from cloud_tasks.extract import extract_products

    data, date = DataRoot(data_root), dt.date.fromisoformat(day)
    todo = [Path(z) for z in zips if existing_output(data.hdf(date), ProductName.parse(z).stem) is None]
    if len(todo) < len(zips):
        log.info("%d of %d products already converted: not extracted again", len(zips) - len(todo), len(zips))
    return [str(p) for p in extract_products(todo, data.extracted(date), keep_going=True)]


def convert_chunk(zips: list[str], day: str, data_root: str, *, keep_extracted: bool = False) -> list[str]:
    """Convert a chunk's extracted products; those whose extraction failed are left to that failure.

    Unless ``keep_extracted``, a product's extracted folder is removed once its HDF5 file exists.
    """
    from cloud_tasks.convert import convert_products, existing_output

    data, date = DataRoot(data_root), dt.date.fromisoformat(day)
    stems = [ProductName.parse(z).stem for z in zips]
    todo, not_extracted = [], []
    for stem in stems:
        folder = data.extracted(date) / f"{stem}.SEN3"
        if existing_output(data.hdf(date), stem) is None:
            (todo if folder.is_dir() else not_extracted).append(folder)
    if not_extracted:
        log.warning("%d product(s) were not extracted (see the extract task): %s", len(not_extracted), not_extracted)
    try:
        convert_products(todo, data.hdf(date), keep_going=True)
    finally:
        done = {stem: existing_output(data.hdf(date), stem) for stem in stems}
        if not keep_extracted:
            for stem, path in done.items():
                if path is not None:
                    shutil.rmtree(data.extracted(date) / f"{stem}.SEN3", ignore_errors=True)
    return [str(path) for path in done.values() if path is not None]


def run_ml_step(arguments: list[str]) -> None:
    """Run an ML command in this process (the ``local`` runner does the same in a child process)."""
    from cloud_tasks.cli import main

    if arguments and main(arguments) != 0:
        raise CloudTasksError(f"`python -m cloud_tasks {' '.join(arguments)}` failed")


def compare_day(day: str, data_root: str, matchups: str) -> dict | None:
    """SST comparison of a day's masks; None when there is no match-up table for the day."""
    from cloud_tasks.sst import compare

    data, date = DataRoot(data_root), dt.date.fromisoformat(day)
    if not Path(matchups).exists():
        log.warning("no SST match-up table at %s: comparison skipped", matchups)
        return None
    return compare(matchups, data.masks(date), data.sst(date))


def summarise_day(products: list[str], day: str, data_root: str) -> dict:
    """Count what the day's products became, from the files on disk, and write the run summary."""
    from cloud_tasks.convert import existing_output

    data, date = DataRoot(data_root), dt.date.fromisoformat(day)
    converted, masked, failed = {"day": 0, "night": 0}, 0, []
    for product in products:
        stem = ProductName.parse(product).stem
        output = existing_output(data.hdf(date), stem)
        if output is None:
            failed.append(stem)
            continue
        converted[output.parent.name] += 1
        masked += (data.masks(date) / f"{stem}.h5").exists()
    sst_summary = data.sst(date) / "summary.json"
    summary = {
        "date": day,
        "products": len(products),
        "converted": converted,
        "masked": masked,
        "failed": failed,
        "model": str(data.model(date)),
        "masks": str(data.masks(date)),
        "sst": json.loads(sst_summary.read_text()) if sst_summary.exists() else None,
    }
    write_json(data.summary(date), summary)
    log.info("%s: %d products, converted %s, masked %d, failed %d", day, len(products), converted, masked, len(failed))
    return summary


def run_sample_pipeline(
    workdir: str | Path,
    *,
    day: dt.date,
    n_products: int,
    grid: str,
    epochs: int,
    batch_size: int,
    seed: int,
) -> dict:
    """Every stage in one process over a generated sample archive, as the DAG runs them; returns the summary."""
    from cloud_tasks.sample import make_sample_archive

    workdir = Path(workdir)
    archive = workdir / "archive"
    make_sample_archive(archive, day, n_products, grid=grid, seed=seed)
    params = {
        "archive_root": str(archive),
        "missions": ["S3A", "S3B"],
        "date": day.isoformat(),
        "data_root": str(workdir / "data"),
        "train": True,
        "epochs": epochs,
        "batch_size": batch_size,
        "label": "bayes",
        "chunk_size": 8,
    }
    plan = plan_run(params)
    for chunk in chunk_products(plan["products"], params["chunk_size"]):
        extract_chunk(chunk, plan["day"], plan["data_root"])
        convert_chunk(chunk, plan["day"], plan["data_root"])
    run_ml_step(plan["train_arguments"])
    run_ml_step(plan["inference_arguments"])
    compare_day(plan["day"], plan["data_root"], plan["matchups"])
    return summarise_day(plan["products"], plan["day"], plan["data_root"])


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
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    summary = run_sample_pipeline(
        args.workdir,
        day=args.date,
        n_products=args.products,
        grid=args.grid,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print(json.dumps(summary, indent=2, default=str))
