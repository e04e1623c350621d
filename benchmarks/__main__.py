"""The seed's stage timing table, generated: ``python -m benchmarks`` (or ``make bench``).

Generates a full-size sample archive, runs every stage through the functions the DAG's tasks
call (each stage in a fresh interpreter, timed after start-up, with its peak RSS), runs the DAG
itself on the same archive with ``dag.test()`` and through a scheduler (``benchmarks.scheduler``)
to measure Airflow's overhead, adds the convert and ML benchmarks (``benchmarks.convert``,
``benchmarks/ml.py``) for the same-run ratios, prints everything as Markdown and writes it to
BENCHMARKS.md with the machine's details.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.scheduler import busy_seconds, scheduled_run
from cloud_tasks.layout import DAY_SPLIT, HDF_SUFFIX, SEN3_SUFFIX, DataRoot
from cloud_tasks.pipeline import DEFAULT_CHUNK_SIZE

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2024, 6, 1)
# The reference implementation measured on a 2-core CPU machine like CI's (full-size products).
REFERENCE = {
    "convert_s_per_product": 6.3,
    "convert_rss_mb": 1650,
    "train_patches_per_s": 5.7,
    "inference_s_per_product": "7.7-9",
    "inference_rss_mb": 6100,
}


def measure(function: str, *args, **kwargs) -> dict:
    """Run ``module:function(*args, **kwargs)`` in a fresh interpreter; its result, seconds and peak RSS."""
    command = [sys.executable, "-m", "benchmarks.measure", function, json.dumps(args), json.dumps(kwargs)]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{function} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import h5py
    import keras
    import netCDF4
    import numpy
    import tensorflow as tf
    from airflow import __version__ as airflow_version

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "CPU": cpu,
        "cores": os.cpu_count(),
        "RAM": f"{ram_gib:.0f} GiB",
        "GPU": ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or "none (CPU only)",
        "Python": platform.python_version(),
        "versions": f"numpy {numpy.__version__}, h5py {h5py.__version__}, netCDF4 {netCDF4.__version__}, "
        f"tensorflow {tf.__version__}, keras {keras.__version__}, airflow {airflow_version}",
    }


def run_stages(work: Path, params: dict, training_params: dict) -> tuple[list[tuple], dict]:
    """Every stage once, as the DAGs run them (train a model on the day, register and promote it, mask the
    day with it); returns table rows and raw figures."""
    from cloud_tasks.registry import ModelRegistry

    training = measure("benchmarks.stages:plan_training_run", params | training_params)["result"]
    day, data_root = DAY.isoformat(), training["data_root"]
    products = training["chunks"][day]
    stages = {
        "extract": measure("benchmarks.stages:extract", products, day, data_root),
        "convert": measure("benchmarks.stages:convert", products, day, data_root, keep_extracted=True),
    }
    measure("benchmarks.stages:training_set", training)
    stages["train"] = measure("cloud_tasks.pipeline:run_ml_step", training["train_arguments"])
    stages["evaluate + register"] = measure("cloud_tasks.pipeline:run_ml_step", training["register_arguments"])
    ModelRegistry(data_root).promote("v1", reason="benchmark", by="benchmarks")
    plan = measure("benchmarks.stages:plan", params)["result"]
    stages["inference"] = measure("cloud_tasks.pipeline:run_ml_step", plan["inference_arguments"])
    stages["SST comparison"] = measure("benchmarks.stages:compare", day, data_root, plan["matchups"])
    data = DataRoot(data_root)
    model = data.registry.training(training["key"])
    with open(model.history_csv) as f:
        history = list(csv.DictReader(f))
    trained = json.loads(model.params.read_text())
    n = len(products)
    n_day = len(list(data.hdf_split(DAY, DAY_SPLIT).glob(f"*{HDF_SUFFIX}")))
    first, later = history[0], history[1:]
    figures = {
        "products": n,
        "day_products": n_day,
        "train_patches": trained["train_patches"],
        "test_patches": trained["test_patches"],
        "test_accuracy": trained["test_accuracy"],
        "test_majority_rate": trained["test_majority_rate"],
        "first_epoch_s": float(first["epoch_seconds"]),
        "later_epoch_s": statistics.median(float(r["epoch_seconds"]) for r in later) if later else None,
        "later_train_s": statistics.median(float(r["train_seconds"]) for r in later) if later else None,
        "later_test_s": statistics.median(float(r["test_seconds"]) for r in later) if later else None,
    }
    rss = {name: stage["peak_rss_mb"] for name, stage in stages.items()}
    seconds = {name: stage["seconds"] for name, stage in stages.items()}
    rows = [
        (
            "extract",
            f"{seconds['extract']:.1f}",
            f"{seconds['extract'] / n:.2f} s/product",
            f"{rss['extract']:.0f}",
            "",
        ),
        (
            "convert",
            f"{seconds['convert']:.1f}",
            f"{seconds['convert'] / n:.2f} s/product",
            f"{rss['convert']:.0f}",
            f"{REFERENCE['convert_s_per_product']} s/product, {REFERENCE['convert_rss_mb']} MB",
        ),
        ("training total", f"{seconds['train']:.1f}", f"{len(history)} epochs", f"{rss['train']:.0f}", ""),
        ("training, first epoch (before caching)", f"{figures['first_epoch_s']:.1f}", "", "", ""),
    ]
    if later:
        patches_per_s = figures["train_patches"] / figures["later_train_s"]
        rows += [
            ("training, later epochs (median)", f"{figures['later_epoch_s']:.1f}", "", "", ""),
            ("  of which train", f"{figures['later_train_s']:.1f}", f"{patches_per_s:.2f} patches/s", "", ""),
            ("  of which test", f"{figures['later_test_s']:.1f}", "", "", ""),
        ]
        figures["patches_per_s"] = patches_per_s
    rows += [
        ("evaluate + register (held-out scores)", f"{seconds['evaluate + register']:.1f}", "", "", ""),
        (
            "inference",
            f"{seconds['inference']:.1f}",
            f"{seconds['inference'] / max(n_day, 1):.2f} s/day product (incl. start-up, model load)",
            f"{rss['inference']:.0f}",
            f"{REFERENCE['inference_s_per_product']} s/product, {REFERENCE['inference_rss_mb']} MB",
        ),
        ("SST comparison", f"{seconds['SST comparison']:.2f}", "", f"{rss['SST comparison']:.0f}", ""),
        ("total", f"{sum(seconds.values()):.1f}", "", f"{max(rss.values()):.0f}", ""),
    ]
    figures["stage_seconds"] = seconds
    return rows, figures


def convert_scaling(work: Path) -> list[tuple]:
    """Wall seconds of converting every extracted product with 1 and with 2 worker processes."""
    products = sorted(str(p) for p in DataRoot(work / "data").extracted(DAY).glob(f"*{SEN3_SUFFIX}"))
    wall = {}
    for workers in (1, 2):
        out = str(work / f"convert-{workers}-workers")
        wall[workers] = measure("cloud_tasks.convert:convert_products", products, out, workers=workers, force=True)[
            "seconds"
        ]
    return [
        ("1 process", f"{wall[1]:.2f}", f"{wall[1] / len(products):.2f} s/product", ""),
        (
            "2 processes",
            f"{wall[2]:.2f}",
            f"{wall[2] / len(products):.2f} s/product",
            f"speed-up x{wall[1] / wall[2]:.2f}",
        ),
    ]


def dag_test_run(conf: dict, home: str) -> dict:
    """One ``dag.test()`` run with ``conf`` on a fresh SQLite metadata DB in ``home``; the same figures as
    ``benchmarks.scheduler.scheduled_run``."""
    script = f"""
import json, sys, time, datetime as dt
from airflow.models import DagBag, Pool
from airflow.utils import db
db.resetdb()
Pool.create_or_update_pool("gpu", slots=1, description="ML steps", include_deferred=False)
dag = DagBag(dag_folder={str(REPO / "dags")!r}).dags["slstr_cloud_mask"]
start = time.perf_counter()
run = dag.test(logical_date=dt.datetime(2024, 6, 2, tzinfo=dt.UTC), run_conf=json.loads(sys.argv[1]))
wall = time.perf_counter() - start
intervals = [(ti.start_date.isoformat(), ti.end_date.isoformat()) for ti in run.get_task_instances()
             if ti.start_date and ti.end_date]
print(json.dumps({{"state": str(run.state), "wall": wall, "intervals": intervals}}))
"""
    env = {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(conf)], cwd=REPO, env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"dag.test() failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    intervals = [(dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)) for a, b in result.pop("intervals")]
    tasks = sum((end - start).total_seconds() for start, end in intervals)
    return result | {"tasks": tasks, "busy": busy_seconds(intervals)}


def airflow_overhead(work: Path, params: dict) -> list[tuple]:
    """A whole DAG run on a fresh data root, with ``dag.test()`` and through the scheduler, against its
    task durations."""
    conf = {**params, "runner": "local"}
    for fresh in ("dag-data", "scheduler-data"):  # a fresh data root holding only the production model
        shutil.copytree(DataRoot(params["data_root"]).registry.folder, DataRoot(work / fresh).registry.folder)
    rows = []
    for name, run in (
        ("dag.test()", lambda home: dag_test_run(conf | {"data_root": str(work / "dag-data")}, home)),
        (
            "scheduler (LocalExecutor, SQLite)",
            lambda home: scheduled_run(conf | {"data_root": str(work / "scheduler-data")}, Path(home)),
        ),
    ):
        with tempfile.TemporaryDirectory() as home:
            result = run(home)
        overhead = result["wall"] - result["busy"]
        rows.append(
            (
                name,
                result["state"],
                f"{result['wall']:.1f}",
                f"{result['tasks']:.1f}",
                f"{result['busy']:.1f}",
                f"{overhead:.1f} ({100 * overhead / result['tasks']:.1f} %)",
            )
        )
    return rows


def sub_benchmark(command: list[str]) -> str:
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return completed.stdout.strip()


RESULTS = REPO / "benchmarks" / "results"  # runs recorded on other machines (a GPU) or too long for make bench


def recorded_elsewhere() -> list[str]:
    """The result files of benchmarks run elsewhere, each under its own heading (its first line says where)."""
    return [
        f"\n## Recorded elsewhere: `{path.relative_to(REPO)}`\n\n{path.read_text()}"
        for path in sorted(RESULTS.glob("*.md"))
    ]


def table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10, help="full-size products in the sample archive")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "pipeline")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--skip-sub-benchmarks", action="store_true", help="only the stage table and overhead")
    args = parser.parse_args(argv)

    from cloud_tasks.sample import make_sample_archive

    work = args.workdir
    # the deployment settings the DAG runs check (cloud_tasks.deployment): everything below the work folder
    for name in ("CLOUD_TASKS_ARCHIVE_ROOTS", "CLOUD_TASKS_DATA_ROOTS"):
        os.environ[name] = str(work.resolve())
    os.environ.update(CLOUD_TASKS_RUNNERS="local", CLOUD_TASKS_GPU="false")
    started = time.perf_counter()
    make_sample_archive(work / "archive", DAY, args.products, grid="full", seed=3)
    generated = time.perf_counter() - started
    for stale in ("data", "dag-data", "scheduler-data"):  # every stage must do its work, not find it done
        subprocess.run(["rm", "-rf", str(work / stale)], check=True)
    params = {
        "archive_root": str(work / "archive"),
        "missions": ["S3A", "S3B"],
        "date": DAY.isoformat(),
        "data_root": str(work / "data"),
        "chunk_size": DEFAULT_CHUNK_SIZE,
    }
    period = {"start": DAY.isoformat(), "end": (DAY + dt.timedelta(days=1)).isoformat()}
    training_params = period | {"epochs": args.epochs, "batch_size": args.batch_size}
    rows, figures = run_stages(work, params, training_params)
    sections = [
        "# Benchmarks\n",
        "Generated by `python -m benchmarks` (`make bench`); figures from one run, never asserted in tests.\n",
        table(("machine", ""), list(machine().items())),
        f"\n## Stages, as the DAG runs them ({figures['products']} full-size products, "
        f"{figures['day_products']} day; {args.epochs} epochs, batch {args.batch_size})\n",
        "Each stage runs in a fresh interpreter (start-up excluded, its own imports included); peak RSS is the "
        "stage process's VmHWM. The reference column holds the seed's figures on a 2-core CPU machine.\n",
        table(("stage", "seconds", "per unit", "peak RSS (MB)", "reference"), rows),
        f"\nTraining: {figures['train_patches']} train / {figures['test_patches']} test patches; test accuracy "
        f"{figures['test_accuracy']:.3f} against a majority-class rate of {figures['test_majority_rate']:.3f}. "
        f"Sample archive generated in {generated:.0f} s (not a stage).\n",
        "\n## Convert: 1 against 2 worker processes (start-up included)\n",
        table(("workers", "wall seconds", "per product", "ratio"), convert_scaling(work)),
        "\n## Airflow overhead: whole DAG run against the sum of its task durations\n",
        "Wall time runs from the run's creation to its end. Overhead is the part of it with no task running "
        "(scheduling, queueing, task process start-up), as a share of the summed task durations; through the "
        "scheduler the two chunks (each extracted and converted by one task) run side by side, so the task time "
        "overlaps.\n",
        table(
            ("run", "state", "wall seconds", "sum of task durations", "seconds with a task running", "overhead"),
            airflow_overhead(work, params),
        ),
    ]
    if not args.skip_sub_benchmarks:
        sections += [
            "\n## Convert, per product in one process (`python -m benchmarks.convert`)\n",
            sub_benchmark([sys.executable, "-m", "benchmarks.convert", "--products", "8"]),
            "\n## Training input pipeline and inference (`python benchmarks/ml.py`)\n",
            sub_benchmark([sys.executable, "benchmarks/ml.py", "--products", "4", "--rounds", "1"]),
        ]
    sections += recorded_elsewhere()
    report = "\n".join(sections) + "\n"
    args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
