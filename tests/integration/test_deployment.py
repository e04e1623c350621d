"""The daily DAG in a real Airflow deployment: api-server, scheduler, dag-processor and a Celery worker, on
PostgreSQL and Redis (as docker/docker-compose.yaml deploys it); a run triggered through the REST API, a
backfill over two days made with ``airflow backfill create``, a corrupt product fixed and its failed
instances cleared, and runs asking for paths outside the deployment's roots. Local runner, CPU, small
generated archives, an untrained model promoted in the registry.

Unpausing the DAG also makes the scheduler start the run of the latest day (catchup is off); it
finds no product there and ends with one message, and the tests leave it alone.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from models import install_model

from cloud_tasks.layout import DataRoot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "slstr_cloud_mask"
REST_DAY = dt.date(2024, 6, 1)
BACKFILL_DAYS = [dt.date(2024, 6, 2), dt.date(2024, 6, 3)]
FIX_DAY = dt.date(2024, 6, 4)
PRODUCTS = 4


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from cloud_tasks.sample import make_sample_archive

    root = tmp_path_factory.mktemp("deployment-archive")
    for seed, day in enumerate([REST_DAY, *BACKFILL_DAYS, FIX_DAY]):
        make_sample_archive(root, day, PRODUCTS, grid="small", seed=seed)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, untrained_model) -> Path:
    root = tmp_path_factory.mktemp("deployment-data")
    install_model(root, untrained_model)  # the production model every run masks with
    return root


@pytest.fixture(scope="module")
def deployment(airflow_deployment):
    """The deployment, with the DAG unpaused through the REST API."""
    response = airflow_deployment.api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    response.raise_for_status()
    assert response.json()["is_paused"] is False
    return airflow_deployment


def run_conf(archive: Path, data_root: Path, **extra) -> dict:
    return {
        "archive_root": str(archive),
        "data_root": str(data_root),
        "runner": "local",
        **extra,
    }


def check_day_outputs(data_root: Path, day: dt.date) -> None:
    """A day's summary, converted products, masks by the production model, quicklooks and SST comparison."""
    data = DataRoot(data_root)
    summary = json.loads(data.summary(day).read_text())
    day_products = sorted(p.stem for p in data.hdf_split(day).glob("*.h5"))
    masks = [p.stem for p in data.masks(day).masks()]
    assert summary["date"] == day.isoformat() and summary["products"] == PRODUCTS and summary["failed"] == []
    assert summary["converted"]["day"] + summary["converted"]["night"] == PRODUCTS
    assert masks == day_products and summary["masked"] == len(masks) >= 1
    assert [p.stem for p in data.masks(day).quicklooks()] == [Path(m).stem for m in masks]
    assert summary["model"]["version"] == "v1" and summary["failed_stages"] == {}
    assert summary["sst"] == json.loads(data.sst(day).summary.read_text())
    assert summary["sst"]["model"]["clear"] > 0


def test_rest_triggered_run_processes_the_date_param(deployment, archive, data_root):
    response = deployment.api.post(
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": run_conf(archive, data_root, date=REST_DAY.isoformat())},
    )
    response.raise_for_status()
    run = deployment.wait_for_run(response.json()["dag_run_id"])
    assert run["run_type"] == "manual" and run["conf"]["date"] == REST_DAY.isoformat()
    check_day_outputs(data_root, REST_DAY)


def test_backfill_runs_each_day_of_its_range(deployment, archive, data_root):
    first, last = BACKFILL_DAYS[0].isoformat(), BACKFILL_DAYS[-1].isoformat()
    deployment.airflow(
        "backfill",
        "create",
        "--dag-id",
        DAG_ID,
        "--from-date",
        first,
        "--to-date",
        last,
        "--dag-run-conf",
        json.dumps(run_conf(archive, data_root)),  # no date: each run processes its data interval
    )
    runs = deployment.wait_until(
        lambda: (
            (found := deployment.get(f"/api/v2/dags/{DAG_ID}/dagRuns", run_type="backfill")["dag_runs"])
            and len(found) == len(BACKFILL_DAYS)
            and found
        ),
        timeout=120,
        what="the backfill's runs",
    )
    starts = sorted(dt.datetime.fromisoformat(run["data_interval_start"]).date() for run in runs)
    assert starts == BACKFILL_DAYS
    for run in runs:
        deployment.wait_for_run(run["dag_run_id"])
    for day in BACKFILL_DAYS:
        check_day_outputs(data_root, day)


def trigger(deployment, conf: dict) -> str:
    response = deployment.api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    response.raise_for_status()
    return response.json()["dag_run_id"]


def test_a_corrupt_product_fails_without_retry_and_a_cleared_run_then_succeeds(
    deployment, archive, data_root, tmp_path
):
    broken = Path(shutil.copytree(archive, tmp_path / "archive"))
    bad = sorted(broken.rglob(f"*{FIX_DAY:%Y%m%d}T*.zip"))[0]
    good = bad.read_bytes()
    bad.write_bytes(b"not a zip")
    run_id = trigger(deployment, run_conf(broken, data_root, date=FIX_DAY.isoformat()))
    assert deployment.wait_for_end(run_id)["state"] == "failed"
    failed = {key: ti for key, ti in deployment.task_instances(run_id).items() if ti["state"] == "failed"}
    assert sorted(task for task, _ in failed) == ["process_chunk", "summary"]
    ((_, index),) = [key for key in failed if key[0] == "process_chunk"]
    assert failed[("process_chunk", index)]["try_number"] == 1, "bad input is not retried"

    bad.write_bytes(good)  # the operator replaces the file, then clears the failed tasks
    response = deployment.api.post(
        f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
        json={"dry_run": False, "dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True},
    )
    response.raise_for_status()
    deployment.wait_for_run(run_id)
    instances = deployment.task_instances(run_id)
    assert bad.stem in instances[("process_chunk", index)]["rendered_map_index"], "same map index"
    reran = instances[("process_chunk", index)]
    assert instances[("summary", -1)]["start_date"] > reran["end_date"], "summary ran after the re-run instance"
    summary = json.loads(DataRoot(data_root).summary(FIX_DAY).read_text())
    assert summary["failed"] == [] and summary["failed_stages"] == {}
    assert sum(summary["converted"].values()) == PRODUCTS, "the fixed product converted"


def test_runs_reaching_outside_the_deployments_roots_fail_at_plan(deployment, archive, data_root, tmp_path):
    """As a user allowed to trigger: each run fails at ``plan`` naming the Param; nothing is written."""
    (data_root / "escape").symlink_to("/etc")
    cases = {
        "/": {"data_root": "/"},
        "symlink": {"data_root": str(data_root / "escape" / "cloud")},
        "dot-dot": {"data_root": f"{data_root}/../../../../etc/cloud"},
        "archive": {"archive_root": "/etc"},
    }
    before = sorted(p.name for p in Path("/etc").iterdir())
    for case, conf in cases.items():
        run_id = trigger(deployment, run_conf(archive, data_root, date=REST_DAY.isoformat()) | conf)
        assert deployment.wait_for_end(run_id)["state"] == "failed", case
        instances = deployment.task_instances(run_id)
        assert instances[("plan", -1)]["state"] == "failed" and instances[("plan", -1)]["try_number"] == 1, case
        param = next(iter(conf))
        assert f"param {param}:" in deployment.task_log(run_id, "plan") and "outside the allowed roots" in (
            deployment.task_log(run_id, "plan")
        ), case
        assert not any(key[0] == "mask" and ti["state"] == "success" for key, ti in instances.items()), case
    assert sorted(p.name for p in Path("/etc").iterdir()) == before, "something was written outside the roots"
    for conf, param in (({"image": "evil:latest"}, "image"), ({"runner": "kubernetes"}, "runner")):
        response = deployment.api.post(
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            json={"logical_date": None, "conf": run_conf(archive, data_root, date=REST_DAY.isoformat()) | conf},
        )
        assert response.status_code == 400 and param in response.text, "refused before any run is created"
