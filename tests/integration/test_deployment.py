"""The DAG in a real Airflow deployment: api-server, scheduler, dag-processor and a Celery worker, on
PostgreSQL and Redis (as docker/docker-compose.yaml deploys it); a run triggered through the REST API,
and a backfill over two days made with ``airflow backfill create``. Local runner, CPU, small
generated archives.

Unpausing the DAG also makes the scheduler start the run of the latest day (catchup is off); it
finds no product there and fails, and the tests leave it alone.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cloud_tasks.layout import DataRoot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "slstr_cloud_mask"
REST_DAY = dt.date(2024, 6, 1)
BACKFILL_DAYS = [dt.date(2024, 6, 2), dt.date(2024, 6, 3)]
PRODUCTS = 4


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from cloud_tasks.sample import make_sample_archive

    root = tmp_path_factory.mktemp("deployment-archive")
    for seed, day in enumerate([REST_DAY, *BACKFILL_DAYS]):
        make_sample_archive(root, day, PRODUCTS, grid="small", seed=seed)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deployment-data")


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
        "epochs": 1,
        "batch_size": 4,
        **extra,
    }


def check_day_outputs(data_root: Path, day: dt.date) -> None:
    """A day's summary, converted products, model, masks, quicklooks and SST comparison."""
    data = DataRoot(data_root)
    summary = json.loads(data.summary(day).read_text())
    day_products = sorted(p.name for p in (data.hdf(day) / "day").glob("*.h5"))
    masks = [p.name for p in data.masks(day).masks()]
    assert summary["date"] == day.isoformat() and summary["products"] == PRODUCTS and summary["failed"] == []
    assert summary["converted"]["day"] + summary["converted"]["night"] == PRODUCTS
    assert masks == day_products and summary["masked"] == len(masks) >= 1
    assert [p.stem for p in data.masks(day).quicklooks()] == [Path(m).stem for m in masks]
    assert data.model(day).model.is_file()
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
