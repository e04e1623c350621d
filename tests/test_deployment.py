"""What a run may touch is the deployment's decision: paths below its roots (symlinks and ``..`` resolved),
its runners and images, checked when a run is planned and again by the operator before anything runs."""

from __future__ import annotations

import re

import pytest
from products import SAMPLE_DATE

from cloud_tasks.deployment import Deployment, NotAllowedError
from cloud_tasks.operators import CloudTasksOperator
from cloud_tasks.planning import plan_day, plan_training


@pytest.fixture
def deployment(tmp_path, monkeypatch) -> Deployment:
    for name in ("archive", "data"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("CLOUD_TASKS_ARCHIVE_ROOTS", str(tmp_path / "archive"))
    monkeypatch.setenv("CLOUD_TASKS_DATA_ROOTS", str(tmp_path / "data"))
    monkeypatch.setenv("CLOUD_TASKS_IMAGES", "registry.example/cloud-tasks-ml@sha256:abc,cloud-tasks-ml:1.0")
    monkeypatch.setenv("CLOUD_TASKS_RUNNERS", "docker")
    return Deployment.from_env()


def escapes(tmp_path) -> dict[str, tuple[dict, str]]:
    """Params reaching outside the allowed roots -> the message naming the param."""
    (tmp_path / "data" / "out").symlink_to("/etc")
    return {
        "data root /": ({"data_root": "/"}, "param data_root: / resolves to /, outside the allowed roots"),
        "data root via ..": ({"data_root": f"{tmp_path}/data/../archive"}, "param data_root"),
        "data root via a symlink": ({"data_root": f"{tmp_path}/data/out"}, "data/out resolves to /etc, outside"),
        "archive root /etc": ({"archive_root": "/etc"}, "param archive_root: /etc"),
        "file list elsewhere": ({"file_list": "/etc/passwd"}, "param file_list"),
        "match-ups elsewhere": ({"matchups": "/root/x.h5"}, "param matchups"),
        "runner not allowed": ({"runner": "local"}, "param runner: 'local' is not allowed here (docker)"),
        "image not allowed": ({"image": "evil:latest"}, "param image: 'evil:latest' is not allowed here"),
    }


def good_params(tmp_path) -> dict:
    return {"archive_root": str(tmp_path / "archive"), "data_root": str(tmp_path / "data" / "run1"), "runner": "docker"}


def test_each_escape_is_refused_when_a_run_is_planned(deployment, tmp_path):
    for case, (bad, message) in escapes(tmp_path).items():
        params = good_params(tmp_path) | bad | {"date": SAMPLE_DATE.isoformat()}
        with pytest.raises(NotAllowedError, match=re.escape(message)):
            plan_day(params, deployment=deployment)
        training = params | {"start": "2024-06-01", "end": "2024-06-02"}
        with pytest.raises(NotAllowedError, match="allowed"):
            plan_training(training, deployment=deployment)
        assert not (tmp_path / "data" / "run1").exists(), case
    assert plan_day(good_params(tmp_path) | {"date": "2024-06-01"}, deployment=deployment).products == ()


def test_the_operator_refuses_a_path_outside_the_roots_before_creating_a_container(deployment, tmp_path):
    """Bypassing planning: the operator checks what it would mount before it talks to any Docker Engine."""
    from airflow.sdk.exceptions import AirflowFailException

    allowed = dict(runner="docker", image="cloud-tasks-ml:1.0", data_root=str(tmp_path / "data"))
    for bad in ({"data_root": "/"}, {"read_only_mounts": ["/etc"]}, {"image": "evil:latest"}):
        step = CloudTasksOperator(task_id="mask", arguments=["inference", "m", "i", "o"], **(allowed | bad))
        step.docker_operator = None  # a call would raise TypeError: refusing must come first
        with pytest.raises(AirflowFailException, match="refused: param"):
            step.execute(context={})


def test_unknown_runners_in_the_settings_are_refused(monkeypatch):
    monkeypatch.setenv("CLOUD_TASKS_RUNNERS", "docker,kubernetes")
    with pytest.raises(NotAllowedError, match="unknown runner"):
        Deployment.from_env()
