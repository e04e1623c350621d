"""Training both model kinds in one run (issue 17): one plan per kind, each kind's file lists, the registration of
a thermal run (its five inputs in ``version.json``, the model card and the STAC Item) and the ``models`` command.
Real files and a real (untrained) Keras model; the whole training DAG is run in tests/dags/test_operate.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import keras
import pytest
from ml_data import product_name, write_product
from test_product_stac import validate

from cloud_tasks.cli import build_parser, main
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import DataRoot, ModelFiles
from cloud_tasks.ml import data
from cloud_tasks.ml.model import build_unet, compile_unet, save_model
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.ml.registration import register_training
from cloud_tasks.pipeline import write_training_lists
from cloud_tasks.planning import PlanError, plan_training
from cloud_tasks.product import stac
from cloud_tasks.registry import ModelRegistry

THERMAL_INPUTS = ["S7", "S8", "S9", "S8-S9", "S7-S8"]
DAYS = ("2024-06-01", "2024-06-02")


def params(archive: Path, tmp_path: Path, **extra) -> dict:
    period = {"start": "2024-06-01", "end": "2024-06-02", "epochs": 2}
    return {"archive_root": str(archive), "data_root": str(tmp_path / "data"), **period, **extra}


def test_a_training_run_plans_one_run_per_kind(sample_archive, tmp_path):
    both = plan_training(params(sample_archive, tmp_path))
    assert [plan.kind for plan in both.plans] == ["day", "thermal"]
    day, thermal = both.plans
    assert day.key != thermal.key and day.products == thermal.products == both.products
    assert day.training.folder != thermal.training.folder
    parsed = build_parser().parse_args(thermal.train_arguments)
    assert TrainOptions.from_args(parsed) == TrainOptions(epochs=2, kind="thermal")
    assert both.of("day") == day
    xcom = both.as_xcom()
    assert json.loads(json.dumps(xcom)) == xcom and xcom["chunks"] == both.products and xcom["holdout_days"] == []
    assert [(run["kind"], run["key"]) for run in xcom["runs"]] == [("day", day.key), ("thermal", thermal.key)]
    assert xcom["runs"][1]["register_arguments"][4:6] == ["--key", thermal.key]

    # one kind alone: the same run as that kind's in a run of both (same key, same training folder)
    (alone,) = plan_training(params(sample_archive, tmp_path, kinds=["thermal", "thermal"])).plans
    assert alone == thermal
    with pytest.raises(PlanError, match=r"kinds must list model kinds among day, thermal, not \['night'\]"):
        plan_training(params(sample_archive, tmp_path, kinds=["night"]))


def converted_day(data_root: Path, day: str, splits: dict[int, str]) -> list[str]:
    """Converted products (index -> split) of ``day`` under the data root; returns their (absent) zips."""
    hdf = DataRoot(data_root).hdf(dt.date.fromisoformat(day))
    for index, split in splits.items():
        write_product(hdf, index, split=split, shape=(64, 64))
    return [f"/archive/{product_name(index)}.zip" for index in splits]


def test_the_thermal_lists_hold_the_night_products_too(tmp_path):
    by_day = {
        DAYS[0]: converted_day(tmp_path, DAYS[0], {0: "day", 1: "night"}),
        DAYS[1]: converted_day(tmp_path, DAYS[1], {2: "night", 3: "day"}),
    }
    by_day[DAYS[1]].append(f"/archive/{product_name(4)}.zip")  # not converted: not listed
    registry = DataRoot(tmp_path).registry

    def listed(key: str, name: str) -> list[tuple[str, str]]:
        """The split and product index of each product a list holds."""
        index = {product_name(i): i for i in range(5)}
        return [(Path(line).parent.name, index[Path(line).stem]) for line in registry.training_list(key, name).open()]

    assert write_training_lists(tmp_path, "k-day", by_day, [DAYS[1]], "day") == {"train": 1, "holdout": 1}
    assert listed("k-day", "train") == [("day", 0)] and listed("k-day", "holdout") == [("day", 3)]
    assert write_training_lists(tmp_path, "k-thermal", by_day, [], "thermal") == {"train": 4, "holdout": 0}
    assert listed("k-thermal", "train") == [("day", 0), ("night", 1), ("night", 2), ("day", 3)]

    night_only = {DAYS[0]: by_day[DAYS[0]][1:]}
    with pytest.raises(CloudTasksError, match=r"no day-split product of .* nothing to train the day model on"):
        write_training_lists(tmp_path, "k2", night_only, [], "day")
    with pytest.raises(
        CloudTasksError,
        match=r"no day or night-split product of the held-out day.* nothing to evaluate the thermal model on",
    ):
        write_training_lists(tmp_path, "k3", {**night_only, "2024-06-03": []}, ["2024-06-03"], "thermal")
    with pytest.raises(CloudTasksError, match="model kind must be one of day, thermal, not 'night'"):
        write_training_lists(tmp_path, "k4", by_day, [], "night")


def thermal_run(folder: Path, products: list[Path]) -> ModelFiles:
    """A finished thermal training run as ``train`` leaves it (untrained weights: the scores do not matter)."""
    files = ModelFiles(folder)
    folder.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    save_model(compile_unet(build_unet(input_shape=(None, None, 5))), files.model)
    options = TrainOptions(epochs=1, patch_size=64, clip_offset=8, kind="thermal")
    names = [p.stem for p in products]
    summary = {"parameters": {**options.as_dict(), "products": names}, "inputs": data.input_spec("thermal")}
    files.params.write_text(json.dumps(summary | {"train_products": names[:1], "test_products": names[1:]}))
    return files


def test_registering_a_thermal_run_records_its_inputs_and_compares_it_with_the_thermal_production(tmp_path, capsys):
    held_out = [write_product(tmp_path / "hdf", i, split="night", shape=(64, 64)) for i in range(2)]
    first = register_training(tmp_path, thermal_run(tmp_path / "t1", held_out), key="t1", holdout=held_out)
    info = first.info
    assert first.kind == info["kind"] == "thermal" and info["input_channels"] == THERMAL_INPUTS
    assert info["normalisation"]["inputs"] == data.input_spec("thermal")["inputs"]
    assert info["domain"] == data.input_spec("thermal")["domain"]
    card = first.files.card.read_text()
    assert "thermal model" in card and "S8-S9 = (S8 - S9) / 2" in card and "S7 = (S7 - 270) / 22" in card

    registry = ModelRegistry(tmp_path)
    registry.promote(first.name)
    second = register_training(tmp_path, thermal_run(tmp_path / "t2", held_out), key="t2", holdout=held_out)
    metrics = json.loads(second.files.metrics.read_text())
    assert metrics["production"]["version"] == "v1" and metrics["production"]["kind"] == "thermal"
    assert 0.9 * 2 * 64 * 64 < metrics["candidate"]["pixels"] <= 2 * 64 * 64

    (path,) = (p for p in stac.add_model_items(tmp_path) if p.parent.name == "v1")
    item = json.loads(path.read_text())
    validate(item)
    properties = item["properties"]
    assert properties["cloud_tasks:kind"] == "thermal" and [b["name"] for b in properties["bands"]] == THERMAL_INPUTS
    (model_input,) = properties["mlm:input"]
    assert model_input["input"]["shape"][-1] == 5 and model_input["bands"][:3] == ["S7", "S8", "S9"]
    assert model_input["bands"][3] == {"name": "S8-S9", "format": "python", "expression": "S8 - S9"}
    assert model_input["value_scaling"][0] == {"type": "z-score", "mean": 270.0, "stddev": 22.0}
    assert model_input["value_scaling"][4] == {"type": "scale", "value": 2.0}

    assert main(["models", "list", str(tmp_path)]) == 0
    assert [line.split()[:3] for line in capsys.readouterr().out.splitlines()] == [
        ["*", "v1", "thermal"],
        ["v2", "thermal", registered_at(second)],
    ]
    assert main(["models", "show", str(tmp_path), "production", "--kind", "thermal"]) == 0
    assert '"version": "v1"' in capsys.readouterr().out
    assert main(["models", "show", str(tmp_path), "production"]) == 2
    assert "no day model has been promoted" in capsys.readouterr().err


def registered_at(version) -> str:
    return version.info["registered_at"]


def test_a_model_item_refuses_malformed_recorded_inputs(tmp_path):
    held_out = [write_product(tmp_path / "hdf", 0, split="night", shape=(64, 64))]
    version = register_training(tmp_path, thermal_run(tmp_path / "t", held_out * 2), key="t", holdout=held_out)
    info = json.loads(version.files.version_info.read_text())
    info["normalisation"]["inputs"][3]["terms"] = {"../S8": 1.0}
    version.files.version_info.chmod(0o644)
    version.files.version_info.write_text(json.dumps(info))
    with pytest.raises(CloudTasksError, match=r"version\.json: normalisation inputs must be"):
        stac.add_model_items(tmp_path)
