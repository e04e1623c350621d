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

    def __reduce__(self):
        # Picklable with its own arguments: it crosses process boundaries (convert-hdf --workers).
        return type(self), (self.path, self.problem)


class DiskFullError(CloudTasksError):
    """An output could not be written: its file system is full (or the quota is used up).

    Not the input's fault: the same command succeeds once space is freed (a retry, not a fix of the data).
    """

    def __init__(self, path: str | Path, reason: str = "no space left on device"):
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"{path}: {reason} in {self.path.parent}; the partial output was removed, earlier outputs kept"
        )

    def __reduce__(self):
        return type(self), (self.path, self.reason)


def product_failure(product: str | Path, exc: BaseException) -> CloudTasksError:
    """Any exception raised while processing one product, as that product's failure (the batch goes on).

    The package's own errors pass through; anything else (an OSError of a hostile member name, a bug
    hit by odd data) becomes an InputError naming the product, so one product never stops a batch.
    """
    if isinstance(exc, CloudTasksError):
        return exc
    return InputError(product, f"failed with {type(exc).__name__}: {exc}")


class BatchFailures(CloudTasksError):
    """Some products of a batch run with ``keep_going`` failed; the others were processed.

    ``failures`` holds each failed product's error, ``done`` the outputs of the good products.
    """

    MAX_LISTED = 20

    def __init__(self, action: str, failures: list[CloudTasksError], done: list[Path], total: int):
        self.failures = failures
        self.done = done
        lines = [f"{len(failures)} of {total} products failed to {action}:"]
        lines += [f"  {exc}" for exc in failures[: self.MAX_LISTED]]
        if len(failures) > self.MAX_LISTED:
            lines.append(f"  ... and {len(failures) - self.MAX_LISTED} more (see the log)")
        super().__init__("\n".join(lines))
