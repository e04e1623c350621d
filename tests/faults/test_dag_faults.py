"""Faults at the DAG level, with ``dag.test()`` on a real metadata DB, real products and the local runner:
a forced re-run of a day gives identical outputs, a corrupt NetCDF file inside a good zip fails only its
product, out-of-range parameters are refused when the run is triggered, and a missing archive root fails
the run at ``plan``.

The re-run that reuses finished work and a corrupt zip are in tests/dags/test_dag_run.py (see ``reused.py``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from day_runs import SAMPLE_LOGICAL_DATE as LOGICAL_DATE
from day_runs import run_sample_day
from models import install_model
from products import SAMPLE_DATE as DAY

from cloud_tasks.layout import DAY_SPLIT, DataRoot

from .conftest import REPO, files_below, leftovers, truncate_member


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.models import DagBag, Pool

    Pool.create_or_update_pool("gpu", slots=1, description="ML steps", include_deferred=False)
    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["slstr_cloud_mask"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from cloud_tasks.sample import make_sample_archive

    root = tmp_path_factory.mktemp("archive")
    make_sample_archive(root, DAY, 4, grid="small", seed=11)
    return root


def run(dag, archive: Path, data_root: Path, model: Path, **conf):
    """One run of the sample day with ``model`` as the production model; returns it and its task instances."""
    if model.is_file():
        install_model(data_root, model)
    return run_sample_day(dag, archive, data_root, **conf)


def day_folder(data_root: Path, store: str) -> Path:
    """The day's folder of an output store, as the layout places it."""
    root = DataRoot(data_root)
    return {"hdf": root.hdf(DAY), "masks": root.masks(DAY).folder, "sst": root.sst(DAY).folder}[store]


def outputs(data_root: Path, store: str, pattern: str) -> dict[str, Path]:
    """The day's output files of a store by their path below it."""
    folder = day_folder(data_root, store)
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob(pattern)) if not p.name.startswith(".")}


def read_mask(path: Path, root: Path) -> tuple[np.ndarray, dict]:
    """A mask's probabilities and the attributes that do not name its data root or its making time."""
    from cloud_tasks.product.cf_mask import read_mask as read_cf_mask

    mask = read_cf_mask(path)
    varying = {"date_created", "date_modified", "date_metadata_modified", "date_issued", "history"}
    attrs = {k: v for k, v in mask.attrs.items() if k not in varying and str(root) not in str(v)}
    return mask.probability, attrs | {"models": mask.models, "threshold": mask.threshold}


@pytest.fixture(scope="module")
def clean_run(dag, archive, untrained_model, tmp_path_factory):
    data_root = tmp_path_factory.mktemp("run-a")
    dag_run, _ = run(dag, archive, data_root, untrained_model)
    assert dag_run.state == "success"
    return data_root


def test_forced_rerun_of_a_day_gives_identical_outputs(dag, archive, untrained_model, clean_run, tmp_path):
    """Everything recomputed in a fresh data root from the same archive and model: HDF5 files, quicklooks
    and match-up tables byte-identical; masks with identical arrays and attributes, but for those naming the
    data root (the source file) or the time they were made."""
    dag_run, _ = run(dag, archive, tmp_path, untrained_model)
    assert dag_run.state == "success"

    for store, pattern in (("hdf", "*.h5"), ("masks", "*.png"), ("sst", "*.csv")):
        first, again = outputs(clean_run, store, pattern), outputs(tmp_path, store, pattern)
        assert first and list(first) == list(again), store
        for name in first:
            assert first[name].read_bytes() == again[name].read_bytes(), f"{store}/{name} differs"
    first, again = outputs(clean_run, "masks", "*.nc"), outputs(tmp_path, "masks", "*.nc")
    day_products = [Path(n).stem for n in outputs(clean_run, "hdf", f"{DAY_SPLIT}/*.h5")]
    assert first and list(first) == list(again) and [Path(n).stem for n in first] == day_products
    for name in first:
        (mask_a, attrs_a), (mask_b, attrs_b) = read_mask(first[name], clean_run), read_mask(again[name], tmp_path)
        np.testing.assert_array_equal(mask_a, mask_b)
        assert attrs_a == attrs_b
    summaries = [json.loads(DataRoot(root).sst(DAY).summary.read_text()) for root in (clean_run, tmp_path)]
    for summary in summaries:
        del summary["inputs"]  # the masks folder of each data root
    assert summaries[0] == summaries[1]


def test_corrupt_netcdf_in_a_good_zip_fails_only_its_product(
    dag, archive, untrained_model, clean_run, tmp_path, capfd, survivors
):
    day_products = outputs(clean_run, "hdf", f"{DAY_SPLIT}/*.h5")
    bad = Path(next(iter(day_products))).stem
    broken = Path(shutil.copytree(archive, tmp_path / "archive"))
    truncate_member(next(broken.rglob(f"{bad}.zip")), "S7_BT_in.nc")
    data_root = tmp_path / "data"

    dag_run, instances = run(dag, broken, data_root, untrained_model)

    assert dag_run.state == "failed", "the failure must stay visible"
    failed = sorted(key for key, ti in instances.items() if ti.state == "failed")
    assert [task for task, _ in failed] == ["process_chunk", "summary"]
    assert instances[failed[0]].rendered_map_index == f"2024-06-01 {bad}"
    assert instances[failed[0]].try_number == 1, "a bad product fails at once: a retry cannot fix it"
    assert instances[("mask", -1)].state == instances[("sst_comparison", -1)].state == "success"
    assert f"{bad}.SEN3/S7_BT_in.nc: not a readable NetCDF file" in "".join(capfd.readouterr())
    assert json.loads(DataRoot(data_root).summary(DAY).read_text())["failed"] == [bad]
    # nothing else lost: every other product's HDF5 file and quicklook as in the clean run, and no trace of the bad one
    for store, pattern in (("hdf", "*.h5"), ("masks", "*.png")):
        for name, path in outputs(clean_run, store, pattern).items():
            if bad not in name:
                survivors.expect(day_folder(data_root, store) / name, like=path)
    assert survivors.lost() == []
    assert not [p for p in files_below(data_root / "hdf", data_root / "masks") if bad in p.name]
    assert leftovers(data_root) == []


# conf -> the DAG and the message of the refusal (the param named, and why)
DAILY, TRAINING = "slstr_cloud_mask", "slstr_train_model"
BAD_CONF = {
    "negative epochs": (TRAINING, {"epochs": -1}, "epochs: -1 is less than the minimum of 1"),
    "too many epochs": (TRAINING, {"epochs": 5000}, "epochs: 5000 is greater than the maximum of 1000"),
    "zero batch size": (TRAINING, {"batch_size": 0}, "batch_size: 0 is less than the minimum of 1"),
    "unknown mission": (DAILY, {"missions": ["S3A", "S3C"]}, "missions: 'S3C' is not one of ['S3A', 'S3B']"),
    "no mission": (DAILY, {"missions": []}, "missions: [] should be non-empty"),
    "empty archive root": (DAILY, {"archive_root": ""}, "archive_root: '' does not match '^/'"),
    "relative data root": (TRAINING, {"data_root": "data"}, "data_root: 'data' does not match '^/'"),
    "unknown label": (TRAINING, {"label": "clouds"}, "label: 'clouds' is not one of ['bayes', 'summary_cloud']"),
    "unknown runner": (DAILY, {"runner": "kubernetes"}, "runner: 'kubernetes' is not one of ['local', 'docker']"),
    "epochs not a number": (TRAINING, {"epochs": "30"}, "epochs: '30' is not of type 'integer'"),
    "impossible date": (DAILY, {"date": "2024-02-30"}, "date: '2024-02-30' is not a 'date'"),
    "model path not a version": (DAILY, {"model": "/tmp/m.keras"}, "model: '/tmp/m.keras' does not match"),
    "unknown holdout": (TRAINING, {"holdout": "random"}, "holdout: 'random' is not one of ['products', 'days']"),
    "unknown model kind": (TRAINING, {"kinds": ["day", "night"]}, "kinds: 'night' is not one of ['day', 'thermal']"),
    "no model kind": (TRAINING, {"kinds": []}, "kinds: [] should be non-empty"),
}


@pytest.mark.parametrize("case", BAD_CONF)
def test_out_of_range_params_are_refused_at_trigger(dagbag, case):
    """As the REST API, the UI form and ``airflow dags trigger`` create a run: through the serialized DAG's
    ``create_dagrun``, which validates the conf against the params and creates nothing when it fails."""
    from airflow.models import DagRun
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session

    dag_id, conf, message = BAD_CONF[case]
    dag = dagbag.dags[dag_id]
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    serialized.params.deep_merge({"archive_root": "/neodc"}).validate()  # the defaults themselves are valid
    with create_session() as session:
        before = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).count()
    with pytest.raises(ParamValidationError, match="^" + re.escape(f"Invalid input for param {message}")):
        serialized.create_dagrun(
            run_id=f"manual__refused_{case.replace(' ', '_')}",
            logical_date=LOGICAL_DATE,
            data_interval=None,
            run_after=LOGICAL_DATE,
            conf=conf,
            run_type="manual",
            triggered_by="test",
            state="queued",
        )
    with create_session() as session:
        assert session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).count() == before


def test_missing_archive_root_fails_the_run_at_plan(dag, untrained_model, tmp_path, capfd):
    """A Param cannot see the disk: the archive root is checked by ``plan``, which fails naming it, and
    the run ends failed with nothing processed."""
    missing = tmp_path / "neodc"
    dag_run, instances = run(dag, missing, tmp_path / "data", untrained_model)

    assert dag_run.state == "failed"
    states = {task: ti.state for (task, _), ti in instances.items()}
    assert states["plan"] == states["summary"] == "failed"
    assert "success" not in {state for task, state in states.items() if task != "plan"}
    assert f"{missing}: archive root is not an existing folder" in "".join(capfd.readouterr())
    assert list((tmp_path / "data").iterdir()) == [DataRoot(tmp_path / "data").registry.folder], "only the model"
