"""Airflow plugin of the SLSTR cloud-mask pipeline: the operator that runs an ML step in the
GPU image (``DockerOperator``) or as a local process, with one command for both."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperator

DEFAULT_IMAGE = "cloud-tasks-ml:latest"
CONTAINER_USER_ENV = "CLOUD_TASKS_CONTAINER_USER"


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


class CloudTasksOperator(BaseOperator):
    """Run ``python -m cloud_tasks <arguments>`` in the ML image or locally.

    :param arguments: the CLI arguments (from ``cloud_tasks.pipeline.ml_command``), identical for both runners
    :param runner: ``docker`` (production, GPU image) or ``local`` (a process on the worker)
    :param data_root: bind-mounted at the same path in the container, so paths in ``arguments`` hold there too
    :param gpu: ask the Docker engine for every GPU of the host
    :param image: the ML image (``docker/Dockerfile``)
    :param read_only_mounts: extra host paths the step only reads (mounted read-only at the same path)
    """

    template_fields = ("arguments", "runner", "data_root", "gpu", "image", "read_only_mounts")
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        arguments: list[str],
        runner: str = "docker",
        data_root: str,
        gpu: bool = True,
        image: str = DEFAULT_IMAGE,
        read_only_mounts: list[str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.arguments = arguments
        self.runner = runner
        self.data_root = data_root
        self.gpu = gpu
        self.image = image
        self.read_only_mounts = read_only_mounts or []

    def local_command(self) -> list[str]:
        return [sys.executable, "-m", "cloud_tasks", *map(str, self.arguments)]

    def docker_operator(self):
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
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])] if _truthy(self.gpu) else None,
            network_mode="none",
            user=container_user(),
            auto_remove="success",
            mount_tmp_dir=False,
            environment={"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1"},
            tty=False,
        )

    def execute(self, context):
        if not self.arguments:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("nothing to run for this step (e.g. training is off)")
        if self.runner == "docker":
            return self.docker_operator().execute(context)
        if self.runner != "local":
            raise ValueError(f"unknown runner {self.runner!r} (expected 'docker' or 'local')")
        command = self.local_command()
        self.log.info("Running %s", " ".join(command))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            for line in process.stdout:
                self.log.info("%s", line.rstrip())
        if process.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` exited with status {process.returncode}")


def _truthy(value) -> bool:
    """Params rendered into templates arrive as strings unless the DAG renders native objects."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")


class CloudTasksPlugin(AirflowPlugin):
    name = "cloud_tasks"
