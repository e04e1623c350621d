"""The ML step operator: the Docker configuration it sends, and the same command for both runners."""

from __future__ import annotations

import datetime as dt
import sys

import pytest

from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.operators import CloudTasksOperator

DAY = dt.date(2024, 6, 1)


def operator(tmp_path, **kwargs) -> CloudTasksOperator:
    arguments = [
        "train",
        str(tmp_path / "hdf"),
        str(tmp_path / "model"),
        *TrainOptions(epochs=3, batch_size=8).cli_arguments(),
    ]
    return CloudTasksOperator(task_id="train", arguments=arguments, data_root=str(tmp_path), **kwargs)


@pytest.mark.parametrize("gpu", [True, "True"])
def test_docker_step_requests_every_gpu_when_gpu_is_on(tmp_path, gpu):
    docker = operator(tmp_path, gpu=gpu, runner="docker").docker_operator()
    (request,) = docker.device_requests
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]


@pytest.mark.parametrize("gpu", [False, "False"])
def test_docker_step_has_no_device_request_when_gpu_is_off(tmp_path, gpu):
    assert operator(tmp_path, gpu=gpu, runner="docker").docker_operator().device_requests is None


def test_docker_step_is_locked_down_and_mounts_the_data_root(tmp_path):
    step = operator(tmp_path, runner="docker", image="cloud-tasks-ml:test", read_only_mounts=["/archive"])
    docker = step.docker_operator()
    assert docker.image == "cloud-tasks-ml:test"
    assert docker.network_mode == "none"
    assert docker.auto_remove == "success"
    assert docker.mount_tmp_dir is False
    assert docker.user and not docker.user.startswith("0:") and docker.user != "root"
    data, archive = docker.mounts
    assert (data["Source"], data["Target"], data["Type"], data["ReadOnly"]) == (
        str(tmp_path),
        str(tmp_path),
        "bind",
        False,
    )
    assert (archive["Source"], archive["Target"], archive["ReadOnly"]) == ("/archive", "/archive", True)


def test_docker_and_local_runners_run_the_same_command(tmp_path):
    step = operator(tmp_path)
    local = step.local_command()
    assert local[:3] == [sys.executable, "-m", "cloud_tasks"]
    assert step.docker_operator().command == local[3:]
    assert local[3:5] == ["train", str(tmp_path / "hdf")]
    assert "--epochs=3" in local and "--batch-size=8" in local


def test_local_runner_reports_a_failing_command(tmp_path):
    step = CloudTasksOperator(
        task_id="inference",
        arguments=["inference", str(tmp_path / "no-model.keras"), str(tmp_path), str(tmp_path / "out")],
        data_root=str(tmp_path),
        runner="local",
    )
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"exited with status 2: error: /"):
        step.execute(context={})


def test_empty_arguments_skip_the_step_with_its_reason(tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException

    why = "no model has been promoted to production yet"
    step = CloudTasksOperator(task_id="mask", arguments=[], data_root=str(tmp_path), runner="local", skip_reason=why)
    with pytest.raises(AirflowSkipException, match=why):
        step.execute(context={})


@pytest.mark.parametrize("user", ["0", "0:0", "root", "root:root"])
def test_a_root_container_user_is_refused(tmp_path, monkeypatch, user):
    monkeypatch.setenv("CLOUD_TASKS_CONTAINER_USER", user)
    with pytest.raises(ValueError, match="must not run as root"):
        operator(tmp_path, runner="docker").docker_operator()


@pytest.mark.parametrize(
    ("line", "level", "text"),
    [
        ("2026-12-04 17:20:01,123 WARNING cloud_tasks.convert: 3 skipped", "WARNING", "cloud_tasks.convert: 3 skipped"),
        ("2026-12-04 17:20:01,123 INFO cloud_tasks.ml.train: epoch 1", "INFO", "cloud_tasks.ml.train: epoch 1"),
        ("error: /data/x.h5: not a converted product", "ERROR", "error: /data/x.h5: not a converted product"),
        ("I0000 00:00:1796405566.484563   19704 port.cc:153] oneDNN custom operations are on.", None, None),
        ("Epoch 1/3", "INFO", "Epoch 1/3"),
    ],
)
def test_child_output_is_logged_at_its_own_level_without_native_noise(line, level, text):
    import logging

    from cloud_tasks.operators import log_level

    found, message = log_level(line)
    assert (logging.getLevelName(found) if found else None) == level
    if level:
        assert message == text
