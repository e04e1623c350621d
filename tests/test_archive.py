"""Discovery of product zips in a CEDA-like archive and from file lists."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

import pytest

from cloud_tasks import archive
from cloud_tasks.archive import day_folders, discover, discover_from_list, parse_time
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.naming import CEDA_MISSION_DIRS, format_product_name

UTC = dt.UTC


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def stem(mission: str, start: str) -> str:
    begin = t(start)
    return format_product_name(
        mission,
        begin,
        begin + dt.timedelta(minutes=3),
        begin + dt.timedelta(hours=2),
        duration_s=179,
        cycle=15,
        relative_orbit=237,
        frame=1439,
    )


def put(root: Path, mission: str, start: str, day: str | None = None) -> Path:
    """An empty product zip filed under ``day`` (default: its sensing start date)."""
    folder = root / CEDA_MISSION_DIRS[mission] / (day or t(start).strftime("%Y/%m/%d"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem(mission, start)}.zip"
    path.touch()
    return path


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A small archive: products on 14..16 March 2017 of both missions, plus noise."""
    root = tmp_path / "neodc"
    products = {
        "a_14_late": put(root, "S3A", "2017-03-14T23:58:30"),  # just before midnight
        "a_15_early_filed_14": put(root, "S3A", "2017-03-15T00:00:10", day="2017/03/14"),
        "a_15_0001": put(root, "S3A", "2017-03-15T00:01:30"),
        "a_15_1134": put(root, "S3A", "2017-03-15T11:34:20"),
        "b_15_0500": put(root, "S3B", "2017-03-15T05:00:00"),
        "b_15_2359": put(root, "S3B", "2017-03-15T23:59:59"),
        "a_16_0000": put(root, "S3A", "2017-03-16T00:00:00"),  # exactly at the end of the 15th
        "b_13": put(root, "S3B", "2017-03-13T12:00:00"),
    }
    day15 = root / CEDA_MISSION_DIRS["S3A"] / "2017/03/15"
    (day15 / "garbage.zip").write_bytes(b"not a product")
    (day15 / "readme.txt").write_text("ignored: not a zip")
    (day15 / ".partial.zip").touch()  # hidden: a download in progress
    # Far-away days that are garbage (files instead of folders): listing them would raise.
    (root / CEDA_MISSION_DIRS["S3A"] / "2017/03/20").write_bytes(b"\x00garbage")
    (root / CEDA_MISSION_DIRS["S3B"] / "2018").write_bytes(b"\x00garbage")
    return {"root": root, **products}


def test_one_day_both_missions(tree, caplog):
    with caplog.at_level(logging.WARNING):
        found = discover(tree["root"], t("2017-03-15"), t("2017-03-16"))
    expected = ["a_15_early_filed_14", "a_15_0001", "b_15_0500", "a_15_1134", "b_15_2359"]
    assert found == [tree[k] for k in expected]  # sorted by sensing start across missions
    assert "garbage.zip" in caplog.text and "not an SLSTR" in caplog.text


def test_interval_is_start_inclusive_end_exclusive(tree):
    found = discover(tree["root"], t("2017-03-15T00:01:30"), t("2017-03-15T11:34:20"))
    assert found == [tree["a_15_0001"], tree["b_15_0500"]]
    found = discover(tree["root"], t("2017-03-15T23:59:59"), t("2017-03-16T00:00:01"))
    assert found == [tree["b_15_2359"], tree["a_16_0000"]]


def test_product_just_before_midnight(tree):
    assert discover(tree["root"], t("2017-03-14T23:00"), t("2017-03-15T00:00")) == [tree["a_14_late"]]
    assert discover(tree["root"], t("2017-03-14T23:58:31"), t("2017-03-15T00:00:10")) == []


def test_naive_and_aware_times(tree):
    naive = discover(tree["root"], dt.datetime(2017, 3, 15, 5), dt.datetime(2017, 3, 15, 12))
    plus2 = dt.timezone(dt.timedelta(hours=2))
    aware = discover(
        tree["root"], dt.datetime(2017, 3, 15, 7, tzinfo=plus2), dt.datetime(2017, 3, 15, 14, tzinfo=plus2)
    )
    assert naive == aware == [tree["b_15_0500"], tree["a_15_1134"]]


def test_mission_filter(tree):
    assert discover(tree["root"], t("2017-03-13"), t("2017-03-17"), missions=["s3b"]) == [
        tree["b_13"],
        tree["b_15_0500"],
        tree["b_15_2359"],
    ]
    with pytest.raises(ValueError, match=r"S3C.*valid: S3A, S3B"):
        discover(tree["root"], t("2017-03-15"), t("2017-03-16"), missions=["S3C"])


def test_only_touched_day_folders_are_listed(tree):
    # The 15th is listed (and the 14th as margin); a garbage day folder inside the interval is an error.
    day15 = tree["root"] / CEDA_MISSION_DIRS["S3B"] / "2017/03/15"
    for p in day15.iterdir():
        p.unlink()
    day15.rmdir()
    day15.write_bytes(b"garbage")
    with pytest.raises(InputError, match="2017/03/15: cannot list"):
        discover(tree["root"], t("2017-03-15"), t("2017-03-16"))


def test_day_folders_margin_and_exclusive_end():
    assert day_folders(t("2017-03-15T10:00"), t("2017-03-16T00:00")) == [dt.date(2017, 3, 14), dt.date(2017, 3, 15)]
    assert day_folders(t("2017-03-15"), t("2017-03-16T00:00:01"))[-1] == dt.date(2017, 3, 16)


def test_bad_arguments(tmp_path, tree):
    with pytest.raises(InputError, match=r"nowhere.*not an existing folder"):
        discover(tmp_path / "nowhere", t("2017-03-15"), t("2017-03-16"))
    with pytest.raises(ValueError, match="empty interval"):
        discover(tree["root"], t("2017-03-16"), t("2017-03-15"))
    with pytest.raises(ValueError, match="invalid time"):
        parse_time("15/03/2017")
    assert parse_time("2017-03-15") == t("2017-03-15")
    assert parse_time("2017-03-15T13:34:20+02:00") == parse_time("2017-03-15T11:34:20Z") == t("2017-03-15T11:34:20")


def test_times_outside_the_supported_range(tree):
    """Python's calendar ends at years 1 and 9999: the day of margin (or an offset) used to overflow."""
    for text in ("0001-01-01", "9999-12-31", "1949-12-31T23:59:59Z"):
        with pytest.raises(ValueError, match=rf"time '{text}' outside the supported range 1950-01-01 to 2200-01-01"):
            parse_time(text)
    with pytest.raises(ValueError, match="invalid time '9999-12-31T23:00-05:00'"):
        parse_time("9999-12-31T23:00-05:00")
    with pytest.raises(ValueError, match="time start outside the supported range"):
        discover(tree["root"], dt.datetime(1, 1, 1), t("2017-03-16"))
    assert parse_time("1950-01-01") == t("1950-01-01")


def test_file_list(tmp_path, tree):
    lst = tmp_path / "file_list.txt"
    rel = tree["a_15_1134"].relative_to(tmp_path)
    lst.write_text(f"# products\n{rel}\n\n{tree['b_13']}\n{tree['b_13']}\n")
    assert discover_from_list(lst) == [tree["b_13"], tmp_path / rel]

    lst.write_text(f"{tree['b_13']}\n{tmp_path / 'missing' / tree['a_14_late'].name}\n")
    with pytest.raises(InputError, match=r"file_list.txt: entry .*missing.*no such file"):
        discover_from_list(lst)
    lst.write_text(f"{tree['root'] / 'x' / 'garbage.zip'}\n")
    with pytest.raises(InputError, match=r"file_list.txt: entry .*garbage.zip: not an SLSTR"):
        discover_from_list(lst)
    with pytest.raises(InputError, match="cannot read file list"):
        discover_from_list(tmp_path / "absent.txt")
    lst.write_bytes(f"{tree['b_13']}\n".encode() + b"caf\xe9.zip\n")
    with pytest.raises(InputError, match=r"file_list.txt: file list is not UTF-8 text \(byte 0xe9 at offset"):
        discover_from_list(lst)


def run_cli(*argv: str) -> None:
    parser = argparse.ArgumentParser()
    archive.register(parser.add_subparsers())
    args = parser.parse_args(["discover", *argv])
    args.func(args)


def test_cli_prints_and_writes_list(tree, tmp_path, capsys):
    run_cli(str(tree["root"]), "--start", "2017-03-15T05:00:00Z", "--end", "2017-03-15T12:00", "--missions", "S3A,S3B")
    assert capsys.readouterr().out.splitlines() == [str(tree["b_15_0500"]), str(tree["a_15_1134"])]

    out = tmp_path / "lists" / "day.txt"
    run_cli(
        str(tree["root"]), "--start", "2017-03-15", "--end", "2017-03-16", "--missions", "S3B", "--output", str(out)
    )
    assert capsys.readouterr().out == ""
    assert out.read_text().splitlines() == [str(tree["b_15_0500"]), str(tree["b_15_2359"])]
    run_cli("--file-list", str(out))  # the written list is a valid file list
    assert capsys.readouterr().out.splitlines() == out.read_text().splitlines()


def test_cli_errors(tree):
    with pytest.raises(CloudTasksError, match="--start and --end are required"):
        run_cli(str(tree["root"]), "--start", "2017-03-15")
    with pytest.raises(CloudTasksError, match="valid: S3A, S3B"):
        run_cli(str(tree["root"]), "--start", "2017-03-15", "--end", "2017-03-16", "--missions", "S3A,S3X")
    with pytest.raises(CloudTasksError, match="not both"):
        run_cli(str(tree["root"]), "--file-list", "x.txt")
