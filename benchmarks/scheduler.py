"""The DAG run through a real scheduler: the Airflow-overhead row of ``python -m benchmarks`` and the scale
benchmark (``benchmarks.scale``).

Starts Airflow's api-server, scheduler and dag-processor on a fresh metadata DB (SQLite, or a database of a
PostgreSQL server started here: ``postgres_server``) with the LocalExecutor, and drives runs through the
REST API. Only this loopback deployment exists, so the simple auth manager runs without logins
(``simple_auth_manager_all_admins``) and the scheduler makes no runs of its own (``use_job_schedule`` off:
unpausing would otherwise start the latest day's run beside the measured ones).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).with_name("airflow")
DAG_ID = "slstr_cloud_mask"
PAGE = 100  # the API's default [api] maximum_page_limit: a larger ``limit`` is silently cut to it
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
}


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable, *, timeout: float, what: str, processes: dict, interval: float = 1.0):
    """Poll ``condition`` until it returns something truthy (returned); raise after ``timeout`` seconds, or at
    once if one of ``processes`` (name -> Popen, logging to ``<home>/<name>.log``) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"Airflow {name} exited with status {process.returncode} (see its log)")
        if value := condition():
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def started(
    name: str, command: list, logs: Path, stop: signal.Signals = signal.SIGTERM, **popen
) -> Iterator[subprocess.Popen]:
    """A long-running process in its own session, logging to ``logs/<name>.log``; on exit it is sent ``stop``,
    waited for (bounded), then its whole process group (task processes included) is killed."""
    with (logs / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [str(c) for c in command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            **popen,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(stop)
            with suppress(subprocess.TimeoutExpired):
                process.wait(60)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def healthy(api: httpx.Client, components=("metadatabase", "scheduler", "dag_processor")) -> bool:
    """Whether the api-server answers and reports each of ``components`` healthy."""
    try:
        response = api.get("/api/v2/monitor/health")
    except httpx.TransportError:
        return False
    report = response.json() if response.status_code == 200 else {}
    return all((report.get(c) or {}).get("status") == "healthy" for c in components)


def busy_seconds(intervals: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Seconds during which at least one of ``intervals`` was under way (their union's length)."""
    total, covered_until = 0.0, None
    for start, end in sorted(intervals):
        if covered_until is not None and end <= covered_until:
            continue
        start = max(start, covered_until) if covered_until is not None else start
        total += (end - start).total_seconds()
        covered_until = end
    return total


# --- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Debian's PostgreSQL server binaries (the newest installed major version), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def postgres_missing() -> str:
    """Why no PostgreSQL server can be started here; '' when one can."""
    if os.geteuid() != 0:
        return "not root (the server runs as the postgres user)"
    if postgres_bindir() is None:
        return "no PostgreSQL server installed (/usr/lib/postgresql/*/bin; apt-get install postgresql)"
    return ""


@dataclass
class Postgres:
    """A running PostgreSQL server (user ``airflow``, password authentication on the loopback interface)."""

    bindir: Path
    port: int
    password: str
    process: subprocess.Popen

    def create(self, name: str) -> str:
        """A fresh, empty database ``name``; its SQLAlchemy URL."""
        login = {**os.environ, "PGPASSWORD": self.password}
        command = [self.bindir / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", name]
        subprocess.run([str(c) for c in command], env=login, check=True, timeout=120, capture_output=True)
        return f"postgresql+psycopg2://airflow:{self.password}@127.0.0.1:{self.port}/{name}"


@contextmanager
def postgres_server(logs: Path) -> Iterator[Postgres]:
    """A PostgreSQL server run by the ``postgres`` user on a free loopback port (needs root: see
    ``postgres_missing``), its data in a temporary folder removed afterwards; its log in ``logs``."""
    bindir = postgres_bindir()
    workdir = Path(tempfile.mkdtemp(prefix="cloud-tasks-bench-pg-"))  # not under a 0700 folder of root's
    try:
        shutil.chown(workdir, "postgres", "postgres")
        as_postgres = {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": workdir}
        password = secrets.token_urlsafe(24)
        (pwfile := workdir / "password").write_text(password)
        shutil.chown(pwfile, "postgres", "postgres")
        initdb = [bindir / "initdb", "-D", workdir / "data", "-U", "airflow", f"--pwfile={pwfile}", "-E", "UTF8"]
        initdb.append("--auth=scram-sha-256")
        subprocess.run([str(c) for c in initdb], check=True, timeout=120, capture_output=True, **as_postgres)
        port = free_port()
        server = [bindir / "postgres", "-D", workdir / "data", "-p", port, "-c", "listen_addresses=127.0.0.1"]
        server += ["-c", f"unix_socket_directories={workdir}"]
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for its clients)
        with started("postgres", server, logs, stop=signal.SIGINT, **as_postgres) as process:
            ready = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
            wait_until(
                lambda: subprocess.run(ready).returncode == 0,
                timeout=60,
                what="PostgreSQL",
                processes={"postgres": process},
            )
            yield Postgres(bindir, port, password, process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- Airflow ---------------------------------------------------------------------------------------


def airflow_env(home: Path, port: int, database: str | None = None, settings: dict | None = None) -> dict[str, str]:
    """The environment of every component: this repository's DAGs, the LocalExecutor, ``database`` (SQLite in
    ``home`` when None), then ``settings`` (more variables, which win)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }
    if database:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = database
    return env | (settings or {})


@dataclass
class Airflow:
    """A running deployment: its home, environment, REST client and component processes (name -> Popen)."""

    home: Path
    env: dict[str, str]
    api: httpx.Client
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def database(self) -> str:
        """The metadata DB's SQLAlchemy URL."""
        return self.env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or f"sqlite:///{self.home / 'airflow.db'}"

    def wait(self, condition: Callable, what: str, timeout: float = 180, interval: float = 1.0):
        """``wait_until``, failing at once should a component exit."""
        return wait_until(condition, timeout=timeout, what=what, processes=self.processes, interval=interval)

    def cli(self, *args: str, timeout: float = 600) -> str:
        """Run the ``airflow`` command line against this deployment; its stdout (stderr goes to ``cli.log``)."""
        with (self.home / "cli.log").open("ab") as log:
            command = [str(AIRFLOW), *args]
            done = subprocess.run(command, env=self.env, stdout=subprocess.PIPE, stderr=log, timeout=timeout, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} exited with status {done.returncode} (see cli.log)")
        return done.stdout

    def pages(self, path: str, key: str, **params) -> list[dict]:
        """Every item of one of the API's paginated lists."""
        items: list[dict] = []
        while True:
            response = self.api.get(path, params={**params, "limit": PAGE, "offset": len(items)})
            response.raise_for_status()
            page = response.json()
            items += page[key]
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def trigger(self, conf: dict) -> str:
        """Trigger a manual run with ``conf``; its run id."""
        response = self.api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def runs(self, **params) -> list[dict]:
        """The DAG's runs (API records), filtered by the API's list parameters (``run_type``...)."""
        return self.pages(f"/api/v2/dags/{DAG_ID}/dagRuns", "dag_runs", **params)

    def wait_for_runs(self, run_ids: list[str], timeout: float) -> list[dict]:
        """Poll until each of ``run_ids`` has ended (success or failed); their records, in that order."""

        def ended():
            found = {run["dag_run_id"]: run for run in self.runs()}
            done = [found.get(run_id) for run_id in run_ids]
            return all(run and run["state"] in ("success", "failed") for run in done) and done

        return self.wait(ended, f"{len(run_ids)} run(s) of {DAG_ID} to end", timeout=timeout, interval=5.0)

    def task_instances(self, run_id: str) -> list[dict]:
        return self.pages(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", "task_instances")


@contextmanager
def deployment(home: Path, *, database: str | None = None, settings: dict | None = None) -> Iterator[Airflow]:
    """api-server, scheduler and dag-processor on a migrated metadata DB (see ``airflow_env``) with the ``gpu``
    pool, logging in ``home``; yields once the DAG is parsed and unpaused; every component is stopped on exit."""
    port = free_port()
    env = airflow_env(home, port, database, settings)
    for args in (["db", "migrate"], ["pools", "set", "gpu", "1", "ML steps"]):
        with (home / "setup.log").open("ab") as log:
            subprocess.run([str(AIRFLOW), *args], env=env, stdout=log, stderr=log, check=True, timeout=600)
    with ExitStack() as stack, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
        airflow = Airflow(home, env, api)
        for name, args in COMPONENTS.items():
            command = [AIRFLOW, *(a.format(port=port) for a in args)]
            airflow.processes[name] = stack.enter_context(started(name, command, home, env=env))
        airflow.wait(lambda: healthy(api), "the api-server, scheduler and dag-processor to be healthy")
        dag_path = f"/api/v2/dags/{DAG_ID}"
        airflow.wait(lambda: api.get(dag_path).status_code == 200, f"the dag-processor to parse {DAG_ID}")
        api.patch(dag_path, json={"is_paused": False}).raise_for_status()
        yield airflow


def task_intervals(instances: list[dict]) -> list[tuple[dt.datetime, dt.datetime]]:
    """(start, end) of each task instance that ran to an end."""
    when = dt.datetime.fromisoformat  # reads the API's "Z" suffix (Python >= 3.11)
    return [(when(ti["start_date"]), when(ti["end_date"])) for ti in instances if ti["start_date"] and ti["end_date"]]


def run_timings(run: dict, instances: list[dict]) -> dict:
    """A run's state, wall seconds (queued to ended), summed task durations and the seconds with a task running."""
    when = dt.datetime.fromisoformat
    intervals = task_intervals(instances)
    return {
        "state": run["state"],
        "wall": (when(run["end_date"]) - when(run["queued_at"])).total_seconds(),
        "tasks": sum((end - start).total_seconds() for start, end in intervals),
        "busy": busy_seconds(intervals),
    }


def scheduled_run(conf: dict, home: Path, timeout: float = 3600) -> dict:
    """Trigger one run of the DAG with ``conf`` on a fresh deployment (SQLite) in ``home`` and wait for it; its
    ``run_timings``."""
    with deployment(home) as airflow:
        run = airflow.wait_for_runs([airflow.trigger(conf)], timeout)[0]
        instances = airflow.task_instances(run["dag_run_id"])
    return run_timings(run, instances)
