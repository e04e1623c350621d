"""Finding product zips in a CEDA-like archive, by sensing time, or from a file list.

The archive files each product as ``<root>/<CEDA_MISSION_DIRS[mission]>/YYYY/MM/DD/<stem>.zip``
under its sensing start date. Discovery lists only the day folders an interval touches (a real
archive holds years of ~1000 products a day per mission) and selects by the sensing start parsed
from each file name, so a product is found whatever day folder it sits in among those listed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from cloud_tasks.atomic import atomic_file, output_file
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.naming import CEDA_MISSION_DIRS, MISSIONS, ProductName
from cloud_tasks.paths import read_file_list

log = logging.getLogger(__name__)

# Day folders listed before the interval's first day: products are filed under their sensing start
# date, so none is strictly needed, but one day of margin (one extra listing per mission) also finds
# a product filed under the previous day (e.g. by processing or ascending-node date near midnight);
# the sensing-start filter keeps the selection exact whatever folder a product sits in.
DAYS_BEFORE = 1
# Times accepted: discovery lists every day folder of an interval, so the interval is bounded (and
# far from the ends of Python's calendar, where the day of margin would overflow).
EARLIEST = dt.datetime(1950, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def as_utc(when: dt.datetime) -> dt.datetime:
    """``when`` as an aware UTC datetime; a naive one is taken as UTC."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def parse_time(text: str) -> dt.datetime:
    """Parse ``YYYY-MM-DD`` or an ISO 8601 datetime (``Z`` or an offset allowed; naive = UTC) in the supported years."""
    try:
        when = as_utc(dt.datetime.fromisoformat(text.strip()))
    except (ValueError, OverflowError):  # OverflowError: an offset moves it past year 1 or 9999
        expected = "expected YYYY-MM-DD or an ISO datetime (e.g. 2017-03-15T11:34:20Z)"
        raise ValueError(f"invalid time {text!r}: {expected}") from None
    check_time(when, repr(text))
    return when


def check_time(when: dt.datetime, name: str) -> None:
    """Raise ValueError unless ``when`` lies in [EARLIEST, LATEST)."""
    if not EARLIEST <= as_utc(when) < LATEST:
        raise ValueError(f"time {name} outside the supported range {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}")


def check_missions(missions: Iterable[str]) -> tuple[str, ...]:
    """The missions, upper-cased and validated against ``MISSIONS``; raise ValueError naming the valid ones."""
    names = tuple(m.strip().upper() for m in missions if m.strip())
    unknown = [m for m in names if m not in CEDA_MISSION_DIRS]
    if unknown or not names:
        raise ValueError(f"unknown mission(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(MISSIONS)}")
    return names


def day_folders(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """The dates whose folders may hold products starting in [start, end), with ``DAYS_BEFORE`` of margin."""
    first = start.date() - dt.timedelta(days=DAYS_BEFORE)
    last = (end - dt.timedelta(microseconds=1)).date()  # end is exclusive: 00:00 does not touch that day
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _list_day(folder: Path) -> list[Path]:
    """The ``.zip`` files of one day folder; a missing folder (no data that day) is empty."""
    try:
        return [p for p in folder.iterdir() if p.name.endswith(".zip") and not p.name.startswith(".")]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(folder, f"cannot list archive day folder: {exc.strerror}") from None


def discover(root: str | Path, start: dt.datetime, end: dt.datetime, missions: Iterable[str] = MISSIONS) -> list[Path]:
    """The product zips below archive ``root`` whose sensing start lies in [start, end), of the given missions.

    Sorted by (sensing start, name). Names that do not parse are skipped with a warning; a product found
    twice (in two day folders) is listed once.
    """
    root = Path(root)
    start, end = as_utc(start), as_utc(end)
    check_time(start, "start")
    check_time(end, "end")
    missions = check_missions(missions)
    if end <= start:
        raise ValueError(f"empty interval: end {end:%Y-%m-%dT%H:%M:%SZ} is not after start {start:%Y-%m-%dT%H:%M:%SZ}")
    if not root.is_dir():
        raise InputError(root, "archive root is not an existing folder")
    found: dict[str, tuple[ProductName, Path]] = {}
    for mission in missions:
        base = root / CEDA_MISSION_DIRS[mission]
        if not base.is_dir():
            log.warning("%s: no %s folder in the archive", base, mission)
            continue
        for day in day_folders(start, end):
            for path in _list_day(base / f"{day:%Y/%m/%d}"):
                try:
                    name = ProductName.parse(path)
                except InputError as exc:
                    log.warning("skipping %s", exc)
                    continue
                if name.mission in missions and start <= name.start < end:
                    if name.stem in found:
                        log.warning("%s: duplicate of %s, skipped", path, found[name.stem][1])
                        continue
                    found[name.stem] = (name, path)
    products = sorted(found.values(), key=lambda item: (item[0].start, item[0].stem))
    log.info("found %d products from %s to %s in %s", len(products), start, end, root)
    return [path for _, path in products]


def discover_from_list(file_list: str | Path) -> list[Path]:
    """The product zips named in a file list (one per line), validated; sorted by (sensing start, name).

    Every entry must be an existing ``.zip`` whose name parses as a product name; duplicates are dropped.
    """
    products: dict[Path, ProductName] = {}
    for entry in read_file_list(file_list):
        if not entry.name.endswith(".zip"):
            raise InputError(file_list, f"entry {entry}: not a .zip product archive")
        try:
            name = ProductName.parse(entry)
        except InputError as exc:
            raise InputError(file_list, f"entry {entry}: {exc.problem}") from None
        if not entry.is_file():
            raise InputError(file_list, f"entry {entry}: no such file")
        products[entry] = name
    return sorted(products, key=lambda p: (products[p].start, products[p].stem))


def write_file_list(paths: Iterable[Path], output: str | Path) -> None:
    """Write ``paths`` as an absolute-path file list, atomically (relative entries would be read against its folder)."""
    with atomic_file(output) as tmp:
        tmp.write_text("".join(f"{Path(p).absolute()}\n" for p in paths))


def run_cli(args: argparse.Namespace) -> None:
    """``discover`` sub-command."""
    if args.output is not None:
        output_file(args.output)  # a bad location is an error before any work
    try:
        if args.file_list is not None:
            if args.root is not None or args.start is not None or args.end is not None:
                raise ValueError("give either --file-list or ARCHIVE_ROOT with --start/--end, not both")
            paths = discover_from_list(args.file_list)
        else:
            if args.root is None or args.start is None or args.end is None:
                raise ValueError("ARCHIVE_ROOT, --start and --end are required (or --file-list)")
            missions = args.missions.split(",")
            start, end = _time_argument("--start", args.start), _time_argument("--end", args.end)
            paths = discover(args.root, start, end, missions)
    except ValueError as exc:
        raise CloudTasksError(str(exc)) from None
    if args.output is not None:
        write_file_list(paths, args.output)
        log.info("wrote %d products to %s", len(paths), args.output)
    else:
        sys.stdout.write("".join(f"{Path(p).absolute()}\n" for p in paths))


def _time_argument(option: str, text: str) -> dt.datetime:
    """``parse_time`` of an option's value; the error names the option."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``discover`` sub-command."""
    p = subparsers.add_parser(
        "discover",
        help="list the product zips of a time interval in a CEDA-like archive (or validate a file list)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("root", nargs="?", type=Path, metavar="ARCHIVE_ROOT", help="archive root (e.g. /neodc)")
    p.add_argument("--start", help="interval start, inclusive: YYYY-MM-DD or ISO datetime (UTC if no zone)")
    p.add_argument("--end", help="interval end, exclusive: YYYY-MM-DD or ISO datetime (UTC if no zone)")
    p.add_argument("--missions", default=",".join(MISSIONS), help="comma-separated missions (default: %(default)s)")
    p.add_argument("--file-list", type=Path, help="validate this list of zips instead of searching an archive")
    p.add_argument("--output", type=Path, help="write the list to this file (atomically) instead of stdout")
    p.set_defaults(func=run_cli)
