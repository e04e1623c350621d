"""``python -m cloud_tasks <command>``: every stage of the pipeline, usable without Airflow.

Each command module registers its own sub-command through ``register(subparsers)`` and keeps
heavy imports (TensorFlow, h5py, netCDF4) inside its functions, so that ``--help`` and the light
commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cloud_tasks import __version__
from cloud_tasks.errors import CloudTasksError

COMMAND_MODULES = (
    "cloud_tasks.sample",
    "cloud_tasks.archive",
    "cloud_tasks.extract",
    "cloud_tasks.convert",
    "cloud_tasks.ml.train",
    "cloud_tasks.ml.inference",
    "cloud_tasks.sst",
    "cloud_tasks.pipeline",
    "cloud_tasks.registry",
    "cloud_tasks.catalogue",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cloud_tasks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except CloudTasksError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
