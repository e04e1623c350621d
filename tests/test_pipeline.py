"""The day-level stage functions the DAG calls, and the `pipeline` command that chains them without Airflow."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import SAMPLE_DATE

from cloud_tasks.cli import main
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import DataRoot
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.pipeline import DayRun, chunk_label, chunk_products, plan_run


def test_a_day_of_two_missions_maps_to_a_few_hundred_instances():
    products = [f"S3A_{i:04d}.zip" for i in range(2000)]
    chunks = chunk_products(products, chunk_size=1)
    assert len(chunks) <= 256
    assert [p for chunk in chunks for p in chunk] == products
    assert chunk_products(products[:10], chunk_size=4) == [products[0:4], products[4:8], products[8:10]]


def test_chunk_label_names_the_product():
    name = "S3A_SL_1_RBT____20240601T011916_20240601T012216_20240601T050721_0179_113_074_1787_LN2_O_NT_004"
    assert chunk_label([f"/a/{name}.zip"]) == name
    assert chunk_label([f"/a/{name}.zip", "/a/b.zip", "/a/c.zip"]) == f"{name} (+2 more)"


def params(archive, tmp_path, **extra) -> dict:
    return {
        "archive_root": str(archive),
        "missions": ["S3A", "S3B"],
        "data_root": str(tmp_path / "data"),
        "train": True,
        "epochs": 2,
        "batch_size": 4,
        "label": "bayes",
        **extra,
    }


def test_plan_takes_the_data_interval_or_the_date_param(sample_archive, tmp_path):
    start = dt.datetime.combine(SAMPLE_DATE, dt.time(), tzinfo=dt.UTC)
    by_interval = plan_run(
        params(sample_archive, tmp_path), data_interval_start=start, data_interval_end=start + dt.timedelta(days=1)
    )
    by_date = plan_run(params(sample_archive, tmp_path, date=SAMPLE_DATE.isoformat()))
    assert by_interval == by_date
    assert len(by_date.products) == 6 and by_date.run == DayRun(SAMPLE_DATE, DataRoot(tmp_path / "data"))
    data = by_date.run.data
    assert by_date.train_arguments[:3] == [
        "train",
        str(data.hdf_split(SAMPLE_DATE)),
        str(data.model(SAMPLE_DATE).folder),
    ]
    assert by_date.inference_arguments[1] == str(data.model(SAMPLE_DATE).model)
    xcom = by_date.as_xcom()
    assert xcom["day"] == "2024-06-01" and xcom["products"] == list(by_date.products)
    assert json.loads(json.dumps(xcom)) == xcom, "the plan travels between tasks as JSON"


def test_the_training_command_carries_every_option_and_the_params_choose_them(sample_archive, tmp_path):
    """One definition of the training options: the plan's train command parses back to the Params' options."""
    from cloud_tasks.cli import build_parser

    plan = plan_run(params(sample_archive, tmp_path, date=SAMPLE_DATE.isoformat(), seed=7))
    parsed = build_parser().parse_args(plan.train_arguments)
    assert TrainOptions.from_args(parsed) == TrainOptions(epochs=2, batch_size=4, label="bayes", seed=7)


def test_plan_refuses_runs_it_cannot_serve(sample_archive, tmp_path):
    with pytest.raises(CloudTasksError, match="needs the 'date' or the 'file_list' param"):
        plan_run(params(sample_archive, tmp_path))
    with pytest.raises(CloudTasksError, match="no SLSTR product found"):
        plan_run(params(sample_archive, tmp_path, date="2024-06-03"))
    with pytest.raises(CloudTasksError, match="set 'model_path'"):
        plan_run(params(sample_archive, tmp_path, date=SAMPLE_DATE.isoformat(), train=False))
    existing = plan_run(params(sample_archive, tmp_path, date="2024-06-01", train=False, model_path="/m.keras"))
    assert existing.train_arguments == [] and existing.inference_arguments[1] == "/m.keras"


@pytest.mark.slow
def test_pipeline_command_runs_every_stage(tmp_path, capsys):
    assert main(["pipeline", str(tmp_path), "--products", "4", "--epochs", "1", "--batch-size", "4"]) == 0
    summary = json.loads((tmp_path / "data" / "summaries" / "2024-06-01.json").read_text())
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :]) == summary
    assert summary["products"] == 4 and summary["failed"] == []
    assert summary["masked"] == summary["converted"]["day"] > 0
    assert summary["sst"]["model"]["clear"] > 0
