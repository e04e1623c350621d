"""The DAGs with the ``docker`` runner on a real Docker Engine (``dag.test()``, GPUs off).

The training DAG's ``train`` and ``register`` and the daily DAG's ``mask`` run in containers of the ML
image built offline by ``docker/test-engine.sh``, as the operator's non-root user, without network,
with the data root bind-mounted at its own path (their inputs read-only); the masks match those of the
``local`` runner with the same registered model. With GPUs on, the engine is asked for a GPU (and,
having no NVIDIA runtime here, refuses it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import time
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from day_runs import SAMPLE_LOGICAL_DATE as LOGICAL_DATE
from models import install_model
from products import SAMPLE_DATE as DAY

from cloud_tasks.layout import DataRoot
from cloud_tasks.operators import CloudTasksOperator, container_user
from cloud_tasks.planning import DayRun, inference_command
from cloud_tasks.product import cf_mask
from cloud_tasks.registry import ModelRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Both runners mask with the same registered model on the same converted files, with TensorFlow 2.21 on
# the same CPU. The bounds leave room for TensorFlow's CPU kernels not being bit-reproducible across
# builds and thread schedules.
MAX_ABS_DIFF = 0.05
MIN_AGREEMENT = 0.99  # share of valid pixels on the same side of the 0.5 cloud threshold


class ContainerWatch:
    """Follows the engine's container events while open: inspects every container when it starts
    (configuration, and the network interfaces its process sees) and notes every one destroyed."""

    def __init__(self, engine):
        self.client = engine.client()
        self.started: list[dict] = []
        self.destroyed: set[str] = set()

    def __enter__(self) -> ContainerWatch:
        self.events = self.client.events(decode=True, filters={"type": "container"})
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        # The operator removes its container before returning; the engine reports it a moment later.
        deadline = time.monotonic() + 15
        while {c["id"] for c in self.started} - self.destroyed and time.monotonic() < deadline:
            time.sleep(0.2)
        self.events.close()
        self.thread.join(timeout=15)
        self.client.close()

    def _follow(self) -> None:
        with suppress(Exception):  # closing the stream from __exit__ ends the iteration with an error
            for event in self.events:
                if event.get("Action") == "start":
                    self.started.append(self._inspect(event["id"]))
                elif event.get("Action") == "destroy":
                    self.destroyed.add(event["id"])

    def _inspect(self, container_id: str) -> dict:
        attrs = self.client.api.inspect_container(container_id)
        return {
            "id": container_id,
            "image": attrs["Config"]["Image"],
            "command": attrs["Config"]["Cmd"],
            "user": attrs["Config"]["User"],
            "network_mode": attrs["HostConfig"]["NetworkMode"],
            "mounts": attrs["Mounts"],
            "interfaces": network_interfaces(attrs["State"]["Pid"]),
        }


def network_interfaces(pid: int) -> list[str] | None:
    """The network interfaces in a process's network namespace (None if it has exited)."""
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return None
    return sorted(line.split(":")[0].strip() for line in lines)


def container_ids() -> tuple[int, int]:
    uid, gid = container_user().split(":")
    return int(uid), int(gid)


def run_dag(dag, archive: Path, data_root: Path, **conf) -> Path:
    """One successful ``dag.test()`` run over the sample day (fails with the unsuccessful tasks otherwise)."""
    run_conf = {"archive_root": str(archive), "data_root": str(data_root)}
    if dag.dag_id == "slstr_train_model":
        period = {"start": DAY.isoformat(), "end": (DAY + dt.timedelta(days=1)).isoformat()}
        # one kind: the thermal kind's steps run the same commands in the same containers
        run_conf |= period | {"epochs": 1, "batch_size": 4, "promote": True, "kinds": ["day"]}
    else:
        run_conf["date"] = DAY.isoformat()
    dag_run = dag.test(logical_date=LOGICAL_DATE, run_conf=run_conf | conf)
    failed = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances() if ti.state != "success"}
    assert dag_run.state == "success", failed
    return data_root


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from cloud_tasks.sample import make_sample_archive

    root = tmp_path_factory.mktemp("docker-archive")
    make_sample_archive(root, DAY, 4, grid="small", seed=21)
    return root


@pytest.fixture(scope="module")
def local_run(dag, archive, docker_run, tmp_path_factory) -> Path:
    """The day masked by the local runner with the model the docker run trained."""
    data_root = tmp_path_factory.mktemp("local-data")
    install_model(data_root, DataRoot(docker_run[0]).registry.version("v1").model)
    return run_dag(dag, archive, data_root, runner="local")


@pytest.fixture(scope="module")
def training_dag(dag):
    from airflow.models import DagBag

    return DagBag(dag_folder=str(Path(dag.fileloc).parent)).dags["slstr_train_model"]


@pytest.fixture(scope="module")
def docker_run(dag, training_dag, archive, docker_engine, tmp_path_factory) -> tuple[Path, ContainerWatch]:
    data_root = tmp_path_factory.mktemp("docker-data")
    # The container runs as the operator's non-root user (1000:1000, as this worker is root). As a
    # deployment's data root belongs to its worker's user, this one belongs to the container's, which
    # can then create models/ and masks/ in it; the worker (root here) writes the rest.
    registry = DataRoot(data_root).registry
    for folder in (data_root, registry.folder, registry.folder / "training", registry.versions):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, *container_ids())
    with pytest.MonkeyPatch.context() as env, ContainerWatch(docker_engine) as watch:
        env.setenv("DOCKER_HOST", docker_engine.url)  # DockerOperator's default engine
        run_dag(training_dag, archive, data_root, runner="docker", image=docker_engine.image)
        run_dag(dag, archive, data_root, runner="docker", image=docker_engine.image)
    return data_root, watch


def test_train_register_and_mask_ran_in_locked_down_containers(docker_run, docker_engine):
    data_root, watch = docker_run
    data = DataRoot(data_root)
    key = ModelRegistry(data_root).version("v1").info["key"]
    inputs = {  # what each step only reads: mounted read-only over the writable data root
        "train": {str(data.root / "hdf"), str(data.registry.training_list(key, "train"))},
        "models": set(),
        "inference": {str(data.hdf_split(DAY)), str(data.registry.version("v1").model)},
    }
    assert [c["command"][0] for c in watch.started] == ["train", "models", "inference"]
    for container in watch.started:
        assert container["image"] == docker_engine.image
        assert container["network_mode"] == "none"
        assert container["interfaces"] == ["lo"], "the container's process saw a network interface"
        assert container["user"] == container_user() and not container["user"].startswith("0:")
        mounts = {m["Destination"]: m for m in container["mounts"]}
        assert all(m["Type"] == "bind" and m["Source"] == m["Destination"] for m in mounts.values())
        assert mounts.pop(str(data_root))["RW"] is True
        assert {path for path, m in mounts.items() if not m["RW"]} == set(mounts) == inputs[container["command"][0]]
    assert {c["id"] for c in watch.started} <= watch.destroyed
    assert docker_engine.containers() == [], "containers left behind"


def test_containers_wrote_the_model_and_masks_as_their_user(docker_run):
    data_root, _ = docker_run
    data = DataRoot(data_root)
    summary = json.loads(data.summary(DAY).read_text())
    day_products = sorted(p.name for p in data.hdf_split(DAY).glob("*.h5"))
    masks = data.masks(DAY).masks()
    assert summary["failed"] == [] and summary["masked"] == len(masks) == len(day_products) >= 1
    assert [m.stem for m in masks] == [Path(p).stem for p in day_products]
    written = [*masks, *data.masks(DAY).quicklooks()]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in written} == {container_ids()}
    assert summary["sst"]["model"]["clear"] > 0


def test_docker_masks_match_the_local_runner(docker_run, local_run):
    docker_masks = DataRoot(docker_run[0]).masks(DAY)
    local_masks = DataRoot(local_run).masks(DAY).masks()
    assert local_masks and [p.name for p in docker_masks.masks()] == [p.name for p in local_masks]
    for local_path in local_masks:
        a = cf_mask.read_mask(local_path).probability
        b = cf_mask.read_mask(docker_masks.folder / local_path.name).probability
        valid = np.isfinite(a)
        assert np.array_equal(valid, np.isfinite(b)), f"{local_path.name}: the masks' valid pixels differ"
        max_diff = float(np.max(np.abs(a[valid] - b[valid])))
        agreement = float(np.mean((a[valid] >= 0.5) == (b[valid] >= 0.5)))
        print(f"{local_path.name}: max abs diff {max_diff:.3g}, thresholded agreement {agreement:.6f}")
        assert max_diff <= MAX_ABS_DIFF and agreement >= MIN_AGREEMENT, (local_path.name, max_diff, agreement)


def test_gpu_on_asks_the_engine_for_a_gpu(docker_engine, tmp_path, monkeypatch):
    import docker.errors

    monkeypatch.setenv("DOCKER_HOST", docker_engine.url)
    step = CloudTasksOperator(
        task_id="inference",
        arguments=inference_command(DayRun(DAY, DataRoot(tmp_path)), DataRoot(tmp_path).model(DAY).model),
        runner="docker",
        gpu=True,
        image=docker_engine.image,
        data_root=str(tmp_path),
    )
    # No NVIDIA runtime here: the engine's refusal proves that the GPU request reached it.
    refusal = 'could not select device driver "" with capabilities: [[gpu]]'
    with pytest.raises(docker.errors.APIError, match=re.escape(refusal)):
        step.execute(context={})
    assert docker_engine.containers() == [], "the failed container was left behind"
