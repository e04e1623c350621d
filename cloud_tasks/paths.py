"""Turning command-line inputs (files, folders, globs, file lists) into sorted lists of paths."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from cloud_tasks.errors import InputError


def read_file_list(path: str | Path) -> list[Path]:
    """Paths listed one per line in a text file (the seed's ``file_list.txt``); blanks and ``#`` comments skipped.

    Relative entries are taken relative to the list's own folder.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot read file list: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            path, f"file list is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    if any("\0" in line for line in lines):
        raise InputError(path, "file list holds a NUL character: not a text file")
    entries = [line.strip() for line in lines]
    return [path.parent / entry for entry in entries if entry and not entry.startswith("#")]


def expand_inputs(items: Iterable[str | Path], suffix: str) -> list[Path]:
    """Expand inputs to the paths ending in ``suffix`` (e.g. ``.zip``, ``.SEN3``, ``.h5``).

    Each item may be such a path, a folder searched recursively, a glob, or a ``.txt`` file list.
    The result is sorted and free of duplicates; an item that matches nothing raises InputError.
    """
    found: set[Path] = set()
    for item in items:
        text = str(item)
        path = Path(text)
        if path.name.endswith(suffix) and (path.exists() or not glob.has_magic(text)):
            matches = [path]
        elif path.suffix == ".txt" and path.is_file():
            matches = expand_inputs(read_file_list(path), suffix)
        elif path.is_dir():
            matches = [p for p in path.rglob(f"*{suffix}") if not p.name.startswith(".")]
        elif glob.has_magic(text):
            matches = [Path(p) for p in glob.glob(text, recursive=True) if p.endswith(suffix)]
        else:
            raise InputError(path, f"no such file or folder (expected {suffix} files, a folder, a glob or a .txt list)")
        if not matches:
            raise InputError(path, f"holds no {suffix} input")
        found.update(matches)
    return sorted(found)
