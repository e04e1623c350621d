"""Errors raised for bad input: each names the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class CloudTasksError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(CloudTasksError):
    """An input file or folder is missing, corrupt or not what the pipeline expects."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
