"""Operating the pipeline as a data centre does, with ``dag.test()`` on a real metadata DB, generated archives,
real TensorFlow training and the local runner: train both model kinds once over two days and promote each, mask a
third day with the production model, promote another version and re-run the day, a late product, and failing
stages that must fail their runs.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from models import install_model

from cloud_tasks.layout import DataRoot
from cloud_tasks.naming import ProductName
from cloud_tasks.registry import KINDS, PRODUCTION, ModelRegistry

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parents[2] / "dags"
TRAIN_DAYS = (dt.date(2024, 6, 1), dt.date(2024, 6, 2))
MASK_DAY = dt.date(2024, 6, 3)
PRODUCTS_PER_DAY = 3
RUNNER = {"runner": "local", "chunk_size": 1}


@pytest.fixture(scope="module")
def dags(airflow_db):
    from airflow.models import DagBag, Pool

    Pool.create_or_update_pool("gpu", slots=1, description="ML steps", include_deferred=False)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["slstr_train_model"], bag.dags["slstr_cloud_mask"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from cloud_tasks.sample import make_sample_archive

    root = tmp_path_factory.mktemp("archive")
    for i, day in enumerate((*TRAIN_DAYS, MASK_DAY)):
        make_sample_archive(root, day, PRODUCTS_PER_DAY, grid="small", seed=20 + i)
    return root


def states(dag_run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}


def train(dag, archive: Path, data_root: Path, **conf):
    period = {"start": TRAIN_DAYS[0].isoformat(), "end": MASK_DAY.isoformat()}
    run_conf = {"archive_root": str(archive), "data_root": str(data_root), "epochs": 1, "batch_size": 4}
    logical = dt.datetime(2024, 7, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=len(conf))
    return dag.test(logical_date=logical, run_conf=run_conf | RUNNER | period | conf)


def mask(dag, archive: Path, data_root: Path, **conf):
    run_conf = {"archive_root": str(archive), "data_root": str(data_root), "date": MASK_DAY.isoformat()}
    return dag.test(logical_date=dt.datetime(2024, 6, 3, 6, tzinfo=dt.UTC), run_conf=run_conf | RUNNER | conf)


def mask_models(data_root: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    """Each mask of the masked day: product -> the version and SHA-256 of the model that made it."""
    from cloud_tasks.product.cf_mask import read_models

    return {
        path.stem: tuple((m.version, m.sha256) for m in read_models(path))
        for path in DataRoot(data_root).masks(MASK_DAY).masks()
    }


def summary(data_root: Path) -> dict:
    return json.loads(DataRoot(data_root).summary(MASK_DAY).read_text())


@pytest.fixture(scope="module")
def trained(dags, archive, tmp_path_factory):
    """Train both kinds (the default) over two days, promote: the first production model of each kind."""
    data_root = tmp_path_factory.mktemp("data")
    dag_run = train(dags[0], archive, data_root, promote=True)
    assert dag_run.state == "success", states(dag_run)
    labels = {ti.rendered_map_index for ti in dag_run.get_task_instances() if ti.task_id.startswith("train_kind.")}
    assert labels == {"day", "thermal"}, "each kind's instances are labelled with the kind"
    return data_root


def test_training_registers_an_evaluated_version_of_each_kind_and_promotes_it(trained):
    registry = ModelRegistry(trained)
    versions = {version.kind: version for version in registry.versions()}
    assert sorted(versions) == ["day", "thermal"] and len(registry.versions()) == 2
    assert {kind: registry.production_name(kind) for kind in versions} == {k: v.name for k, v in versions.items()}
    night = {path.stem for day in TRAIN_DAYS for path in DataRoot(trained).hdf_split(day, "night").glob("*.h5")}
    assert night, "the sample archive has night products"
    for kind, version in versions.items():
        assert version.info["period"] == {"start": "2024-06-01", "end": "2024-06-03"}
        products = version.info["train_products"] + version.info["test_products"]
        assert {name.split("____")[1][:8] for name in products} <= {"20240601", "20240602"}, "the period's products"
        assert bool(night & set(products)) == (kind == "thermal"), "night products train the thermal model only"
        metrics = json.loads(version.files.metrics.read_text())["candidate"]
        assert metrics["pixels"] > 0 and metrics["kind"] == kind
        assert {"accuracy", "precision", "recall", "f1", "majority_rate"} <= set(metrics)
        assert "held-out" in version.files.card.read_text() and f"{kind} model" in version.files.card.read_text()
    assert len(versions["thermal"].info["input_channels"]) == 5
    promoted = sorted((p["kind"], p["version"]) for p in registry.promotions())
    assert promoted == [("day", versions["day"].name), ("thermal", versions["thermal"].name)]


def test_a_day_is_masked_with_the_production_model_and_redone_after_a_promotion(dags, archive, trained, tmp_path):
    registry = ModelRegistry(trained)
    dag_run = mask(dags[1], archive, trained)
    assert dag_run.state == "success", states(dag_run)
    first = mask_models(trained)
    day, thermal = (registry.version(PRODUCTION, kind) for kind in KINDS)  # a mask records both: the day one first
    assert first and set(first.values()) == {((day.name, day.sha256), (thermal.name, thermal.sha256))}
    assert summary(trained)["masked"] == len(first) and summary(trained)["model"]["version"] == day.name
    catalogue = DataRoot(trained).catalogue.folder
    assert all(len(list(catalogue.rglob(f"{stem}.json"))) == 1 for stem in first), "a STAC Item per mask"
    labels = [ti.rendered_map_index for ti in dag_run.get_task_instances() if ti.task_id == "process_chunk"]
    assert len(labels) == PRODUCTS_PER_DAY and all(label.startswith("2024-06-03 S3") for label in labels)

    other = install_model(trained, day.files.model, key="retrained")  # promoted
    assert registry.production_name() == other.name == "v3"
    dag_run = mask(dags[1], archive, trained)
    assert dag_run.state == "success", states(dag_run)
    items = sorted(p.name for p in catalogue.rglob("*.json") if p.name.startswith(("S3", "v")))
    expected = [f"{stem}.json" for stem in first] + ["v1.json", "v2.json", "v3.json"]
    assert items == sorted(expected), "re-masked, not duplicated"
    redone = ((other.name, other.sha256), (thermal.name, thermal.sha256))
    assert mask_models(trained) == dict.fromkeys(first, redone), "masks of another day model are made again"
    assert summary(trained)["model"] == {"version": "v3", "sha256": other.sha256}


def test_a_late_product_is_the_only_one_processed_on_re_run(dags, archive, trained, tmp_path):
    from cloud_tasks.sample import make_sample_archive

    late_archive = Path(shutil.copytree(archive, tmp_path / "archive"))
    data = DataRoot(trained)
    assert mask(dags[1], late_archive, trained).state == "success"
    converted = {p: p.stat().st_mtime_ns for p in data.hdf(MASK_DAY).rglob("*.h5")}
    masks = {p: p.stat().st_mtime_ns for p in data.masks(MASK_DAY).masks()}
    (late,) = make_sample_archive(tmp_path / "late", MASK_DAY, 1, grid="small", seed=99)
    shutil.copy2(late, ProductName.parse(late).archive_path(late_archive))  # arrives after the day was done
    dag_run = mask(dags[1], late_archive, trained)
    assert dag_run.state == "success", states(dag_run)
    new = set(data.hdf(MASK_DAY).rglob("*.h5")) - set(converted)
    assert len(new) == 1, "the late product converted"
    assert {p: p.stat().st_mtime_ns for p in converted} == converted, "a converted product was redone"
    assert all(p.stat().st_mtime_ns == t for p, t in masks.items()), "a mask of the same model was redone"
    assert summary(trained)["products"] == PRODUCTS_PER_DAY + 1


def test_a_kind_that_cannot_train_fails_the_run_but_not_the_other_kind(dags, tmp_path, capfd):
    from cloud_tasks.sample import make_sample_archive

    for day in TRAIN_DAYS:  # one day product a day: nothing the thermal model trains on
        make_sample_archive(tmp_path / "archive", day, 1, grid="small", seed=30)
    dag_run = train(dags[0], tmp_path / "archive", tmp_path / "data", promote=True)
    assert dag_run.state == "failed"
    found = states(dag_run)
    assert found[("train_kind.train", 1)] == "failed" and found[("report", -1)] == "failed"
    assert found[("train_kind.register", 0)] == found[("train_kind.promote", 0)] == "success"
    registry = ModelRegistry(tmp_path / "data")
    assert [v.kind for v in registry.versions()] == ["day"] and registry.production_name("day") == "v1"
    assert registry.production_name("thermal") is None
    assert "a thermal model trains on products with night or twilight pixels" in "".join(capfd.readouterr())


def test_a_failing_mask_stage_fails_the_run_and_the_summary_says_so(dags, archive, tmp_path):
    not_a_model = tmp_path / "broken.keras"
    not_a_model.write_bytes(b"not a keras file")
    install_model(tmp_path / "data", not_a_model)
    dag_run = mask(dags[1], archive, tmp_path / "data")
    assert dag_run.state == "failed"
    found = states(dag_run)
    assert found[("mask", -1)] == "failed" and found[("summary", -1)] == "failed"
    written = json.loads(DataRoot(tmp_path / "data").summary(MASK_DAY).read_text())
    assert "mask" in written["failed_stages"] and written["masked"] == 0


def test_without_a_production_model_the_run_converts_and_says_masks_were_skipped(dags, archive, tmp_path):
    dag_run = mask(dags[1], archive, tmp_path)
    assert dag_run.state == "success", states(dag_run)
    assert states(dag_run)[("mask", -1)] == "skipped"
    written = summary(tmp_path)
    assert written["masked"] == 0 and written["model"] is None
    assert any("no day model has been promoted to production" in note for note in written["notes"])
    assert sum(written["converted"].values()) == PRODUCTS_PER_DAY


def test_a_day_without_products_ends_with_one_clear_message(dags, archive, tmp_path, capfd):
    dag_run = mask(dags[1], archive, tmp_path, date="2024-06-09")
    assert dag_run.state == "failed"
    assert states(dag_run)[("plan", -1)] == "failed"
    assert "no SLSTR product of 2024-06-09" in "".join(capfd.readouterr())
