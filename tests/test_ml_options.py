"""TrainOptions, the one definition of the training options: the CLI, params.json and the DAG's Params agree."""

from __future__ import annotations

import argparse
import dataclasses
import math

import jsonschema
import pytest

from cloud_tasks.errors import CloudTasksError
from cloud_tasks.ml.options import PRECISIONS, TrainOptions
from cloud_tasks.registry import KINDS

# The keys of params.json before precision, XLA and the model kind existed: folders trained then must still resume.
KEYS_BEFORE = {
    "epochs",
    "batch_size",
    "learning_rate",
    "clip_offset",
    "train_split",
    "label",
    "patch_size",
    "seed",
    "class_weights",
}
NAMES = [f.name for f in dataclasses.fields(TrainOptions)]


def parse(*argv: str) -> TrainOptions:
    parser = argparse.ArgumentParser()
    TrainOptions.add_arguments(parser)
    return TrainOptions.from_args(parser.parse_args(argv))


def test_defaults_are_the_cli_defaults_and_keep_the_params_keys():
    assert parse() == TrainOptions()
    values = TrainOptions().as_dict()
    assert set(values) == KEYS_BEFORE | {"precision", "jit_compile", "kind"}
    assert (values["precision"], values["jit_compile"], values["class_weights"]) == ("float32", False, [1.0, 1.0])
    assert values["kind"] == "day"


@pytest.mark.parametrize(
    "options",
    [
        TrainOptions(),
        TrainOptions(epochs=3, batch_size=8, learning_rate=0.0003, label="summary_cloud", class_weights=(0.5, 2)),
        TrainOptions(precision="mixed_bfloat16", jit_compile=True, patch_size=64, clip_offset=0, train_split=1),
        TrainOptions(precision="mixed_float16", jit_compile=False, seed=0),
        TrainOptions(kind="thermal", epochs=2),
    ],
)
def test_command_line_round_trip(options):
    assert parse(*options.cli_arguments()) == options


def test_xla_is_a_switch():
    assert "--xla" in TrainOptions(jit_compile=True).cli_arguments()
    assert "--no-xla" in TrainOptions().cli_arguments()
    assert parse("--xla").jit_compile is True
    assert parse("--xla", "--no-xla").jit_compile is False
    with pytest.raises(SystemExit):
        parse("--xla=yes")


def test_precision_choices():
    assert [parse("--precision", name).precision for name in PRECISIONS] == list(PRECISIONS)
    with pytest.raises(SystemExit):
        parse("--precision", "float64")


def test_params_json_of_an_older_run_reads_with_the_defaults():
    old = {**{key: TrainOptions().as_dict()[key] for key in KEYS_BEFORE}, "epochs": 5, "products": ["a", "b"]}
    assert TrainOptions.from_mapping(old) == TrainOptions(epochs=5)
    assert TrainOptions.from_mapping(old).kind == "day", "a run from before the kinds trained the day model"


def test_kind_choices_are_the_registry_kinds():
    assert [parse("--kind", kind).kind for kind in KINDS] == list(KINDS) == ["day", "thermal"]
    assert TrainOptions.json_schema("kind")["enum"] == list(KINDS)
    with pytest.raises(SystemExit):
        parse("--kind", "night")


def test_values_from_json_equal_values_from_python():
    """JSON has one number type: 1 and [1, 2] read back as the options that wrote them."""
    assert TrainOptions.from_mapping({"learning_rate": 1, "class_weights": [1, 2]}) == TrainOptions(
        learning_rate=1.0, class_weights=(1.0, 2.0)
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1, not 0"),
        ({"epochs": 1001}, "epochs must be at most 1000"),
        ({"epochs": "3"}, "epochs must be an integer, not '3'"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"batch_size": 2.0}, "batch_size must be an integer"),
        ({"learning_rate": 0}, "learning_rate must be more than 0"),
        ({"learning_rate": math.nan}, "learning_rate must be a finite number"),
        ({"learning_rate": "fast"}, "learning_rate must be a finite number"),
        ({"train_split": 1.5}, "train_split must be at most 1"),
        ({"label": "clouds"}, "label must be one of bayes, summary_cloud"),
        ({"precision": "float64"}, "precision must be one of float32, mixed_bfloat16, mixed_float16"),
        ({"jit_compile": "yes"}, "jit_compile must be a boolean, not 'yes'"),
        ({"jit_compile": 1}, "jit_compile must be a boolean"),
        ({"kind": "night"}, "kind must be one of day, thermal, not 'night'"),
        ({"class_weights": (1.0,)}, "class_weights must be 2 numbers"),
        ({"class_weights": "ab"}, "class_weights must be 2 numbers"),
        ({"class_weights": (1.0, -1.0)}, "class_weights must be at least 0"),
        ({"patch_size": 100}, "patch size 100 must be a multiple of 8"),
        ({"patch_size": 16, "clip_offset": 8}, "exceed twice the clip offset 8"),
    ],
)
def test_bad_values_are_refused_with_the_option_named(changes, message):
    with pytest.raises(CloudTasksError, match=message):
        TrainOptions.from_mapping(changes)


def test_bad_command_line_values_are_refused():
    with pytest.raises(CloudTasksError, match="batch_size must be at least 1"):
        parse("--batch-size", "0")


@pytest.mark.parametrize("name", NAMES)
def test_json_schema_accepts_the_default_and_what_check_accepts(name):
    """The DAG's Params take these schemas: the default validates, and so does every value of the round-trip cases."""
    schema = TrainOptions.json_schema(name)
    assert schema["description"]
    default = TrainOptions().as_dict()[name]
    jsonschema.validate(default, schema)
    assert TrainOptions.default(name) == getattr(TrainOptions(), name)


def test_json_schema_types():
    assert TrainOptions.json_schema("jit_compile") == {
        "type": "boolean",
        "description": "XLA-compile the training step",
    }
    assert TrainOptions.json_schema("precision")["enum"] == list(PRECISIONS)
    assert TrainOptions.json_schema("epochs")["type"] == "integer"
    weights = TrainOptions.json_schema("class_weights")
    jsonschema.validate([0.5, 2], weights)
    for bad in ([1], [1, -1], ["a", 1]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, weights)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("epochs", 0),
        ("epochs", "3"),
        ("learning_rate", 0),
        ("precision", "float64"),
        ("jit_compile", "yes"),
        ("kind", "night"),
    ],
)
def test_json_schema_and_check_refuse_the_same_values(name, bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, TrainOptions.json_schema(name))
    with pytest.raises(CloudTasksError):
        TrainOptions.from_mapping({name: bad})
