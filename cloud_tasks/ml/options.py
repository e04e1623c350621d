"""The training options, defined once: ``train()``, the ``train`` CLI, the ML command line and the
DAG's Params all derive from ``TrainOptions`` (names, defaults, bounds, help).

Light on purpose (no TensorFlow): the DAG file and the planning code import it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cloud_tasks.errors import CloudTasksError
from cloud_tasks.hdf import LABEL_SOURCES
from cloud_tasks.registry import KINDS

POOLING_MULTIPLE = 8  # three 2x2 poolings: spatial sizes given to the U-Net must be multiples of 8
# Keras dtype policies: float32 everywhere, or layers computing in bfloat16/float16 with float32 weights.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _option(default, help: str, *, flag: str | None = None, **schema) -> Any:
    """A dataclass field carrying its help text, JSON-schema bounds (``minimum``, ``maximum``, ``enum``...)
    and, where it differs from the field's name, its command-line flag."""
    return field(default=default, metadata={"help": help, "schema": schema, "flag": flag})


def _flag(f: dataclasses.Field) -> str:
    return "--" + (f.metadata["flag"] or f.name).replace("_", "-")


@dataclass(frozen=True)
class TrainOptions:
    """What determines a training run's result (a run folder may only be resumed with the same options)."""

    epochs: int = _option(30, "epochs to train in all (resumed runs included)", minimum=1, maximum=1000)
    batch_size: int = _option(32, "global batch size, in patches (split across GPUs)", minimum=1, maximum=1024)
    learning_rate: float = _option(1e-3, "Adam learning rate", exclusiveMinimum=0)
    clip_offset: int = _option(15, "border cut from every patch in the loss, px", minimum=0)
    train_split: float = _option(0.8, "share of products used for training", exclusiveMinimum=0, maximum=1)
    label: str = _option("bayes", "mask the model learns", enum=list(LABEL_SOURCES))
    patch_size: int = _option(256, f"training patch side, px (multiple of {POOLING_MULTIPLE})", minimum=16)
    seed: int = _option(42, "seed of the split, shuffling and weights", minimum=0)
    class_weights: tuple[float, float] = _option((1.0, 1.0), "loss weights of clear and cloudy pixels", minimum=0)
    precision: str = _option(
        "float32", "Keras dtype policy of the layers (loss and metric stay float32)", enum=list(PRECISIONS)
    )
    jit_compile: bool = _option(False, "XLA-compile the training step", flag="xla")
    kind: str = _option(
        KINDS[0],
        "model kind: day (nine channels, day products) or thermal (brightness temperatures, night and twilight pixels)",
        enum=list(KINDS),
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _canonical(f, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Refuse a value of the wrong type or out of its bounds, or inconsistent options, with one clear message."""
        for f in dataclasses.fields(self):
            _check_value(f, getattr(self, f.name))
        if self.patch_size % POOLING_MULTIPLE or self.patch_size <= 2 * self.clip_offset:
            raise CloudTasksError(
                f"patch size {self.patch_size} must be a multiple of {POOLING_MULTIPLE} (three poolings) "
                f"and exceed twice the clip offset {self.clip_offset}"
            )

    def as_dict(self) -> dict:
        """JSON-ready values (``params.json``)."""
        values = dataclasses.asdict(self)
        values["class_weights"] = list(self.class_weights)
        return values

    def replace(self, **changes) -> TrainOptions:
        return dataclasses.replace(self, **changes)

    def cli_arguments(self) -> list[str]:
        """The ``train`` command's flags giving exactly these options."""
        arguments = []
        for f in dataclasses.fields(self):
            value, flag = getattr(self, f.name), _flag(f)
            if isinstance(value, bool):
                arguments.append(flag if value else "--no-" + flag.removeprefix("--"))
            elif isinstance(value, tuple):
                arguments += [flag, *map(str, value)]
            else:
                arguments.append(f"{flag}={value}")
        return arguments

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One ``--flag`` per option (``--flag/--no-flag`` for a switch), with its default and help."""
        for f in dataclasses.fields(cls):
            kwargs = {"dest": f.name, "default": f.default, "help": f.metadata["help"]}
            if isinstance(f.default, bool):
                kwargs["action"] = argparse.BooleanOptionalAction
            elif isinstance(f.default, tuple):
                kwargs.update(type=float, nargs=2, metavar=("CLEAR", "CLOUD"))
            else:
                kwargs.update(type=type(f.default), choices=f.metadata["schema"].get("enum"))
            parser.add_argument(_flag(f), **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def from_mapping(cls, values: dict) -> TrainOptions:
        """Options from a mapping (the DAG's Params, a ``params.json``); keys that are not options are ignored,
        missing ones take their default (a ``params.json`` written before an option existed)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    @classmethod
    def json_schema(cls, name: str) -> dict:
        """The JSON schema of one option (type, bounds, description): what an Airflow ``Param`` takes."""
        f = _field(name)
        schema = dict(f.metadata["schema"])
        if isinstance(f.default, tuple):
            n = len(f.default)
            schema = {"type": "array", "items": {"type": "number", **schema}, "minItems": n, "maxItems": n}
        else:
            schema = {"type": _JSON_TYPES[type(f.default)], **schema}
        return {**schema, "description": f.metadata["help"]}

    @classmethod
    def default(cls, name: str):
        return _field(name).default


def _field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(TrainOptions) if f.name == name)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _canonical(f: dataclasses.Field, value):
    """One representation per value (a float option given as 1 is 1.0, weights a tuple of floats), so that
    options read from JSON equal those given in Python; values of the wrong type are left for ``check``."""
    if isinstance(f.default, float) and _is_number(value):
        return float(value)
    if isinstance(f.default, tuple) and isinstance(value, list | tuple) and all(map(_is_number, value)):
        return tuple(float(v) for v in value)
    return value


def _check_value(f: dataclasses.Field, value) -> None:
    """One option against its type and its schema bounds (each item of a tuple against the bounds)."""
    kind, schema = type(f.default), f.metadata["schema"]
    if kind is tuple:
        if not isinstance(value, tuple) or len(value) != len(f.default) or not all(map(_is_number, value)):
            raise CloudTasksError(f"{f.name} must be {len(f.default)} numbers, not {value!r:.100}")
        items = value
    elif kind is float:
        if not _is_number(value) or not math.isfinite(value):
            raise CloudTasksError(f"{f.name} must be a finite number, not {value!r:.100}")
        items = (value,)
    elif kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise CloudTasksError(f"{f.name} must be an integer, not {value!r:.100}")
    elif not isinstance(value, kind):
        raise CloudTasksError(f"{f.name} must be a {_JSON_TYPES[kind]}, not {value!r:.100}")
    else:
        items = (value,)
    for item in items:
        _check_bounds(f.name, item, schema)


def _check_bounds(name: str, value, schema: dict) -> None:
    if "enum" in schema and value not in schema["enum"]:
        raise CloudTasksError(f"{name} must be one of {', '.join(map(str, schema['enum']))}, not {value!r:.100}")
    if "minimum" in schema and value < schema["minimum"]:
        raise CloudTasksError(f"{name} must be at least {schema['minimum']}, not {value}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise CloudTasksError(f"{name} must be more than {schema['exclusiveMinimum']}, not {value}")
    if "maximum" in schema and value > schema["maximum"]:
        raise CloudTasksError(f"{name} must be at most {schema['maximum']}, not {value}")
