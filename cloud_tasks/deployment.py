"""What a run may touch, decided by whoever deploys, never by whoever triggers a run.

Deployment settings (environment of the Airflow workers and the DAG processor; see docker/env.example):

- ``CLOUD_TASKS_ARCHIVE_ROOTS``: folders runs may read products, file lists and match-up tables from
  (``:``-separated; default ``/neodc``);
- ``CLOUD_TASKS_DATA_ROOTS``: folders runs may write their outputs under (``:``-separated; default
  ``/opt/airflow/data``);
- ``CLOUD_TASKS_IMAGES``: the ML images runs may use (``,``-separated, by digest where possible; the first is
  the default; default ``cloud-tasks-ml:latest``);
- ``CLOUD_TASKS_RUNNERS``: the runners runs may choose (``docker``, ``local``; the first is the default;
  default ``docker``);
- ``CLOUD_TASKS_GPU``: whether ML containers get the host's GPUs (default ``true``).

Every path a run names is resolved (symlinks and ``..`` included) and must lie at or below an allowed
root: checked when the run is planned and again by the operator right before it mounts or runs anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cloud_tasks.errors import CloudTasksError

DEFAULT_IMAGE = "cloud-tasks-ml:latest"
RUNNERS = ("docker", "local")
ARCHIVE_PARAMS = ("archive_root", "file_list", "matchups")  # path Params read from the archive side
DATA_PARAMS = ("data_root",)


class NotAllowedError(CloudTasksError):
    """A run asked for something the deployment does not allow (a path outside the roots, an image, a runner)."""


def _list(name: str, default: str, sep: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, default).split(sep) if item.strip())


@dataclass(frozen=True)
class Deployment:
    archive_roots: tuple[str, ...]
    data_roots: tuple[str, ...]
    images: tuple[str, ...]
    runners: tuple[str, ...]
    gpu: bool

    @classmethod
    def from_env(cls) -> Deployment:
        runners = _list("CLOUD_TASKS_RUNNERS", "docker", ",")
        unknown = sorted(set(runners) - set(RUNNERS))
        if unknown:
            raise NotAllowedError(f"CLOUD_TASKS_RUNNERS: unknown runner(s) {', '.join(unknown)} (known: docker, local)")
        return cls(
            archive_roots=_list("CLOUD_TASKS_ARCHIVE_ROOTS", "/neodc", ":"),
            data_roots=_list("CLOUD_TASKS_DATA_ROOTS", "/opt/airflow/data", ":"),
            images=_list("CLOUD_TASKS_IMAGES", DEFAULT_IMAGE, ","),
            runners=runners,
            gpu=os.environ.get("CLOUD_TASKS_GPU", "true").strip().lower() in ("true", "1", "yes", "on"),
        )

    def check_path(self, param: str, value: str | Path, roots: tuple[str, ...]) -> Path:
        """``value`` resolved, if it lies at or below one of ``roots`` (also resolved); else NotAllowedError."""
        resolved = Path(value).resolve()
        for root in roots:
            base = Path(root).resolve()
            if resolved == base or base in resolved.parents:
                return resolved
        raise NotAllowedError(
            f"param {param}: {value} resolves to {resolved}, outside the allowed roots ({', '.join(roots)})"
        )

    def check_params(self, params: dict) -> None:
        """Every path, runner and image a run's Params name, against the deployment's settings."""
        for name in ARCHIVE_PARAMS:
            if params.get(name):
                self.check_path(name, params[name], self.archive_roots)
        for name in DATA_PARAMS:
            if params.get(name):
                self.check_path(name, params[name], self.data_roots)
        if params.get("runner") and params["runner"] not in self.runners:
            raise NotAllowedError(f"param runner: {params['runner']!r} is not allowed here ({', '.join(self.runners)})")
        if params.get("image") and params["image"] not in self.images:
            raise NotAllowedError(f"param image: {params['image']!r} is not allowed here ({', '.join(self.images)})")

    def check_step(self, *, runner: str, image: str, data_root: str, read_only: list[str]) -> None:
        """What an ML step is about to mount and run: checked again right before it happens."""
        self.check_params({"runner": runner, "image": image})
        self.check_path("data_root", data_root, self.data_roots)
        for path in read_only:
            self.check_path("read-only mount", path, self.data_roots + self.archive_roots)
