"""The Airflow operator of the pipeline's ML steps (needs the ``airflow`` extra): it runs one
``python -m cloud_tasks`` command in the GPU image (``DockerOperator``) or as a local process.

DAGs import it from here (``from cloud_tasks.operators import CloudTasksOperator``): it is a module of
the installed package, so neither the DAG processor nor the tests need ``plugins/`` on ``sys.path``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from airflow.sdk import BaseOperator

from cloud_tasks.deployment import DEFAULT_IMAGE, Deployment, NotAllowedError

CONTAINER_USER_ENV = "CLOUD_TASKS_CONTAINER_USER"
# Seconds a Docker Engine API call may take: creating a container on the vfs storage driver (tests) copies
# the whole image, which took over docker-py's default 60 s on a busy 2-core machine.
DOCKER_TIMEOUT_ENV, DEFAULT_DOCKER_TIMEOUT = "CLOUD_TASKS_DOCKER_TIMEOUT", 600
CONTAINER_ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}  # no TensorFlow start-up noise
ERROR_PREFIX = "error: "  # how the CLI's one-line error begins (cloud_tasks.cli)
BAD_INPUT_STATUS = 2  # the CLI's exit status for bad input


def container_user() -> str:
    """The non-root user the ML container runs as: the worker's own uid:gid (so outputs belong to the
    worker), or the image's user 1000 when the worker itself is root; ``CLOUD_TASKS_CONTAINER_USER`` overrides."""
    if os.environ.get(CONTAINER_USER_ENV):
        user = os.environ[CONTAINER_USER_ENV]
        if user.split(":")[0] in ("0", "root"):
            raise ValueError(f"{CONTAINER_USER_ENV}={user}: the ML containers must not run as root")
        return user
    uid, gid = os.getuid(), os.getgid()
    return f"{uid}:{gid}" if uid != 0 else "1000:1000"


def docker_timeout() -> int:
    return int(os.environ.get(DOCKER_TIMEOUT_ENV, DEFAULT_DOCKER_TIMEOUT))


def container_name(context, task_id: str, try_number: int | None = None) -> str | None:
    """A name unique to one task try, so that a retry or a cleanup finds a container started earlier
    (even one whose creation call timed out on the client side)."""
    ti = context.get("ti") if context else None
    if ti is None:
        return None
    parts = [ti.dag_id, ti.run_id, task_id, str(ti.map_index), str(try_number or ti.try_number)]
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", "cloud-tasks-" + "-".join(parts))[:200]


class CloudTasksOperator(BaseOperator):
    """Run ``python -m cloud_tasks <arguments>`` in the ML image or locally.

    :param arguments: the CLI arguments (from ``cloud_tasks.pipeline``'s command builders), identical for both runners
    :param runner: ``docker`` (production, GPU image) or ``local`` (a process on the worker)
    :param data_root: bind-mounted at the same path in the container, so paths in ``arguments`` hold there too
    :param gpu: ask the Docker engine for every GPU of the host (default: the deployment's ``CLOUD_TASKS_GPU``)
    :param image: the ML image (``docker/Dockerfile``)
    :param read_only_mounts: extra host paths the step only reads (mounted read-only at the same path)
    :param skip_reason: why the step is skipped when ``arguments`` is empty (shown in its log)
    :param event: the extra of the step's asset events (e.g. the day it concerns)
    """

    template_fields = ("arguments", "runner", "data_root", "gpu", "image", "read_only_mounts", "skip_reason", "event")
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        arguments: list[str],
        runner: str = "docker",
        data_root: str,
        gpu: bool | None = None,
        image: str = DEFAULT_IMAGE,
        read_only_mounts: list[str] | None = None,
        skip_reason: str = "",
        event: dict | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.arguments = arguments
        self.runner = runner
        self.data_root = data_root
        self.gpu = gpu
        self.image = image
        self.read_only_mounts = read_only_mounts or []
        self.skip_reason = skip_reason
        self.event = event or {}

    def local_command(self) -> list[str]:
        return [sys.executable, "-m", "cloud_tasks", *map(str, self.arguments)]

    def docker_operator(self, name: str | None = None):
        """The DockerOperator that runs this step in the ML image (also inspected by the tests)."""
        from airflow.providers.docker.operators.docker import DockerOperator
        from docker.types import DeviceRequest, Mount

        mounts = [Mount(target=str(self.data_root), source=str(self.data_root), type="bind")]
        mounts += [Mount(target=str(p), source=str(p), type="bind", read_only=True) for p in self.read_only_mounts]
        return DockerOperator(
            task_id=f"{self.task_id}_container",
            image=self.image,
            command=[str(a) for a in self.arguments],  # the image's entrypoint is `python -m cloud_tasks`
            mounts=mounts,
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])] if self._gpu() else None,
            network_mode="none",
            user=container_user(),
            auto_remove="success",
            mount_tmp_dir=False,
            environment=dict(CONTAINER_ENVIRONMENT),
            container_name=name,
            timeout=docker_timeout(),
            tty=False,
        )

    def execute(self, context):
        if not self.arguments:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(self.skip_reason or "nothing to run for this step")
        self._check_allowed()
        if self.runner == "docker":
            result = self._run_container(context)
        elif self.runner == "local":
            result = self._run_local()
        else:
            raise ValueError(f"unknown runner {self.runner!r} (expected 'docker' or 'local')")
        for asset in self.outlets if self.event else ():
            context["outlet_events"][asset].extra = dict(self.event)
        return result

    def _gpu(self) -> bool:
        return Deployment.from_env().gpu if self.gpu is None else _truthy(self.gpu)

    def _check_allowed(self) -> None:
        """Never mount or run what the deployment does not allow, whatever the plan said (checked again here)."""
        from airflow.sdk.exceptions import AirflowFailException

        try:
            Deployment.from_env().check_step(
                runner=self.runner, image=self.image, data_root=self.data_root, read_only=list(self.read_only_mounts)
            )
        except NotAllowedError as exc:
            raise AirflowFailException(f"{self.task_id}: refused: {exc}") from exc

    def _run_container(self, context):
        """Run the step's container; remove it (and any left by an earlier try) unless it succeeded."""
        name = container_name(context, self.task_id)
        docker = self.docker_operator(name)
        ti = context.get("ti") if context else None
        earlier = [container_name(context, self.task_id, n) for n in range(1, ti.try_number)] if ti else []
        for old in earlier:
            _remove_container(docker, old)
        from airflow.providers.docker.exceptions import DockerContainerFailedException

        try:
            return docker.execute(context)
        except DockerContainerFailedException as exc:
            _remove_container(docker, name)
            _fail_on_bad_input(exc)
            raise
        except BaseException:
            _remove_container(docker, name)
            raise

    def _run_local(self) -> None:
        """Run the command as a child process, its output in the task log; its ``error:`` line in the task error."""
        command = self.local_command()
        self.log.info("Running %s", " ".join(command))
        error_line = None
        environment = {**os.environ, **CONTAINER_ENVIRONMENT}
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
        ) as process:
            for line in process.stdout:
                level, message = log_level(line.rstrip())
                if message.startswith(ERROR_PREFIX):
                    error_line = message
                if level is not None:
                    self.log.log(level, "%s", message)
        if process.returncode != 0:
            reason = f": {error_line}" if error_line else ""
            message = f"`{' '.join(command)}` exited with status {process.returncode}{reason}"
            if process.returncode == BAD_INPUT_STATUS:  # the CLI's bad-input status: a retry cannot help
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(message)
            raise RuntimeError(message)


# The CLI's log lines: "2026-12-04 17:20:01,123 WARNING cloud_tasks.convert: message" (cloud_tasks.cli)
_CLI_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$")
# TensorFlow/absl start-up chatter written by C++ before Python's logging (I/W lines of oneDNN, cuda probing)
_NATIVE_NOISE = re.compile(r"^[IW]\d{4} \S+\s+\d+ \S+\.(cc|h):\d+\]")


def log_level(line: str) -> tuple[int | None, str]:
    """The level and text a child's output line is logged with: the CLI's own level without its timestamp
    (the task log adds one), ERROR for its ``error:`` line, None (dropped) for native start-up noise."""
    import logging

    if _NATIVE_NOISE.match(line):
        return None, line
    if line.startswith(ERROR_PREFIX):
        return logging.ERROR, line
    match = _CLI_LOG_LINE.match(line)
    if match:
        return logging.getLevelName(match[1]), match[2]
    return logging.INFO, line


def _fail_on_bad_input(exc) -> None:
    """A container that ended with the CLI's bad-input status fails its task at once, with its ``error:`` line."""
    from airflow.sdk.exceptions import AirflowFailException

    status = re.search(r"'StatusCode': (\d+)", str(exc))  # the provider's message holds the wait result
    if not status or int(status[1]) != BAD_INPUT_STATUS:
        return
    lines = [line.decode(errors="replace") if isinstance(line, bytes) else str(line) for line in exc.logs or []]
    errors = [line.strip() for line in lines if line.strip().startswith(ERROR_PREFIX)]
    raise AirflowFailException(f"{exc}: {errors[-1] if errors else 'bad input'}") from exc


def _remove_container(docker, name: str | None) -> None:
    """Force-remove the container ``name`` if it exists (a client-side timeout can leave one behind)."""
    if not name:
        return
    from docker.errors import APIError, NotFound

    try:
        docker.cli.remove_container(name, force=True)
        docker.log.warning("removed container %s left by this task", name)
    except NotFound:
        pass
    except APIError as exc:
        docker.log.warning("could not remove container %s: %s", name, exc)


def _truthy(value) -> bool:
    """Params rendered into templates arrive as strings unless the DAG renders native objects."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")
