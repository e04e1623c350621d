"""Atomic outputs: write under a temporary name in the destination folder, then rename.

A reader therefore sees either no file or a complete one under the final name, even when the
writer is killed, the disk fills up, or two workers produce the same output at once (the last
rename wins and both wrote identical content). A full file system (ENOSPC, EDQUOT) becomes a
``DiskFullError`` naming the output.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cloud_tasks.errors import DiskFullError, InputError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _disk_full_names(final: Path) -> Iterator[None]:
    """Turn "no space left" (from the OS or from HDF5, which keeps the errno) into a DiskFullError naming ``final``."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise DiskFullError(final, os.strerror(exc.errno).lower()) from exc


@contextlib.contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds."""
    final = Path(final)
    with _disk_full_names(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` if the block succeeds.

    If ``final`` appeared meanwhile (another worker finished first), ours is discarded.
    """
    final = Path(final)
    with _disk_full_names(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def output_dir(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents) or check the existing one is a writable folder.

    Every command calls this on its OUT before any work, so that a bad location (a file, a read-only
    folder) is one clear error, not a traceback half-way through.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(path, "output folder is an existing file, not a folder") from None
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFullError(path, os.strerror(exc.errno).lower()) from None
        raise InputError(path, f"cannot create the output folder: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise InputError(path, "output folder is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(path, "output folder is not writable")
    return path


def output_file(path: str | Path) -> Path:
    """Check that the output file ``path`` can be written: its folder is made or writable, and it is no folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "output file is an existing folder")
    output_dir(path.parent)
    return path


def write_json(path: str | Path, value) -> Path:
    """Write ``value`` as indented JSON with sorted keys, atomically (same value, same bytes)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)
