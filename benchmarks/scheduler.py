"""The DAG run through a real scheduler, for the Airflow-overhead row of ``python -m benchmarks``.

Starts Airflow's api-server, scheduler and dag-processor on a fresh SQLite metadata DB with the
LocalExecutor (what ``airflow standalone`` runs), triggers one run through the REST API and reads
its timings back from the same API. Only this loopback deployment exists, so the simple auth
manager runs without logins (``simple_auth_manager_all_admins``) and the scheduler makes no runs
of its own (``use_job_schedule`` off: unpausing would otherwise start the latest day's run beside
the measured one).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).with_name("airflow")
DAG_ID = "slstr_cloud_mask"
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
def started(name: str, command: list[str], home: Path, env: dict) -> Iterator[subprocess.Popen]:
    """An Airflow component in its own session, logging to ``home/<name>.log``; its whole process group
    (task processes included) is stopped on exit."""
    with (home / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [str(AIRFLOW), *command], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
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


def scheduled_run(conf: dict, home: Path, timeout: float = 3600) -> dict:
    """Trigger one run of the DAG with ``conf`` on a fresh deployment in ``home`` and wait for it; its state,
    wall seconds (queued to ended), summed task durations and the seconds with a task running."""
    port = free_port()
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
    for args in (["db", "migrate"], ["pools", "set", "gpu", "1", "ML steps"]):
        with (home / "setup.log").open("ab") as log:
            subprocess.run([str(AIRFLOW), *args], env=env, stdout=log, stderr=log, check=True, timeout=600)
    with ExitStack() as stack, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
        processes = {
            name: stack.enter_context(started(name, [a.format(port=port) for a in args], home, env))
            for name, args in COMPONENTS.items()
        }

        def wait(condition, what, timeout=180, interval=1.0):
            return wait_until(condition, timeout=timeout, what=what, processes=processes, interval=interval)

        wait(lambda: healthy(api), "the api-server, scheduler and dag-processor to be healthy")
        dag_path = f"/api/v2/dags/{DAG_ID}"
        wait(lambda: api.get(dag_path).status_code == 200, f"the dag-processor to parse {DAG_ID}")
        api.patch(dag_path, json={"is_paused": False}).raise_for_status()
        response = api.post(f"{dag_path}/dagRuns", json={"logical_date": None, "conf": conf})
        response.raise_for_status()
        run_path = f"{dag_path}/dagRuns/{response.json()['dag_run_id']}"
        run = wait(
            lambda: (r := api.get(run_path).json())["state"] in ("success", "failed") and r,
            f"the run {run_path}",
            timeout=timeout,
            interval=2.0,
        )
        instances = api.get(f"{run_path}/taskInstances", params={"limit": 1000}).json()["task_instances"]
    when = dt.datetime.fromisoformat  # reads the API's "Z" suffix (Python >= 3.11)
    intervals = [
        (when(ti["start_date"]), when(ti["end_date"])) for ti in instances if ti["start_date"] and ti["end_date"]
    ]
    return {
        "state": run["state"],
        "wall": (when(run["end_date"]) - when(run["queued_at"])).total_seconds(),
        "tasks": sum((end - start).total_seconds() for start, end in intervals),
        "busy": busy_seconds(intervals),
    }
