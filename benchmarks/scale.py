"""Scale through the real scheduler: the daily DAG on days of many small-grid products, and a backfill of days.

    python -m benchmarks.scale --sizes 100 500 2000 --repeats 2 2 1 --backfill-days 30 --workdir .bench/scale

Each measured run gets a fresh deployment (``benchmarks.scheduler.deployment``: api-server, scheduler and
dag-processor, LocalExecutor) on a fresh metadata database, a database of a PostgreSQL server started here
when ``postgres_missing`` allows (root and Debian's server package), else SQLite in the run's home; and a
fresh data root. No model is in the registry, so ``mask`` is skipped with its reason: masking is not what
is measured; ``sst_comparison`` finds no mask and ``summary`` runs as usual.

Products: a pool of genuinely generated small-grid products (``make_sample_archive``) of one day, then each
archive day holds clones of them renamed to the names ``product_specs`` gives that day (zip, top folder and
the manifest's product name; the NetCDF files are the pool product's, sensing times included, which no
stage checks against the name). Generation and cloning rates are reported.

Figures, per run: wall (queued to ended), summed task durations, idle time (no task running:
``busy_seconds``) split into before the first task, between tasks and after the last, CPU seconds of each
component, rows added per table of the metadata DB, XCom bytes and DB bytes; growth exponents across the
sizes (1 = linear). ``--floor`` also times the same extract/convert work without Airflow (2 processes).
Results are printed as Markdown and written to ``--output``.

On a checkout others are editing, measure a snapshot: a file changed mid-run fails tasks, whose retries
(120 s back-off) then show up as idle time. ``git archive HEAD | tar -x -C SNAP``, then from SNAP:
``SOURCE_COMMIT=<commit> PYTHONPATH=$PWD <venv>/bin/python -m benchmarks.scale ...`` (components and tasks
inherit PYTHONPATH, so they import the snapshot's ``cloud_tasks`` and parse its ``dags/``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import itertools
import json
import math
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import zipfile
from collections import Counter
from contextlib import ExitStack, suppress
from pathlib import Path

from benchmarks.figures import spread, table
from benchmarks.scheduler import (
    Airflow,
    busy_seconds,
    deployment,
    postgres_missing,
    postgres_server,
    run_timings,
    task_intervals,
)
from cloud_tasks.atomic import atomic_file
from cloud_tasks.layout import matchups_path
from cloud_tasks.naming import ProductName
from cloud_tasks.planning import DEFAULT_CHUNK_SIZE

REPO = Path(__file__).resolve().parents[1]
POOL_DAY = dt.date(2024, 6, 1)
SIZE_DAY = dt.date(2024, 6, 1)
BACKFILL_START = dt.date(2024, 5, 1)
# Tables of the metadata DB whose growth is shown (every table's growth is in the JSON results).
TABLES = (
    "dag_run",
    "task_instance",
    "task_instance_history",
    "task_map",
    "xcom",
    "rendered_task_instance_fields",
    "log",
    "asset_event",
    "job",
)
MANIFEST = "xfdumanifest.xml"


# --- products ---------------------------------------------------------------------------------------


def clone_product(source: Path, name: ProductName, archive_root: Path) -> Path:
    """A copy of the product zip ``source`` renamed ``name`` (zip, top folder and the manifest's product name),
    filed under ``archive_root`` where CEDA keeps ``name``."""
    old = ProductName.parse(source)
    target = name.archive_path(archive_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(source) as src, atomic_file(target) as tmp, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(f"/{MANIFEST}"):
                data = data.replace(old.stem.encode(), name.stem.encode())
            renamed = zipfile.ZipInfo(name.sen3 + info.filename.removeprefix(old.sen3), info.date_time)
            renamed.external_attr, renamed.compress_type = info.external_attr, info.compress_type
            dst.writestr(renamed, data)
    return target


def day_archive(pool: list[Path], pool_root: Path, archive_root: Path, day: dt.date, n_products: int) -> list[Path]:
    """``n_products`` clones of ``pool`` (products of ``POOL_DAY`` under ``pool_root``) named as
    ``make_sample_archive`` names that many products of ``day`` (missions alternate as in the pool: product i
    is a clone of pool product i mod len(pool)), and the pool's match-up table as the day's."""
    from cloud_tasks.sample.specs import product_specs

    if len(pool) % 2:
        raise ValueError("the pool must hold an even number of products (missions alternate)")
    specs = product_specs(day, n_products, grid="small")
    zips = [clone_product(pool[i % len(pool)], spec.name, archive_root) for i, spec in enumerate(specs)]
    table_path = matchups_path(archive_root, day)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(matchups_path(pool_root, POOL_DAY), table_path)
    return zips


def product_pool(folder: Path, count: int, seed: int) -> tuple[list[Path], float]:
    """``count`` generated small-grid products of ``POOL_DAY`` (kept when already there); the seconds taken."""
    from cloud_tasks.sample import make_sample_archive

    started = time.perf_counter()
    zips = make_sample_archive(folder, POOL_DAY, count, grid="small", seed=seed)
    return sorted(zips, key=lambda z: z.name), time.perf_counter() - started


# --- arithmetic ---------------------------------------------------------------------------------------


def idle_split(intervals: list[tuple[dt.datetime, dt.datetime]], start: dt.datetime, end: dt.datetime) -> dict:
    """The seconds of ``[start, end]`` with no interval under way: before the first, between, after the last."""
    if not intervals:
        return {"before": (end - start).total_seconds(), "between": 0.0, "after": 0.0}
    first, last = min(s for s, _ in intervals), max(e for _, e in intervals)
    between = (last - first).total_seconds() - busy_seconds(intervals)
    return {
        "before": max(0.0, (first - start).total_seconds()),
        "between": between,
        "after": max(0.0, (end - last).total_seconds()),
    }


def concurrency(intervals: list[tuple[dt.datetime, dt.datetime]], start: dt.datetime, end: dt.datetime) -> dict:
    """Seconds of ``[start, end]`` during which exactly k intervals were under way, for each k seen."""
    events = sorted([(start, 0), (end, 0)] + [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    seconds: Counter = Counter()
    running, previous = 0, start
    for when, change in events:
        clipped = min(max(when, start), end)
        if clipped > previous:
            seconds[running] += (clipped - previous).total_seconds()
            previous = clipped
        running += change
    return dict(sorted(seconds.items()))


def growth_exponent(sizes: list[float], values: list[float]) -> float | None:
    """The least-squares slope of log(value) against log(size): 1 for linear growth, 2 for quadratic; None
    with fewer than two distinct sizes or a value that is not positive."""
    pairs = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len(pairs) < len(sizes) or len({x for x, _ in pairs}) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in pairs)
    mean_y = statistics.fmean(y for _, y in pairs)
    return sum((x - mean_x) * (y - mean_y) for x, y in pairs) / sum((x - mean_x) ** 2 for x, _ in pairs)


def share(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole`` (0 when whole is 0)."""
    return 100.0 * part / whole if whole else 0.0


def growth(before: dict, after: dict) -> dict:
    """What each count grew by between two snapshots of the same keys (new keys count from 0)."""
    return {key: after[key] - before.get(key, 0) for key in after}


# --- observation ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of a process itself, and of its descendants (live ones, and the ended ones it reaped)."""
    import psutil

    try:
        root = psutil.Process(pid)
        own = root.cpu_times()
        family = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    descendants = own.children_user + own.children_system
    for child in family:
        with suppress(psutil.NoSuchProcess):
            t = child.cpu_times()
            descendants += t.user + t.system + t.children_user + t.children_system
    return own.user + own.system, descendants


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process."""
    with suppress(OSError, IndexError):
        return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    return 0.0


def component_cpu(airflow: Airflow, postgres) -> dict[str, float]:
    """CPU seconds so far of the scheduler's own process, of the executor (task processes and their
    supervisors: the scheduler's descendants), the api-server, the dag-processor and PostgreSQL."""
    scheduler, executor = cpu_seconds(airflow.processes["scheduler"].pid)
    cpu = {"scheduler": scheduler, "executor (tasks)": executor}
    for name in ("api-server", "dag-processor"):
        cpu[name] = sum(cpu_seconds(airflow.processes[name].pid))
    if postgres is not None:
        cpu["postgres"] = sum(cpu_seconds(postgres.process.pid))
    return cpu


def database_counts(url: str) -> dict[str, int]:
    """Rows of every table of the metadata DB, the bytes of the XCom values (as text) and of the database."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            counts = {
                name: db.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()
                for name in sa.inspect(db).get_table_names()
            }
            xcom = "SELECT coalesce(sum(length(CAST(value AS TEXT))), 0) FROM xcom"
            counts["xcom bytes"] = int(db.execute(sa.text(xcom)).scalar_one())
            if engine.dialect.name == "postgresql":
                size = "SELECT pg_database_size(current_database())"
            else:
                size = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            counts["database bytes"] = int(db.execute(sa.text(size)).scalar_one())
    finally:
        engine.dispose()
    return counts


def xcom_by_task(url: str) -> dict[str, list[int]]:
    """Per task id: the XCom rows and the bytes of their values (as text)."""
    import sqlalchemy as sa

    query = "SELECT task_id, count(*), coalesce(sum(length(CAST(value AS TEXT))), 0) FROM xcom GROUP BY task_id"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            return {task: [int(rows), int(size)] for task, rows, size in db.execute(sa.text(query))}
    finally:
        engine.dispose()


def snapshot(airflow: Airflow, postgres) -> dict:
    return {"cpu": component_cpu(airflow, postgres), "db": database_counts(airflow.database)}


def difference(before: dict, after: dict) -> dict:
    return {"cpu": growth(before["cpu"], after["cpu"]), "db": growth(before["db"], after["db"])}


# --- runs -----------------------------------------------------------------------------------------------


class Bench:
    """What every measured run shares: the work folder, the PostgreSQL server (None: SQLite), the deployment
    settings and the wait limits."""

    def __init__(self, work: Path, postgres, parallelism: int, seconds_per_product: float, chunk_size: int):
        self.work, self.postgres, self.seconds_per_product = work, postgres, seconds_per_product
        self.parallelism, self.chunk_size = parallelism, chunk_size
        self.settings = {
            "CLOUD_TASKS_ARCHIVE_ROOTS": str(work),
            "CLOUD_TASKS_DATA_ROOTS": str(work),
            "CLOUD_TASKS_RUNNERS": "local",
            "CLOUD_TASKS_GPU": "false",
            # a run that finds no product fails within minutes instead of waiting for 12 h
            "CLOUD_TASKS_PRODUCT_WAIT_HOURS": "0.05",
            "CLOUD_TASKS_PRODUCT_POKE_MINUTES": "0.5",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        }
        self.runs = 0

    def fresh(self, label: str) -> tuple[Path, str | None, Path]:
        """A new Airflow home, database URL (None: SQLite in the home) and empty data root for one run."""
        self.runs += 1
        name = f"{label}_{self.runs}"
        home = Path(tempfile.mkdtemp(prefix=f"airflow-{name}-", dir=self.work))
        data = self.work / f"data-{name}"
        shutil.rmtree(data, ignore_errors=True)
        return home, (self.postgres.create(name) if self.postgres else None), data

    def conf(self, archive: Path, data: Path) -> dict:
        paths = {"archive_root": str(archive), "data_root": str(data)}
        return paths | {"runner": "local", "gpu": False, "chunk_size": self.chunk_size}


def run_figures(runs: list[dict], instances: list[dict], start: dt.datetime, end: dt.datetime) -> dict:
    """Timings of one or more runs taken together, from ``start`` to ``end``."""
    intervals = task_intervals(instances)
    by_task = Counter(ti["task_id"] for ti in instances)
    seconds_by_task = Counter()
    for ti in instances:
        if ti["start_date"] and ti["end_date"]:
            took = dt.datetime.fromisoformat(ti["end_date"]) - dt.datetime.fromisoformat(ti["start_date"])
            seconds_by_task[ti["task_id"]] += took.total_seconds()
    return {
        "states": dict(Counter(run["state"] for run in runs)),
        "wall": (end - start).total_seconds(),
        "tasks": sum((e - s).total_seconds() for s, e in intervals),
        "busy": busy_seconds(intervals),
        "idle": idle_split(intervals, start, end),
        "concurrency": concurrency(intervals, start, end),
        "task_instances": dict(by_task),
        "task_seconds": dict(seconds_by_task),
        "ti_states": dict(Counter(ti["state"] for ti in instances)),
        "retried": sum(1 for ti in instances if ti["try_number"] > 1),
    }


def measure_day(bench: Bench, archive: Path, n_products: int) -> dict:
    """One manual run of the daily DAG over ``archive``'s day of ``n_products``, on a fresh deployment."""
    home, database, data = bench.fresh(f"day{n_products}")
    load = os.getloadavg()[0]
    with deployment(home, database=database, settings=bench.settings) as airflow:
        before = snapshot(airflow, bench.postgres)
        run_id = airflow.trigger(bench.conf(archive, data) | {"date": SIZE_DAY.isoformat()})
        timeout = 900 + bench.seconds_per_product * n_products
        run = airflow.wait_for_runs([run_id], timeout)[0]
        after = snapshot(airflow, bench.postgres)
        instances = airflow.task_instances(run_id)
        scheduler_mb = peak_rss_mb(airflow.processes["scheduler"].pid)
        xcoms = xcom_by_task(airflow.database)  # a fresh database: all of them this run's
    when = dt.datetime.fromisoformat
    figures = run_figures([run], instances, when(run["queued_at"]), when(run["end_date"]))
    assert figures["wall"] == run_timings(run, instances)["wall"]
    shutil.rmtree(data, ignore_errors=True)
    return figures | {
        "products": n_products,
        "home": str(home),
        "load": [load, os.getloadavg()[0]],
        "scheduler_peak_rss_mb": scheduler_mb,
        "xcom_by_task": xcoms,
        **difference(before, after),
    }


def measure_backfill(bench: Bench, archive: Path, days: int) -> dict:
    """A backfill of ``days`` days from ``BACKFILL_START`` over ``archive``, on a fresh deployment."""
    home, database, data = bench.fresh(f"backfill{days}")
    load = os.getloadavg()[0]
    last = BACKFILL_START + dt.timedelta(days=days - 1)
    with deployment(home, database=database, settings=bench.settings) as airflow:
        before = snapshot(airflow, bench.postgres)
        created = dt.datetime.now(dt.UTC)
        airflow.cli(
            *("backfill", "create", "--dag-id", "slstr_cloud_mask"),
            *("--from-date", BACKFILL_START.isoformat(), "--to-date", last.isoformat()),
            *("--dag-run-conf", json.dumps(bench.conf(archive, data))),
        )
        run_ids = airflow.wait(
            lambda: [r["dag_run_id"] for r in airflow.runs() if r["run_type"] == "backfill"],
            "the backfill's runs",
            timeout=300,
        )
        runs = airflow.wait_for_runs(run_ids, 900 + bench.seconds_per_product * 60 * days)
        after = snapshot(airflow, bench.postgres)
        instances = [ti for run_id in run_ids for ti in airflow.task_instances(run_id)]
        scheduler_mb = peak_rss_mb(airflow.processes["scheduler"].pid)
    when = dt.datetime.fromisoformat
    end = max(when(run["end_date"]) for run in runs)
    figures = run_figures(runs, instances, created, end)
    shutil.rmtree(data, ignore_errors=True)
    return figures | {
        "days": days,
        "runs": len(runs),
        "interval_days": sorted(when(r["data_interval_start"]).date().isoformat() for r in runs),
        "run_seconds": [(when(r["end_date"]) - when(r["start_date"])).total_seconds() for r in runs],
        "home": str(home),
        "load": [load, os.getloadavg()[0]],
        "scheduler_peak_rss_mb": scheduler_mb,
        **difference(before, after),
    }


def _warm_up() -> None:
    import cloud_tasks.convert
    import cloud_tasks.extract
    import cloud_tasks.pipeline  # noqa: F401


def _floor_chunk(chunk: dict, data_root: str) -> None:
    from cloud_tasks.pipeline import convert_period

    convert_period([chunk], data_root)


def measure_floor(bench: Bench, archive: Path, n_products: int) -> float:
    """Wall seconds of the same extract/convert work without Airflow: the DAG's chunks, 2 processes."""
    from cloud_tasks.archive import discover
    from cloud_tasks.planning import chunk_products

    begin = dt.datetime.combine(SIZE_DAY, dt.time(), tzinfo=dt.UTC)
    zips = [str(z) for z in discover(archive, begin, begin + dt.timedelta(days=1), ["S3A", "S3B"])]
    if len(zips) != n_products:
        raise RuntimeError(f"{archive}: {len(zips)} products of {SIZE_DAY}, expected {n_products}")
    chunks = chunk_products({SIZE_DAY.isoformat(): zips}, bench.chunk_size)
    data = bench.work / f"data-floor-{n_products}"
    shutil.rmtree(data, ignore_errors=True)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        for warming in [pool.submit(_warm_up) for _ in range(2)]:  # the workers' imports, outside the clock
            warming.result()
        started = time.perf_counter()
        list(pool.map(_floor_chunk, chunks, [str(data)] * len(chunks)))
        seconds = time.perf_counter() - started
    shutil.rmtree(data, ignore_errors=True)
    return seconds


# --- report ---------------------------------------------------------------------------------------------


def _mean(runs: list[dict], figure, digits: int = 1) -> str:
    return spread([figure(run) for run in runs], digits)


def _timing_row(n: int, runs: list[dict], floor: list[float] | None) -> tuple:
    """A row of the day runs' timing table (columns in ``day_tables``)."""
    wall = statistics.fmean(r["wall"] for r in runs)
    return (
        n,
        len(runs),
        ", ".join(sorted({state for r in runs for state in r["states"]})),
        _mean(runs, lambda r: r.get("retried", 0), 0),
        _mean(runs, lambda r: r["wall"]),
        f"{wall / n:.2f}",
        _mean(runs, lambda r: r["tasks"]),
        _mean(runs, lambda r: r["wall"] - r["busy"]),
        _mean(runs, lambda r: share(r["wall"] - r["busy"], r["wall"])),
        _mean(runs, lambda r: r["tasks"] / r["wall"]),
        sum(runs[0]["task_instances"].values()),
        spread(floor) if floor else "-",
        f"{wall / statistics.fmean(floor):.1f}" if floor else "-",
        _mean(runs, lambda r: statistics.fmean(r["load"])),
    )


def day_tables(days: dict[int, list[dict]], floors: dict[int, list[float]]) -> list[str]:
    """The tables of the day runs: timings, idle time, tasks, component CPU, DB growth."""
    timing, idle, tasks, cpu, db = [], [], [], [], []
    for n, runs in sorted(days.items()):
        timing.append(_timing_row(n, runs, floors.get(n)))
        idle.append((n, *(_mean(runs, lambda r, k=k: r["idle"][k]) for k in ("before", "between", "after"))))
        measured = all("concurrency" in r for r in runs)  # not in results of earlier versions
        idle[-1] += tuple(_mean(runs, lambda r, k=k: _at_once(r, k)) if measured else "-" for k in range(5))
        for task, count in sorted(runs[0]["task_instances"].items()):
            mean = _mean(runs, lambda r, t=task: r["task_seconds"].get(t, 0.0) / r["task_instances"][t])
            tasks.append((n, task, count, _mean(runs, lambda r, t=task: r["task_seconds"].get(t, 0.0)), mean))
        names = list(runs[0]["cpu"])
        cpu.append((n, *(_mean(runs, lambda r, c=c: r["cpu"][c]) for c in names)))
        cpu[-1] += (_mean(runs, lambda r: r["scheduler_peak_rss_mb"], 0),)
        db.append((n, *(_db_row(runs))))
    return [
        "### Days through the scheduler\n",
        "Retried: task instances that ran more than once. Wall: run queued to run ended. Idle: wall time with "
        "no task running (`busy_seconds`), its share of the wall. Tasks running: summed task time / wall. "
        "Floor: the same extract/convert chunks without Airflow (2 processes). Load: the 1-min load average at "
        "the run's start and end, averaged. Mean of the runs (min-max).\n",
        table(
            (
                *("products", "runs", "state", "retried", "wall s", "wall s/product", "summed task s", "idle s"),
                *("idle %", "tasks running (mean)"),
                *("task instances", "floor s", "wall/floor", "load"),
            ),
            timing,
        ),
        "\n### Where the idle time lies (seconds)\n",
        "Then the share of the wall time (%) with 0, 1, 2, 3 and 4 or more tasks running.\n",
        table(
            (
                *("products", "before the first task", "between tasks", "after the last task"),
                *("0 running", "1", "2", "3", "4+"),
            ),
            idle,
        ),
        "\n### Task instances\n",
        table(("products", "task", "instances", "summed s", "mean s per instance"), tasks),
        "\n### CPU seconds of each component during the run\n",
        table(("products", *names, "scheduler peak RSS MB"), cpu),
        "\n### Metadata DB growth (rows added per table)\n",
        table(("products", *TABLES, "all tables", "XCom KB", "DB MB"), db),
    ]


def _at_once(run: dict, k: int) -> float:
    """The share of the run's wall time (%) with ``k`` tasks running (with 4 or more for k = 4)."""
    seconds = sum(v for running, v in run.get("concurrency", {}).items() if int(running) == k or k == 4 <= int(running))
    return share(seconds, run["wall"])


def _db_row(runs: list[dict]) -> tuple:
    rows = [_mean(runs, lambda r, t=t: r["db"].get(t, 0), 0) for t in TABLES]
    total = _mean(runs, lambda r: sum(v for k, v in r["db"].items() if not k.endswith("bytes")), 0)
    return (
        *rows,
        total,
        _mean(runs, lambda r: r["db"]["xcom bytes"] / 1024),
        _mean(runs, lambda r: r["db"]["database bytes"] / 2**20),
    )


GROWTH_FIGURES = {
    "wall s": lambda r: r["wall"],
    "summed task s": lambda r: r["tasks"],
    "idle s": lambda r: r["wall"] - r["busy"],
    "scheduler CPU s": lambda r: r["cpu"]["scheduler"],
    "api-server CPU s": lambda r: r["cpu"]["api-server"],
    "postgres CPU s": lambda r: r["cpu"].get("postgres", 0.0),
    "rows added": lambda r: sum(v for k, v in r["db"].items() if not k.endswith("bytes")),
    "XCom bytes": lambda r: r["db"]["xcom bytes"],
    "DB bytes": lambda r: r["db"]["database bytes"],
}


def growth_table(days: dict[int, list[dict]]) -> list[str]:
    """Each figure's growth exponent across all the sizes and from each size to the next, and its value per
    product at each size."""
    sizes = sorted(days)
    steps = list(itertools.pairwise(sizes))
    rows = []
    for name, figure in GROWTH_FIGURES.items():
        means = [statistics.fmean(figure(r) for r in days[n]) for n in sizes]
        fits = [growth_exponent(sizes, means)]
        fits += [growth_exponent([a, b], [means[i], means[i + 1]]) for i, (a, b) in enumerate(steps)]
        per_product = [f"{m / n:.3g}" for m, n in zip(means, sizes, strict=True)]
        rows.append((name, *("-" if e is None else f"{e:.2f}" for e in fits), *per_product))
    return [
        "\n### Growth with the day's size\n",
        "Exponent: least-squares slope of log(figure) against log(products) over all the sizes, then from each "
        "size to the next (1 = linear, 2 = quadratic); then the figure per product at each size.\n",
        table(
            (
                *("figure", "exponent"),
                *(f"{a}->{b}" for a, b in steps),
                *(f"per product at {n}" for n in sizes),
            ),
            rows,
        ),
    ]


def xcom_table(days: dict[int, list[dict]]) -> list[str]:
    """Who writes the XComs: rows and bytes per task, at each size measured with that breakdown."""
    rows = [
        (n, task, count, f"{size / 1024:.1f}", f"{size / n:.0f}")
        for n, runs in sorted(days.items())
        if "xcom_by_task" in runs[-1]
        for task, (count, size) in sorted(runs[-1]["xcom_by_task"].items())
    ]
    if not rows:
        return []
    return [
        "\n### XCom per task (the last run of each size)\n",
        table(("products", "task", "rows", "KB", "bytes per product"), rows),
    ]


def backfill_table(result: dict, per_day: int) -> list[str]:
    idle = result["wall"] - result["busy"]
    run_seconds = result["run_seconds"]
    row = (
        result["days"],
        per_day,
        ", ".join(f"{count} {state}" for state, count in sorted(result["states"].items())),
        f"{result['wall']:.0f}",
        f"{result['wall'] / result['runs']:.1f}",
        spread(run_seconds),
        f"{result['tasks']:.0f}",
        f"{idle:.0f} ({share(idle, result['wall']):.1f} %)",
        *(result["db"].get(t, 0) for t in ("dag_run", "task_instance", "xcom")),
        f"{result['db']['xcom bytes'] / 1024:.0f}",
        f"{result['db']['database bytes'] / 2**20:.1f}",
        f"{result['cpu']['scheduler']:.0f}",
        f"{statistics.fmean(result['load']):.1f}",
    )
    return [
        "\n### Backfill\n",
        "Wall: `backfill create` to the last run's end; run s: each run's start to end, mean (min-max) over "
        "its runs; idle: wall time with no task of the backfill running.\n",
        table(
            (
                *("days", "products/day", "runs", "wall s", "wall s/run", "run s", "summed task s", "idle s"),
                *("dag_run rows", "task_instance rows", "xcom rows", "XCom KB", "DB MB", "scheduler CPU s", "load"),
            ),
            [row],
        ),
    ]


def render(results: dict) -> str:
    """The results as Markdown: set-up, then each table."""
    days = {int(n): runs for n, runs in results["days"].items()}
    floors = {int(n): seconds for n, seconds in results.get("floors", {}).items()}
    pool = results["pool"]
    made = [("pool (generated: `make_sample_archive`, small grid)", pool["count"], pool["seconds"])]
    cloned = sorted((int(n), seconds) for n, seconds in results["cloned"].items())
    made += [(f"day of {n} (cloned from the pool)", n, s) for n, s in cloned]
    lines = [
        f"Metadata DB: {results['database']}; LocalExecutor, parallelism {results['parallelism']}; chunk_size "
        f"{results.get('chunk_size', DEFAULT_CHUNK_SIZE)}; "
        f"{os.cpu_count()} CPUs; no model in the registry (`mask` skipped). Code {results.get('source', '?')}, "
        f"started {results['started']}.\n",
        table(
            ("products", "count", "seconds", "s/product"),
            [(what, n, f"{s:.1f}", f"{s / n:.3f}") for what, n, s in made],
        ),
        f"\nGenerating a day of 2,000 small products with `make_sample_archive` at the pool's rate: "
        f"~{2000 * pool['seconds'] / pool['count'] / 60:.0f} min (one process).\n",
    ]
    if days:
        lines += day_tables(days, floors)
    if len(days) > 1:
        lines += growth_table(days)
    lines += xcom_table(days)
    if results.get("backfill"):
        lines += backfill_table(results["backfill"], results["backfill_products"])
    return "\n".join(lines) + "\n"


def source_version() -> str:
    """The commit of the code measured (``SOURCE_COMMIT`` in the environment names a snapshot's), with
    ``+changes`` when the checkout has uncommitted changes."""
    import subprocess

    if os.environ.get("SOURCE_COMMIT"):
        return os.environ["SOURCE_COMMIT"]
    status = ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run(status, capture_output=True, text=True).stdout.strip()
    return (head.stdout.strip() or "unknown") + (" +changes" if changed else "")


def log(message: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {message}", flush=True)


def run_sizes(bench: Bench, args, pool: list[Path], results: dict, save) -> None:
    """Each size's runs (and floor), its archive cloned first and removed after unless ``--keep``."""
    repeats = args.repeats + [args.repeats[-1]] * (len(args.sizes) - len(args.repeats))
    for n, times in zip(args.sizes, repeats, strict=True):
        archive = bench.work / f"archive-{n}"
        started = time.perf_counter()
        day_archive(pool, bench.work / "pool", archive, SIZE_DAY, n)
        results["cloned"][n] = time.perf_counter() - started
        for i in range(times):
            log(f"day of {n} products: run {i + 1} of {times}")
            results["days"].setdefault(n, []).append(measure_day(bench, archive, n))
            log(f"  {results['days'][n][-1]['states']}, wall {results['days'][n][-1]['wall']:.0f} s")
            save()
        if args.floor:
            results["floors"][n] = [measure_floor(bench, archive, n)]
            log(f"  floor {results['floors'][n][0]:.0f} s")
            save()
        if not args.keep:
            shutil.rmtree(archive, ignore_errors=True)


def run_backfill(bench: Bench, args, pool: list[Path], results: dict) -> None:
    archive = bench.work / "archive-backfill"
    for offset in range(args.backfill_days):
        day_archive(
            pool, bench.work / "pool", archive, BACKFILL_START + dt.timedelta(days=offset), args.backfill_products
        )
    log(f"backfill of {args.backfill_days} days of {args.backfill_products} products")
    results["backfill"] = measure_backfill(bench, archive, args.backfill_days)
    results["backfill_products"] = args.backfill_products
    log(f"  {results['backfill']['states']}, wall {results['backfill']['wall']:.0f} s")
    if not args.keep:
        shutil.rmtree(archive, ignore_errors=True)


def measure(args) -> dict:
    """Every measurement ``args`` asks for; the results (also saved to ``--json`` after each run)."""
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    missing = "--sqlite asked for" if args.sqlite else postgres_missing()
    results = {"started": f"{dt.datetime.now():%Y-%m-%d %H:%M}", "parallelism": args.parallelism}
    results["chunk_size"] = args.chunk_size
    results["source"] = source_version()
    results |= {"cloned": {}, "days": {}, "floors": {}}

    def save():
        with atomic_file(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=1, default=str))

    log(f"pool of {args.pool} generated products")
    pool, seconds = product_pool(work / "pool", args.pool, seed=7)
    results["pool"] = {"count": args.pool, "seconds": seconds}
    with ExitStack() as stack:
        postgres = None if missing else stack.enter_context(postgres_server(work))
        version = f"PostgreSQL {postgres.bindir.parts[-2]}" if postgres else f"SQLite ({missing})"
        results["database"] = version
        bench = Bench(work, postgres, args.parallelism, args.seconds_per_product, args.chunk_size)
        run_sizes(bench, args, pool, results, save)
        if args.backfill_days:
            run_backfill(bench, args, pool, results)
            save()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 500, 2000], help="products per day run")
    parser.add_argument("--repeats", type=int, nargs="+", default=[2, 2, 1], help="runs per size (last repeats)")
    parser.add_argument("--backfill-days", type=int, default=30, help="days of the backfill (0: none)")
    parser.add_argument("--backfill-products", type=int, default=4, help="products per backfill day")
    parser.add_argument("--pool", type=int, default=64, help="generated products the archives are cloned from")
    parser.add_argument("--parallelism", type=int, default=4, help="[core] parallelism of the LocalExecutor")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="the runs' chunk_size param")
    parser.add_argument("--seconds-per-product", type=float, default=5.0, help="wait limit per product (+900 s)")
    parser.add_argument("--floor", action="store_true", help="also time the work without Airflow")
    parser.add_argument("--sqlite", action="store_true", help="SQLite even where PostgreSQL could run")
    parser.add_argument("--keep", action="store_true", help="keep the archives (data roots are always removed)")
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "scale")
    parser.add_argument("--json", type=Path, help="raw results (default: WORKDIR/scale.json)")
    parser.add_argument("--output", type=Path, help="Markdown tables (default: WORKDIR/scale.md)")
    parser.add_argument("--from-json", type=Path, help="only render the tables of earlier raw results")
    args = parser.parse_args(argv)
    args.json = args.json or args.workdir / "scale.json"
    args.output = args.output or args.workdir / "scale.md"
    if args.pool < 2 or args.pool % 2:
        parser.error("--pool must be an even number >= 2")
    results = json.loads(args.from_json.read_text()) if args.from_json else measure(args)
    markdown = render(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.output) as tmp:
        tmp.write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
