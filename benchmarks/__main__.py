"""The seed's stage timing table, generated: ``python -m benchmarks`` (or ``make bench``).

Generates a full-size sample archive, runs every stage through the functions the DAG's tasks
call (each stage in a fresh interpreter, timed after start-up, with its peak RSS), runs the DAG
itself on the same archive with ``dag.test()`` and through a scheduler (``benchmarks.scheduler``)
to measure Airflow's overhead, adds the convert and ML benchmarks (``benchmarks.convert``,
``benchmarks.ml``) for the same-run ratios, prints everything as Markdown and writes it to
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

from benchmarks.figures import runs_note, spread, table
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


def run_stages(work: Path, params: dict, training_params: dict) -> dict:
    """Every stage once, as the DAGs run them (train a model on the day, register and promote it, mask the
    day with it); returns the run's figures."""
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
    later = history[1:]

    def later_median(column: str) -> float | None:
        return statistics.median(float(r[column]) for r in later) if later else None

    return {
        "products": len(products),
        "day_products": len(list(data.hdf_split(DAY, DAY_SPLIT).glob(f"*{HDF_SUFFIX}"))),
        "epochs": len(history),
        "train_patches": trained["train_patches"],
        "test_patches": trained["test_patches"],
        "test_accuracy": trained["test_accuracy"],
        "test_majority_rate": trained["test_majority_rate"],
        "first_epoch_s": float(history[0]["epoch_seconds"]),
        "later_epoch_s": later_median("epoch_seconds"),
        "later_train_s": later_median("train_seconds"),
        "later_test_s": later_median("test_seconds"),
        "seconds": {name: stage["seconds"] for name, stage in stages.items()},
        "rss": {name: stage["peak_rss_mb"] for name, stage in stages.items()},
    }


def stage_rows(runs: list[dict]) -> list[tuple]:
    """The stage table: each figure over the runs (``figures.spread``)."""

    def over_runs(figure, digits: int = 1) -> str:
        return spread([figure(run) for run in runs], digits)

    def seconds(stage: str, per: int = 1, digits: int = 1) -> str:
        return over_runs(lambda run: run["seconds"][stage] / per, digits)

    def rss(stage: str) -> str:
        return over_runs(lambda run: run["rss"][stage], 0)

    n, n_day = runs[0]["products"], max(runs[0]["day_products"], 1)
    convert_reference = f"{REFERENCE['convert_s_per_product']} s/product, {REFERENCE['convert_rss_mb']} MB"
    inference_reference = f"{REFERENCE['inference_s_per_product']} s/product, {REFERENCE['inference_rss_mb']} MB"
    rows = [
        ("extract", seconds("extract"), f"{seconds('extract', n, 2)} s/product", rss("extract"), ""),
        ("convert", seconds("convert"), f"{seconds('convert', n, 2)} s/product", rss("convert"), convert_reference),
        ("training total", seconds("train"), f"{runs[0]['epochs']} epochs", rss("train"), ""),
        ("training, first epoch (before caching)", over_runs(lambda run: run["first_epoch_s"]), "", "", ""),
    ]
    if all(run["later_train_s"] for run in runs):
        patches_per_s = over_runs(lambda run: run["train_patches"] / run["later_train_s"], 2)
        rows += [
            ("training, later epochs (median)", over_runs(lambda run: run["later_epoch_s"]), "", "", ""),
            ("  of which train", over_runs(lambda run: run["later_train_s"]), f"{patches_per_s} patches/s", "", ""),
            ("  of which test", over_runs(lambda run: run["later_test_s"]), "", "", ""),
        ]
    inference_per_product = f"{seconds('inference', n_day, 2)} s/day product (incl. start-up, model load)"
    peak_rss = over_runs(lambda run: max(run["rss"].values()), 0)
    return [
        *rows,
        ("evaluate + register (held-out scores)", seconds("evaluate + register"), "", "", ""),
        ("inference", seconds("inference"), inference_per_product, rss("inference"), inference_reference),
        ("SST comparison", seconds("SST comparison", digits=2), "", rss("SST comparison"), ""),
        ("total", over_runs(lambda run: sum(run["seconds"].values())), "", peak_rss, ""),
    ]


def convert_scaling(work: Path) -> dict:
    """Wall seconds of converting every extracted product with 1 and with 2 worker processes (keys 1 and 2)."""
    products = sorted(str(p) for p in DataRoot(work / "data").extracted(DAY).glob(f"*{SEN3_SUFFIX}"))
    wall = {"products": len(products)}
    for workers in (1, 2):
        out = str(work / f"convert-{workers}-workers")
        wall[workers] = measure("cloud_tasks.convert:convert_products", products, out, workers=workers, force=True)[
            "seconds"
        ]
    return wall


def scaling_rows(runs: list[dict]) -> list[tuple]:
    n = runs[0]["products"]
    one, two = ([run[workers] for run in runs] for workers in (1, 2))
    return [
        ("1 process", spread(one, 2), f"{spread([s / n for s in one], 2)} s/product", ""),
        (
            "2 processes",
            spread(two, 2),
            f"{spread([s / n for s in two], 2)} s/product",
            f"speed-up x{spread([a / b for a, b in zip(one, two, strict=True)], 2)}",
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


AIRFLOW_RUNS = ("dag.test()", "scheduler (LocalExecutor, SQLite)")


def airflow_overhead(work: Path, params: dict) -> dict[str, dict]:
    """A whole DAG run on a fresh data root, with ``dag.test()`` and through the scheduler: its state, wall
    seconds, summed task seconds and seconds with a task running."""
    conf = {**params, "runner": "local"}
    for fresh in ("dag-data", "scheduler-data"):  # a fresh data root holding only the production model
        shutil.copytree(DataRoot(params["data_root"]).registry.folder, DataRoot(work / fresh).registry.folder)
    runs = dict(
        zip(
            AIRFLOW_RUNS,
            (
                lambda home: dag_test_run(conf | {"data_root": str(work / "dag-data")}, home),
                lambda home: scheduled_run(conf | {"data_root": str(work / "scheduler-data")}, Path(home)),
            ),
            strict=True,
        )
    )
    results = {}
    for name, run in runs.items():
        with tempfile.TemporaryDirectory() as home:
            results[name] = run(home)
    return results


def overhead_rows(runs: list[dict[str, dict]]) -> list[tuple]:
    rows = []
    for name in AIRFLOW_RUNS:
        results = [run[name] for run in runs]
        overheads = [result["wall"] - result["busy"] for result in results]
        shares = [100 * o / result["tasks"] for o, result in zip(overheads, results, strict=True)]
        rows.append(
            (
                name,
                ", ".join(sorted({str(result["state"]) for result in results})),
                *(spread([result[key] for result in results]) for key in ("wall", "tasks", "busy")),
                spread(overheads),
                spread(shares),
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10, help="full-size products in the sample archive")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs of every measure (mean and range reported)")
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
    load = {"start": os.getloadavg()[0]}
    started = time.perf_counter()
    make_sample_archive(work / "archive", DAY, args.products, grid="full", seed=3)
    generated = time.perf_counter() - started
    params = {
        "archive_root": str(work / "archive"),
        "missions": ["S3A", "S3B"],
        "date": DAY.isoformat(),
        "data_root": str(work / "data"),
        "chunk_size": DEFAULT_CHUNK_SIZE,
    }
    period = {"start": DAY.isoformat(), "end": (DAY + dt.timedelta(days=1)).isoformat()}
    training_params = period | {"epochs": args.epochs, "batch_size": args.batch_size}
    stages, scaling, overhead = [], [], []
    for _ in range(args.repeats):
        for stale in ("data", "dag-data", "scheduler-data"):  # every stage must do its work, not find it done
            shutil.rmtree(work / stale, ignore_errors=True)
        stages.append(run_stages(work, params, training_params))
        scaling.append(convert_scaling(work))
        overhead.append(airflow_overhead(work, params))
    sections = report(args, stages, scaling, overhead, generated)
    if not args.skip_sub_benchmarks:
        sections += sub_benchmarks(args.repeats)
    load["end"] = os.getloadavg()[0]
    load_row = ("load average (1 min), start / end", f"{load['start']:.1f} / {load['end']:.1f}")
    sections[2:2] = [table(("machine", ""), [*machine().items(), load_row])]
    text = "\n".join(sections + recorded_elsewhere()) + "\n"
    args.output.write_text(text)
    print(text)


def report(args: argparse.Namespace, stages: list[dict], scaling: list[dict], overhead: list[dict], generated: float):
    """The Markdown sections of the measures made here (the machine table goes in at index 2)."""
    first = stages[0]
    return [
        "# Benchmarks\n",
        "Generated by `python -m benchmarks` (`make bench`); never asserted in tests. "
        + runs_note(args.repeats)
        + " Sub-benchmarks state their own repeats; results recorded elsewhere state theirs.\n",
        f"\n## Stages, as the DAGs run them ({first['products']} full-size products, "
        f"{first['day_products']} day; {args.epochs} epochs, batch {args.batch_size})\n",
        "Each stage runs in a fresh interpreter (start-up excluded, its own imports included); peak RSS is the "
        "stage process's VmHWM. The reference column holds the seed's figures on a 2-core CPU machine. "
        + runs_note(len(stages))
        + "\n",
        table(("stage", "seconds", "per unit", "peak RSS (MB)", "reference"), stage_rows(stages)),
        f"\nTraining: {first['train_patches']} train / {first['test_patches']} test patches; test accuracy "
        f"{spread([run['test_accuracy'] for run in stages], 3)} against a majority-class rate of "
        f"{first['test_majority_rate']:.3f}. Sample archive generated in {generated:.0f} s (not a stage).\n",
        "\n## Convert: 1 against 2 worker processes (start-up included)\n",
        runs_note(len(scaling)) + "\n",
        table(("workers", "wall seconds", "per product", "ratio"), scaling_rows(scaling)),
        "\n## Airflow overhead: whole DAG run against the sum of its task durations\n",
        "Wall time runs from the run's creation to its end. Overhead is the part of it with no task running "
        "(scheduling, queueing, task process start-up), as a share of the summed task durations; through the "
        "scheduler the two chunks (each extracted and converted by one task) run side by side, so the task time "
        "overlaps. " + runs_note(len(overhead)) + "\n",
        table(
            (
                *("run", "state", "wall seconds", "sum of task durations", "seconds with a task running"),
                *("overhead seconds", "overhead % of task durations"),
            ),
            overhead_rows(overhead),
        ),
    ]


def sub_benchmarks(repeats: int) -> list[str]:
    python = sys.executable
    return [
        "\n## Convert, per product in one process (`python -m benchmarks.convert`)\n",
        sub_benchmark([python, "-m", "benchmarks.convert", "--products", "8", "--rounds", str(repeats)]),
        "\n## Training input pipeline and inference (`python -m benchmarks.ml`)\n",
        sub_benchmark([python, "-m", "benchmarks.ml", "--products", "4", "--rounds", str(repeats)]),
        "\n## Training input pipeline alone, no model (`python -m benchmarks.pipeline_capacity`)\n",
        sub_benchmark(
            [python, "-m", "benchmarks.pipeline_capacity", "--products", "6", "--repeats", str(max(repeats, 3))]
        ),
    ]


if __name__ == "__main__":
    main()
