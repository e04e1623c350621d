"""Fixtures of the integration tests: real services, started by the tests and stopped by them.

- ``docker_engine``: a private dockerd with the ML image built offline (``docker/test-engine.sh``).
- ``postgres``: a PostgreSQL server in a temporary data directory, on a free loopback port.
- ``redis_broker``: a Redis server on a free loopback port (the Celery broker).
- ``airflow_deployment``: Airflow's api-server, scheduler, dag-processor and a Celery worker on them,
  with this repository's dags/ and plugins/, and a REST client logged in as admin.

They need root: Debian packages are installed with apt-get when missing, dockerd runs as root and
PostgreSQL and Redis as their own users. As any other user, every integration test skips. Each process
is started in its own session and stopped by its process group; every wait is bounded; the logs of
the running services are appended to the report of a failing test.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from benchmarks.scheduler import free_port, healthy

if TYPE_CHECKING:
    import httpx

REPO = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = REPO / "docker" / "test-engine.sh"
AIRFLOW = Path(sys.executable).with_name("airflow")
DAG_ID = "slstr_cloud_mask"

LIVE_LOGS: dict[str, Path] = {}  # name -> log file of each service running now, shown when a test fails


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root: they apt-get install packages, run dockerd, PostgreSQL and Redis")


def run(command: list, *, timeout: float, **kwargs) -> str:
    """Run a command to completion (bounded) and return its stdout; fail the test with its output otherwise."""
    command = [str(c) for c in command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{shlex.join(command)}` did not finish within {timeout}s:\n{e.stdout or ''}{e.stderr or ''}")
    if result.returncode != 0:
        pytest.fail(f"`{shlex.join(command)}` exited with status {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def apt_install(*packages: str) -> None:
    """Install Debian packages, waiting (bounded) for the dpkg lock should another apt-get be running."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
    run([*apt, "update", "-qq"], timeout=900, env=env)
    run([*apt, "install", "-y", "-qq", "--no-install-recommends", *packages], timeout=1200, env=env)


def tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e})"


@dataclass
class Service:
    """A long-running process in its own session (so its whole process group can be stopped), logging to a file."""

    name: str
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, name: str, command: list, log_dir: Path, **kwargs) -> Service:
        log = log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(c) for c in command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        LIVE_LOGS[name] = log
        return cls(name, process, log)

    def check_running(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with status {self.process.returncode}:\n{tail(self.log)}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        """Ask the process to shut down (it stops its own children), wait (bounded), then kill whatever is
        left of its process group."""
        LIVE_LOGS.pop(self.name, None)
        if self.process.poll() is None:
            self.process.send_signal(sig)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with suppress(ProcessLookupError):  # stragglers (task processes...), or the process itself if it hung
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def wait_until(condition: Callable, *, timeout: float, what: str, services=(), interval: float = 1.0):
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout`` seconds, or at
    once if one of ``services`` has died."""
    deadline = time.monotonic() + timeout
    while True:
        for service in services:
            service.check_running()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report ends with the last lines of the logs of the services running then."""
    report = yield
    if report.failed:
        for name, log in LIVE_LOGS.items():
            report.sections.append((f"log of {name} ({log})", tail(log)))
    return report


# --- Docker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerEngine:
    url: str  # the engine's DOCKER_HOST
    image: str  # the ML image built on it

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.url, timeout=120)

    def containers(self) -> list[str]:
        """The names of every container on the engine, running or not."""
        client = self.client()
        try:
            return [c.name for c in client.containers.list(all=True)]
        finally:
            client.close()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private dockerd (own socket, data root, vfs) with ``cloud-tasks-ml:test`` built offline; stopped at the end.

    Cold (fresh machine): ~5 min to install docker.io and debootstrap, bootstrap the base image,
    download the wheels and build. Warm (cached under /var/cache/cloud-tasks-tests): seconds, or
    ~3 min when cloud_tasks/ changed (the install step of the image runs again).
    """
    require_root()
    settings = dict(line.split("=", 1) for line in run([ENGINE_SCRIPT, "env"], timeout=10).split())
    try:
        run([ENGINE_SCRIPT, "start"], timeout=900)
        LIVE_LOGS["dockerd"] = Path(settings["DOCKERD_LOG"])
        run([ENGINE_SCRIPT, "image"], timeout=1800)
        yield DockerEngine(url=settings["DOCKER_HOST"], image=settings["IMAGE"])
    finally:
        LIVE_LOGS.pop("dockerd", None)
        run([ENGINE_SCRIPT, "stop"], timeout=120)


@pytest.fixture(scope="module")
def dag(airflow_db):
    """The DAG as ``dag.test()`` runs it, on the session's SQLite metadata DB, with its ``gpu`` pool."""
    from airflow.models import DagBag, Pool

    Pool.create_or_update_pool("gpu", slots=1, description="ML steps", include_deferred=False)
    return DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Debian's PostgreSQL server binaries (the newest installed major version), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server run by the ``postgres`` user on a free loopback port; yields the SQLAlchemy URL of
    its ``airflow`` database (password authentication)."""
    require_root()
    if postgres_bindir() is None:
        apt_install("postgresql")
    bindir = postgres_bindir()
    # Not under pytest's temporary directory (root's, mode 0700): the postgres user must reach its data.
    workdir = Path(tempfile.mkdtemp(prefix="cloud-tasks-pg-"))
    shutil.chown(workdir, "postgres", "postgres")
    as_postgres = {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": workdir}
    password = secrets.token_urlsafe(24)
    pwfile = workdir / "password"
    pwfile.write_text(password)
    shutil.chown(pwfile, "postgres", "postgres")
    initdb = [bindir / "initdb", "-D", workdir / "data", "-U", "airflow", f"--pwfile={pwfile}", "-E", "UTF8"]
    run([*initdb, "--auth=scram-sha-256"], timeout=120, **as_postgres)
    port = str(free_port())
    server = [bindir / "postgres", "-D", workdir / "data", "-p", port, "-c", "listen_addresses=127.0.0.1"]
    server += ["-c", f"unix_socket_directories={workdir}"]
    service = Service.start("postgres", server, tmp_path_factory.mktemp("postgres-log"), **as_postgres)
    try:
        ready = [bindir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", port]
        wait_until(lambda: subprocess.run(ready).returncode == 0, timeout=60, what="PostgreSQL", services=[service])
        login = {**os.environ, "PGPASSWORD": password}
        run([bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "airflow", "airflow"], timeout=60, env=login)
        yield f"postgresql+psycopg2://airflow:{password}@127.0.0.1:{port}/airflow"
    finally:
        service.stop(signal.SIGINT, timeout=60)  # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients)
        shutil.rmtree(workdir, ignore_errors=True)


# --- Redis ---------------------------------------------------------------------------------------


def redis_answers(port: str) -> bool:
    """Whether a Redis server answers PING on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_broker(tmp_path_factory) -> Iterator[str]:
    """A Redis server (the Celery broker) run by the ``redis`` user on a free loopback port, without
    persistence; yields its URL."""
    require_root()
    if shutil.which("redis-server") is None:
        apt_install("redis-server")
    port = str(free_port())
    server = ["redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no"]
    as_redis = {"user": "redis", "group": "redis", "extra_groups": [], "cwd": "/"}
    service = Service.start("redis", server, tmp_path_factory.mktemp("redis-log"), **as_redis)
    try:
        wait_until(lambda: redis_answers(port), timeout=30, what="Redis", services=[service])
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        service.stop()


# --- Airflow deployment ------------------------------------------------------------------------


@dataclass
class Deployment:
    """A running Airflow deployment and a REST client (``httpx.Client``) logged in to its api-server."""

    home: Path
    env: dict[str, str]
    api: httpx.Client
    services: list[Service]

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run the ``airflow`` command line against this deployment."""
        return run([AIRFLOW, *args], timeout=timeout, env=self.env)

    def get(self, path: str, **params) -> dict:
        response = self.api.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def wait_until(self, condition: Callable, *, timeout: float, what: str, interval: float = 2.0):
        """``wait_until``, failing at once if a component of the deployment dies."""
        return wait_until(condition, timeout=timeout, what=what, services=self.services, interval=interval)

    def wait_for_end(self, run_id: str, timeout: float = 900) -> dict:
        """Poll a DAG run until it ends, whatever its state."""
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"
        return self.wait_until(
            lambda: (run := self.get(path))["state"] in ("success", "failed") and run,
            timeout=timeout,
            what=f"DAG run {run_id}",
        )

    def task_instances(self, run_id: str) -> dict[tuple[str, int], dict]:
        found = self.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]
        return {(ti["task_id"], ti["map_index"]): ti for ti in found}

    def task_log(self, run_id: str, task_id: str) -> str:
        logs = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
        return "".join(log.read_text(errors="replace") for log in sorted(logs.rglob("*.log")))

    def wait_for_run(self, run_id: str, timeout: float = 900) -> dict:
        """Poll a DAG run until it ends; fail with its failed tasks' logs unless it succeeded."""
        done = self.wait_for_end(run_id, timeout)
        if done["state"] != "success":
            pytest.fail(f"DAG run {run_id} ended {done['state']}:\n{self.failed_tasks(run_id)}")
        return done

    def failed_tasks(self, run_id: str) -> str:
        """The states of a run's unsuccessful task instances, with the end of the failed ones' logs."""
        instances = self.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
        lines = []
        for ti in instances:
            if ti["state"] == "success":
                continue
            lines.append(f"{ti['task_id']}[{ti['map_index']}]: {ti['state']}")
            logs = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
            for log in sorted(logs.rglob("*.log")) if ti["state"] == "failed" else []:
                lines.append(f"--- {log}\n{tail(log, 30)}")
        return "\n".join(lines)


def airflow_env(home: Path, database: str, broker: str, api_port: int) -> dict[str, str]:
    """The environment of every Airflow component: this repository's DAG on PostgreSQL, CeleryExecutor with
    a Redis broker (as docker/docker-compose.yaml deploys it)."""
    # Drop the AIRFLOW_* settings tests/conftest.py made for dag.test() (SQLite home, unit-test mode).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return env | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",  # 2 cores: a few task processes at a time are plenty
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),  # not 8793, which another Airflow may hold
        "CLOUD_TASKS_RETRY_DELAY_SECONDS": "1",
    }


@pytest.fixture(scope="module")
def airflow_deployment(postgres, redis_broker, tmp_path_factory) -> Iterator[Deployment]:
    """api-server, scheduler, dag-processor and a Celery worker on PostgreSQL and Redis (no triggerer: nothing
    defers), the ``gpu`` pool, and a REST client with a bearer token; every component is stopped afterwards."""
    import httpx

    home = tmp_path_factory.mktemp("airflow-deployment")
    port = free_port()
    env = airflow_env(home, postgres, redis_broker, port)
    deployment = Deployment(home, env, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30), [])
    deployment.airflow("db", "migrate", timeout=600)
    deployment.airflow("pools", "set", "gpu", "1", "ML steps")
    commands = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "celery-worker": ["celery", "worker"],
    }
    try:
        for name, args in commands.items():
            deployment.services.append(Service.start(name, [AIRFLOW, *args], home, env=env))
        wait_until(
            lambda: healthy(deployment.api),
            timeout=180,
            what="api-server, scheduler and dag-processor to be healthy",
            services=deployment.services,
        )
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        token = deployment.api.post("/auth/token", json={"username": "admin", "password": passwords["admin"]})
        token.raise_for_status()
        deployment.api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        wait_until(
            lambda: deployment.api.get(f"/api/v2/dags/{DAG_ID}").status_code == 200,
            timeout=180,
            what=f"the dag-processor to parse {DAG_ID} (import errors: see the dag-processor's log)",
            services=deployment.services,
            interval=2,
        )
        yield deployment
    finally:
        deployment.api.close()
        for service in reversed(deployment.services):
            service.stop(timeout=60)
