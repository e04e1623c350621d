"""Planning runs (which day, which products, which model) and the `pipeline` command that chains the
stages without Airflow."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from products import SAMPLE_DATE

from cloud_tasks.cli import build_parser, main
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import DataRoot
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.planning import (
    MAX_MAPPED_INSTANCES,
    DayRun,
    PlanError,
    chunk_label,
    chunk_products,
    plan_day,
    plan_training,
)
from cloud_tasks.registry import ModelRegistry

NAME = "S3A_SL_1_RBT____20240601T011916_20240601T012216_20240601T050721_0179_113_074_1787_LN2_O_NT_004"
MIDNIGHT = dt.datetime.combine(SAMPLE_DATE, dt.time(), tzinfo=dt.UTC)
INTERVAL = (MIDNIGHT, MIDNIGHT + dt.timedelta(days=1))


def test_a_day_of_two_missions_maps_to_a_bounded_number_of_instances():
    products = [f"/a/{NAME[:-3]}{i:03d}.zip" for i in range(2000)]
    chunks = chunk_products({"2024-06-01": products}, chunk_size=1)
    assert len(chunks) <= MAX_MAPPED_INSTANCES and {c["day"] for c in chunks} == {"2024-06-01"}
    assert [p for chunk in chunks for p in chunk["products"]] == products
    small = chunk_products({"2024-06-02": products[4:6], "2024-06-01": products[:4]}, chunk_size=3)
    assert [(c["day"], len(c["products"])) for c in small] == [("2024-06-01", 3), ("2024-06-01", 1), ("2024-06-02", 2)]


def test_chunk_label_names_the_day_and_the_product():
    assert chunk_label({"day": "2024-06-01", "products": [f"/a/{NAME}.zip"]}) == f"2024-06-01 {NAME}"
    chunk = {"day": "2024-06-01", "products": [f"/a/{NAME}.zip"] * 3}
    assert chunk_label(chunk) == f"2024-06-01 {NAME} (+2 more)"


def params(archive, tmp_path, **extra) -> dict:
    return {"archive_root": str(archive), "missions": ["S3A", "S3B"], "data_root": str(tmp_path / "data"), **extra}


def test_a_scheduled_run_processes_its_interval_and_refuses_another_day(sample_archive, tmp_path):
    scheduled = plan_day(params(sample_archive, tmp_path), run_type="scheduled", data_interval=INTERVAL)
    assert scheduled.run == DayRun(SAMPLE_DATE, DataRoot(tmp_path / "data")) and len(scheduled.products) == 6
    same = plan_day(params(sample_archive, tmp_path, date="2024-06-01"), run_type="backfill", data_interval=INTERVAL)
    assert same == scheduled
    with pytest.raises(PlanError, match=r"a backfill run processes its data interval \(2024-06-01\).*date=2024-06-03"):
        plan_day(params(sample_archive, tmp_path, date="2024-06-03"), run_type="backfill", data_interval=INTERVAL)
    with pytest.raises(PlanError, match="'file_list' param is for manual runs"):
        plan_day(params(sample_archive, tmp_path, file_list="/l.txt"), run_type="scheduled", data_interval=INTERVAL)


def test_a_manual_run_takes_its_date_or_the_day_of_its_logical_date(sample_archive, tmp_path):
    noon = MIDNIGHT + dt.timedelta(hours=12)
    by_logical_date = plan_day(params(sample_archive, tmp_path), run_type="manual", logical_date=noon)
    by_date = plan_day(params(sample_archive, tmp_path, date="2024-06-01"), run_type="manual")
    assert by_logical_date.run.day == by_date.run.day == SAMPLE_DATE
    assert plan_day(params(sample_archive, tmp_path, date="2024-06-03"), run_type="manual").products == ()
    with pytest.raises(PlanError, match="needs the 'date' or the 'file_list' param"):
        plan_day(params(sample_archive, tmp_path), run_type="manual")


def test_without_a_production_model_masking_is_skipped_with_a_reason(sample_archive, tmp_path):
    plan = plan_day(params(sample_archive, tmp_path, date="2024-06-01"))
    assert plan.model is None and plan.inference_arguments == []
    assert "no day model has been promoted to production" in plan.as_xcom()["skip_reason"]
    with pytest.raises(PlanError, match="day model 'v3'"):
        plan_day(params(sample_archive, tmp_path, date="2024-06-01", model="v3"))


def test_each_kind_masks_with_its_own_production_model(sample_archive, tmp_path, untrained_model):
    from models import install_model

    root = tmp_path / "data"
    day = install_model(root, untrained_model, key="day")
    asked = params(sample_archive, tmp_path, date="2024-06-01")
    plan = plan_day(asked)
    assert (
        plan.model == day
        and plan.thermal_model is None
        and plan.notes
        == [f"no thermal model in production in {DataRoot(root).registry.folder}: night products not masked"]
    )
    parsed = build_parser().parse_args(plan.inference_arguments)
    assert (parsed.model, parsed.thermal_model) == (str(day.files.model), None)
    assert parsed.inputs == [str(DataRoot(root).hdf_split(SAMPLE_DATE, "day"))], "without a thermal model: day only"

    thermal = install_model(root, untrained_model, key="thermal", kind="thermal")
    plan = plan_day(asked)
    assert (plan.model, plan.thermal_model, plan.notes) == (day, thermal, [])
    parsed = build_parser().parse_args(plan.inference_arguments)
    assert (parsed.model, parsed.thermal_model) == (str(day.files.model), str(thermal.files.model))
    assert parsed.inputs == [str(DataRoot(root).hdf(SAMPLE_DATE))], "both splits"
    assert plan.inference_inputs == [parsed.inputs[0], parsed.model, parsed.thermal_model]
    assert [m["kind"] for m in plan.as_xcom()["models"]] == ["day", "thermal"]

    assert plan_day(asked | {"thermal_model": "none"}).thermal_model is None
    with pytest.raises(PlanError, match="thermal model 'v1': v1 is a day model"):
        plan_day(asked | {"thermal_model": "v1"})
    with pytest.raises(PlanError, match="day model 'v2': v2 is a thermal model"):
        plan_day(asked | {"model": "v2"})


def test_a_training_plan_is_keyed_by_its_products_and_options(sample_archive, tmp_path):
    period = {"start": "2024-05-31", "end": "2024-06-02", "epochs": 2, "batch_size": 4}
    plan = plan_training(params(sample_archive, tmp_path, **period)).of("day")
    assert list(plan.products) == ["2024-06-01"] and len(plan.products["2024-06-01"]) == 6
    assert plan.key == plan_training(params(sample_archive, tmp_path, **period)).of("day").key
    assert plan.key != plan_training(params(sample_archive, tmp_path, **period, seed=1)).of("day").key
    parsed = build_parser().parse_args(plan.train_arguments)
    assert TrainOptions.from_args(parsed) == TrainOptions(epochs=2, batch_size=4), "the train command's options"
    assert parsed.out == str(plan.training.folder)
    with pytest.raises(PlanError, match="at least two days"):
        plan_training(params(sample_archive, tmp_path, **period, holdout="days"))
    with pytest.raises(PlanError, match="no SLSTR product found"):
        plan_training(params(sample_archive, tmp_path, start="2024-06-03", end="2024-06-04"))
    with pytest.raises(CloudTasksError, match="period is empty"):
        plan_training(params(sample_archive, tmp_path, start="2024-06-03", end="2024-06-03"))


def test_the_plan_travels_as_json(sample_archive, tmp_path):
    xcom = plan_day(params(sample_archive, tmp_path, date="2024-06-01")).as_xcom()
    assert json.loads(json.dumps(xcom)) == xcom and xcom["day"] == "2024-06-01"


@pytest.mark.slow
def test_pipeline_command_trains_promotes_and_masks(tmp_path, capsys):
    assert main(["pipeline", str(tmp_path), "--products", "4", "--epochs", "1", "--batch-size", "4"]) == 0
    data = DataRoot(tmp_path / "data")
    summary = json.loads(data.summary(SAMPLE_DATE).read_text())
    printed = capsys.readouterr().out
    printed = json.loads(printed[printed.index("{") :])
    assert printed == summary | {"trained": {"day": "v1", "thermal": "v2"}}, "the summary and each kind's version"
    assert summary["products"] == 4 and summary["failed"] == [] and summary["failed_stages"] == {}
    assert summary["model"]["version"] == "v1"
    assert summary["masked"] == sum(summary["converted"].values()) > summary["converted"]["day"] > 0
    assert summary["sst"]["model"]["clear"] > 0
    registry = ModelRegistry(data.root)
    assert [registry.production_name(kind) for kind in ("day", "thermal")] == ["v1", "v2"]
    for version in registry.versions():
        metrics = json.loads(version.files.metrics.read_text())
        assert metrics["candidate"]["pixels"] > 0 and 0 <= metrics["candidate"]["accuracy"] <= 1, version.kind
