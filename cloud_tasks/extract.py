"""Safe, atomic, idempotent extraction of product zips to ``<out>/<stem>.SEN3`` folders.

A zip is checked in full before anything is written: it must hold exactly one top folder named
after the zip (``<stem>.zip`` -> ``<stem>.SEN3/``) and only regular files and folders inside it,
with no absolute, ``..``, backslash or drive-letter paths, no links or devices, no encryption, and
declared sizes within ``max_total_bytes`` and ``max_ratio`` (zip bombs). Members are then streamed
into a hidden temporary folder beside the destination, counting the bytes really produced (headers
can lie), and the folder is renamed into place only when complete: a ``<stem>.SEN3`` folder is
therefore always a whole product, which is what makes a re-run skip it without opening the zip.
A failed extraction leaves nothing behind; one killed outright (SIGKILL) can leave only a hidden
``.<stem>.SEN3.*.tmp`` folder, never a ``<stem>.SEN3`` one.

Files get mode 0644 and folders 0755; zip timestamps are not restored (mtime = extraction time),
the product's dates being in its name.
"""

from __future__ import annotations

import argparse
import logging
import lzma
import math
import os
import re
import stat
import sys
import time
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from cloud_tasks.atomic import atomic_dir, output_dir
from cloud_tasks.errors import BatchFailures, CloudTasksError, DiskFullError, InputError, product_failure
from cloud_tasks.layout import inside
from cloud_tasks.naming import ProductName
from cloud_tasks.paths import expand_inputs

log = logging.getLogger(__name__)

DEFAULT_MAX_TOTAL_BYTES = 4 * 2**30  # a real product is ~1 GB unpacked
DEFAULT_MAX_RATIO = 200.0  # NetCDF-4 members are compressed inside already: real ratios are small
# Members (and products) smaller than this are exempt from the ratio check: a small file of fill
# values or XML may legitimately deflate a lot, and cannot be a bomb; max_total_bytes still applies.
RATIO_MIN_BYTES = 2**20
MAX_MEMBERS = 10_000  # a real product has ~110 files: many more is an inode bomb of tiny files
CHUNK_BYTES = 2**20
PROGRESS_LINES = 20  # at most about this many INFO progress lines per extract_products call

# What reading a damaged zip can raise: zipfile's own checks (CRC, headers), the decompressors
# (zlib/lzma errors; bz2 raises OSError), a stream ending early (EOFError), an unknown method.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError, RuntimeError)
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    """Open ``zip_path`` as a zip, or raise InputError saying why it is not a usable one."""
    try:
        size = zip_path.stat().st_size
    except FileNotFoundError:
        raise InputError(zip_path, "no such file") from None
    except OSError as exc:
        raise InputError(zip_path, f"cannot read: {exc.strerror}") from None
    if not zip_path.is_file():
        raise InputError(zip_path, "not a regular file")
    if size == 0:
        raise InputError(zip_path, "empty file (0 bytes), not a zip archive")
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        with open(zip_path, "rb") as f:
            looks_like_zip = f.read(4) == b"PK\x03\x04"
        problem = "truncated or damaged zip archive" if looks_like_zip else "not a zip archive"
        raise InputError(zip_path, f"{problem} ({exc})") from None
    except OSError as exc:
        raise InputError(zip_path, f"cannot read zip archive: {exc}") from None


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member is unsafe to extract anywhere (bad path, link, special file, encryption), or None."""
    name = info.filename
    if "\\" in name:
        return "backslash in path (Windows path or traversal attempt)"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE_RE.match(name):
        return "drive letter in path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "'..' component (path traversal)"
    if any(part in ("", ".") for part in parts):
        return "empty or '.' path component"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no Unix type (e.g. made on Windows)
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link (links are never extracted)"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"special file (Unix type {kind:#o}), not a regular file or folder"
    if kind and (kind == stat.S_IFDIR) != info.is_dir():
        return "entry type and name disagree (folder without trailing '/' or file with one)"
    if info.flag_bits & 0x1:
        return "encrypted member"
    return None


def _plan(zip_path: Path, zf: zipfile.ZipFile, product: ProductName) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Check the zip's members and return them with their paths inside the product folder."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputError(zip_path, f"holds {len(infos)} members, more than {MAX_MEMBERS} (zip bomb?)")
    for info in infos:
        problem = _member_problem(info)
        if problem:
            raise InputError(zip_path, f"member {info.filename!r}: {problem}")
    tops = sorted({info.filename.split("/")[0] for info in infos if info.filename.split("/")[0].endswith(".SEN3")})
    if not tops:
        raise InputError(zip_path, "holds no .SEN3 product folder")
    if len(tops) > 1:
        raise InputError(zip_path, f"holds {len(tops)} products ({', '.join(tops)}); expected exactly one .SEN3 folder")
    # The output is named after the zip (so that a re-run can skip it without opening the zip): a
    # different folder inside means a mislabelled zip, whose data must not be filed under a wrong name.
    if tops[0] != product.sen3:
        raise InputError(zip_path, f"product folder {tops[0]} does not match the zip's name (expected {product.sen3})")
    plan, seen = [], set()
    for info in infos:
        parts = tuple(info.filename.rstrip("/").split("/"))
        if parts[0] != product.sen3 or (len(parts) == 1 and not info.is_dir()):
            raise InputError(zip_path, f"member {info.filename!r}: outside the product folder {product.sen3}/")
        if parts in seen:
            raise InputError(zip_path, f"member {info.filename!r}: duplicate entry")
        seen.add(parts)
        if len(parts) > 1:
            plan.append((info, parts[1:]))
    files = {rel for info, rel in plan if not info.is_dir()}
    folders = {rel[:i] for _, rel in plan for i in range(1, len(rel))}
    if clashes := sorted(files & folders):
        raise InputError(zip_path, f"member {'/'.join((product.sen3, *clashes[0]))!r}: both a file and a folder")
    return plan


def _check_sizes(zip_path: Path, infos: Iterable[zipfile.ZipInfo], max_total_bytes: int, max_ratio: float) -> None:
    """Reject zip bombs by their declared sizes, before extracting anything."""
    infos = list(infos)
    total = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if total > max_total_bytes:
        raise InputError(
            zip_path, f"declared unpacked size {total} bytes exceeds the limit of {max_total_bytes} bytes (zip bomb?)"
        )
    for info in infos:
        if info.file_size > RATIO_MIN_BYTES and info.file_size > max_ratio * info.compress_size:
            ratio = info.file_size / max(info.compress_size, 1)
            raise InputError(
                zip_path, f"member {info.filename!r}: compression ratio {ratio:.0f} exceeds {max_ratio:g} (zip bomb?)"
            )
    if total > RATIO_MIN_BYTES and total > max_ratio * packed:
        raise InputError(
            zip_path, f"total compression ratio {total / max(packed, 1):.0f} exceeds {max_ratio:g} (zip bomb?)"
        )


def _copy_member(zip_path: Path, member: str, src: BinaryIO, dst: BinaryIO, limit: int, why: str) -> int:
    """Stream ``src`` to ``dst`` and return the byte count; InputError once more than ``limit`` bytes come.

    Counts the bytes really produced rather than trusting the header; ``why`` says which limit applies.
    (zipfile already stops at a member's declared size, itself within ``max_ratio`` of the compressed
    bytes zipfile reads, so the ratio holds while streaming too; this guard does not rely on that.)
    Read errors (corrupt or truncated data) become InputError; write errors stay OSError (a full disk
    becomes a DiskFullError naming the product folder, in ``atomic_dir``).
    """
    count = 0
    while True:
        try:
            data = src.read(min(CHUNK_BYTES, limit - count + 1))  # +1: detect going over the limit
        except _READ_ERRORS as exc:
            detail = str(exc).replace(f" for file {member!r}", "")  # zipfile repeats the member name
            raise InputError(zip_path, f"member {member!r}: corrupt or truncated data ({detail})") from None
        if not data:
            return count
        count += len(data)
        if count > limit:
            raise InputError(zip_path, f"member {member!r}: unpacks to more than {limit} bytes ({why}); aborted")
        dst.write(data)


def _make_folder(path: Path) -> None:
    """Create one folder with mode 0755 if it does not exist (its parent does)."""
    try:
        path.mkdir()
    except FileExistsError:
        return
    os.chmod(path, 0o755)


def _extract_member(zip_path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Write one file member to ``target`` (mode 0644, never through a link); return its size."""
    limits = [(info.file_size, "its declared size: lying header"), (budget, "the product's size limit: zip bomb?")]
    limit, why = min(limits, key=lambda item: item[0])
    # O_EXCL|O_NOFOLLOW: the folder is our fresh temporary one, but never write through anything pre-existing.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as dst:
        os.fchmod(fd, 0o644)
        try:
            src = zf.open(info)
        except _READ_ERRORS as exc:
            raise InputError(zip_path, f"member {info.filename!r}: cannot be read ({exc})") from None
        with src:
            count = _copy_member(zip_path, info.filename, src, dst, limit, why)
    if count != info.file_size:
        raise InputError(zip_path, f"member {info.filename!r}: truncated ({count} of {info.file_size} bytes)")
    return count


def _write_members(
    zip_path: Path, zf: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], dest: Path, limit: int
) -> int:
    """Extract the planned members below ``dest``; return the bytes written."""
    written = 0
    for info, rel in plan:
        folders = rel if info.is_dir() else rel[:-1]
        for i in range(1, len(folders) + 1):
            _make_folder(dest.joinpath(*folders[:i]))
        if not info.is_dir():
            written += _extract_member(zip_path, zf, info, dest.joinpath(*rel), limit - written)
    return written


def extract_product(
    zip_path: str | Path,
    out_dir: str | Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Path:
    """Extract one product zip to ``out_dir/<stem>.SEN3`` and return that folder.

    If the folder exists already it is returned at once, without reading the zip. Any problem with
    the zip raises InputError naming it (and the member) and leaves nothing under ``out_dir``.
    """
    zip_path = Path(zip_path)
    product = ProductName.parse(zip_path)  # the folder is named after the parsed zip name, never the zip's content
    final = inside(out_dir, Path(out_dir) / product.sen3)
    if final.is_dir():
        log.debug("%s: already extracted to %s", zip_path, final)
        return final
    started = time.perf_counter()
    with _open_zip(zip_path) as zf:
        plan = _plan(zip_path, zf, product)
        _check_sizes(zip_path, zf.infolist(), max_total_bytes, max_ratio)
        with atomic_dir(final) as tmp:
            written = _write_members(zip_path, zf, plan, tmp, max_total_bytes)
    seconds = time.perf_counter() - started
    log.debug("%s: extracted %.1f MB in %.1f s to %s", zip_path, written / 1e6, seconds, final)
    return final


def extract_products(
    zips: Iterable[str | Path],
    out_dir: str | Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
    keep_going: bool = False,
) -> list[Path]:
    """Extract many product zips to ``out_dir``; return the product folders, sorted.

    Any exception while extracting one zip is that zip's failure (``errors.product_failure``): with
    ``keep_going`` it is logged, the other zips extracted, and a ``BatchFailures`` listing the bad ones
    raised at the end; otherwise it is raised at once. A full disk (``DiskFullError``) always stops the
    batch: the next zips would fail the same way.
    """
    zips = [Path(z) for z in zips]
    every = max(1, math.ceil(len(zips) / PROGRESS_LINES))
    extracted: list[Path] = []
    failures: list[CloudTasksError] = []
    for i, zip_path in enumerate(zips, 1):
        try:
            extracted.append(extract_product(zip_path, out_dir, max_total_bytes=max_total_bytes, max_ratio=max_ratio))
        except DiskFullError:
            raise
        except Exception as exc:
            failure = product_failure(zip_path, exc)
            if failure is exc and not keep_going:
                raise
            if not keep_going:
                raise failure from exc
            log.error("skipped: %s", failure)
            failures.append(failure)
        if i % every == 0 or i == len(zips):
            failed = f", {len(failures)} failed" if failures else ""
            log.info("extracted %d/%d (%d %%)%s", i, len(zips), 100 * i // len(zips), failed)
    extracted = sorted(set(extracted))
    if failures:
        raise BatchFailures("extract", failures, extracted, len(zips))
    return extracted


def run_cli(args: argparse.Namespace) -> None:
    """``extract`` sub-command."""
    output_dir(args.out)
    zips = expand_inputs(args.inputs, ".zip")
    options = {"max_total_bytes": int(args.max_total_gb * 2**30), "max_ratio": args.max_ratio}
    try:
        paths = extract_products(zips, args.out, keep_going=args.keep_going, **options)
    except BatchFailures as exc:
        sys.stdout.write("".join(f"{p}\n" for p in exc.done))  # the good work, before failing
        raise
    sys.stdout.write("".join(f"{p}\n" for p in paths))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``extract`` sub-command."""
    p = subparsers.add_parser(
        "extract",
        help="extract product zips safely to <OUT>/<stem>.SEN3 folders (skipping those already there)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_LIST_OR_ZIPS", help="zips, folders, globs or .txt file lists")
    p.add_argument("out", type=Path, metavar="OUT", help="folder receiving the <stem>.SEN3 product folders")
    p.add_argument(
        "--max-total-gb",
        type=float,
        default=DEFAULT_MAX_TOTAL_BYTES / 2**30,
        help="largest unpacked product accepted, GiB (default: %(default)g)",
    )
    p.add_argument(
        "--max-ratio",
        type=float,
        default=DEFAULT_MAX_RATIO,
        help="largest compression ratio accepted per member and in total (default: %(default)g)",
    )
    p.add_argument("--keep-going", action="store_true", help="extract the good zips, then fail listing the bad ones")
    p.set_defaults(func=run_cli)
