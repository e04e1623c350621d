"""The training options, defined once: ``train()``, the ``train`` CLI, the ML command line and the
DAG's Params all derive from ``TrainOptions`` (names, defaults, bounds, help).

Light on purpose (no TensorFlow): the DAG file and the planning code import it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cloud_tasks.errors import CloudTasksError
from cloud_tasks.hdf import LABEL_SOURCES

POOLING_MULTIPLE = 8  # three 2x2 poolings: spatial sizes given to the U-Net must be multiples of 8


def _option(default, help: str, **schema) -> Any:
    """A dataclass field carrying its help text and JSON-schema bounds (``minimum``, ``maximum``, ``enum``)."""
    return field(default=default, metadata={"help": help, "schema": schema})


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
    class_weights: tuple[float, float] = _option((1.0, 1.0), "loss weights of clear and cloudy pixels")

    def __post_init__(self):
        object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
        self.check()

    def check(self) -> None:
        """Refuse inconsistent options with one clear message."""
        if self.epochs < 1 or self.batch_size < 1:
            raise CloudTasksError(f"epochs and batch size must be positive (got {self.epochs}, {self.batch_size})")
        if self.patch_size % POOLING_MULTIPLE or self.patch_size <= 2 * self.clip_offset:
            raise CloudTasksError(
                f"patch size {self.patch_size} must be a multiple of {POOLING_MULTIPLE} (three poolings) "
                f"and exceed twice the clip offset {self.clip_offset}"
            )
        if not 0.0 < self.train_split <= 1.0:
            raise CloudTasksError(f"train split must be in (0, 1], got {self.train_split}")
        if self.label not in LABEL_SOURCES:
            raise CloudTasksError(f"label must be one of {', '.join(LABEL_SOURCES)}, not {self.label!r}")
        if len(self.class_weights) != 2 or min(self.class_weights) < 0:
            raise CloudTasksError(f"class weights must be two non-negative numbers, got {self.class_weights}")

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
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            arguments += [flag, *map(str, value)] if isinstance(value, tuple) else [f"{flag}={value}"]
        return arguments

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One ``--flag`` per option, with its default and help."""
        for f in dataclasses.fields(cls):
            flag, schema = "--" + f.name.replace("_", "-"), f.metadata["schema"]
            if isinstance(f.default, tuple):
                parser.add_argument(flag, type=float, nargs=2, default=f.default, metavar=("CLEAR", "CLOUD"))
            else:
                kind = type(f.default)
                parser.add_argument(flag, type=kind, default=f.default, choices=schema.get("enum"))
            parser._actions[-1].help = f.metadata["help"]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def from_mapping(cls, values: dict) -> TrainOptions:
        """Options from a mapping (the DAG's Params, a ``params.json``); keys that are not options are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    @classmethod
    def json_schema(cls, name: str) -> dict:
        """The JSON schema of one option (type, bounds, description): what an Airflow ``Param`` takes."""
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        kinds = {int: "integer", float: "number", str: "string"}
        return {"type": kinds[type(f.default)], **f.metadata["schema"], "description": f.metadata["help"]}

    @classmethod
    def default(cls, name: str):
        return next(f.default for f in dataclasses.fields(cls) if f.name == name)
