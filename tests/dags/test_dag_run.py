"""The whole DAG, end to end, with ``dag.test()`` on a small sample archive and the local runner.

Real parts throughout: a migrated SQLite metadata DB, real NetCDF/zip products, real TensorFlow
training and inference in child processes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from day_runs import run_sample_day
from models import install_model
from products import SAMPLE_DATE as DAY

from cloud_tasks.layout import DataRoot

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.models import DagBag, Pool

    Pool.create_or_update_pool("gpu", slots=1, description="ML steps", include_deferred=False)
    return DagBag(dag_folder=str(DAGS)).dags["slstr_cloud_mask"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from cloud_tasks.sample import make_sample_archive

    root = tmp_path_factory.mktemp("dag-archive")
    make_sample_archive(root, DAY, 5, grid="small", seed=11)
    return root


def files_state(root: Path) -> dict:
    files = [p for pattern in ("*.h5", "*.nc") for p in root.rglob(pattern)]
    return {p.relative_to(root): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(files)}


@pytest.fixture(scope="module")
def first_run(dag, archive, tmp_path_factory, untrained_model, untrained_thermal_model):
    data_root = tmp_path_factory.mktemp("dag-data")
    install_model(data_root, untrained_model, key="day")
    install_model(data_root, untrained_thermal_model, key="thermal", kind="thermal")
    dag_run, instances = run_sample_day(dag, archive, data_root)
    return data_root, dag_run, instances


def test_run_produces_masks_quicklooks_and_summaries(first_run):
    data_root, dag_run, instances = first_run
    failed = {key: ti.state for key, ti in instances.items() if ti.state != "success"}
    assert dag_run.state == "success", failed
    summary = json.loads(DataRoot(data_root).summary(DAY).read_text())
    day_products = sorted((data_root / "hdf/2024/06/01/day").glob("*.h5"))
    assert summary["products"] == 5 and summary["failed"] == []
    assert summary["converted"]["day"] == len(day_products) >= 3
    every_product = sorted(p.stem for p in (data_root / "hdf/2024/06/01").rglob("*.h5"))
    masks = DataRoot(data_root).masks(DAY)
    assert [m.stem for m in masks.masks()] == every_product, "night products too, with the thermal model"
    assert summary["masked"] == summary["products"] == 5 and summary["notes"] == []
    assert [m["kind"] for m in summary["models"]] == ["day", "thermal"]
    assert [p.stem for p in masks.quicklooks()] == every_product
    sst = json.loads(DataRoot(data_root).sst(DAY).summary.read_text())
    assert sst["model"]["clear"] > 0 and sst["bayesian"]["clear"] > 0
    assert summary["sst"] == sst
    assert not (data_root / "extracted/2024/06/01").exists() or not any((data_root / "extracted/2024/06/01").iterdir())
    # one mapped instance per product, labelled with the product's name in the UI
    chunks = [ti for (task, _), ti in instances.items() if task == "process_chunk"]
    assert len(chunks) == 5
    assert all(ti.rendered_map_index.startswith("2024-06-01 S3") for ti in chunks)


def test_second_run_of_the_same_day_reuses_every_output(dag, archive, first_run):
    data_root, _, _ = first_run
    before = files_state(data_root)
    dag_run, _ = run_sample_day(dag, archive, data_root)
    assert dag_run.state == "success"
    assert files_state(data_root) == before, "a re-run rewrote converted products or masks"


def test_corrupt_product_fails_only_its_instance_without_retry(dag, archive, tmp_path, untrained_model):
    broken = tmp_path / "archive"
    shutil.copytree(archive, broken)
    zips = sorted(broken.rglob("*.zip"))
    zips[0].write_bytes(b"not a zip at all")
    data_root = tmp_path / "data"
    install_model(data_root, untrained_model)
    dag_run, instances = run_sample_day(dag, broken, data_root)
    assert dag_run.state == "failed", "the failure must stay visible"
    failed = sorted(key for key, ti in instances.items() if ti.state == "failed")
    assert [task for task, _ in failed] == ["process_chunk", "summary"]
    chunk = instances[failed[0]]
    assert chunk.rendered_map_index == f"2024-06-01 {zips[0].stem}"
    assert chunk.try_number == 1, "bad input is not retried"
    for task in ("converted", "mask", "sst_comparison"):
        assert instances[(task, -1)].state == "success", task
    summary = json.loads(DataRoot(data_root).summary(DAY).read_text())
    assert summary["failed"] == [zips[0].stem]
    good_day = sorted(p.stem for p in DataRoot(data_root).hdf_split(DAY).glob("*.h5"))
    assert [p.stem for p in DataRoot(data_root).masks(DAY).masks()] == good_day
