"""Well-formed inputs carrying hostile values, and bad output locations, through the CLI in a child process.

Each case asserts: exit status 2, one ``error: <file>: <problem>`` line and no traceback; nothing written
outside OUT (nor inside it for the bad input); with ``--keep-going`` the good products done. Classes (issue 13):
paths taken from inside a file, one bad product in a batch, bad output locations, a half-replaced result
set on a full disk, and text inputs (non-UTF-8 lists, empty cells, non-numeric attributes, absurd dates).
"""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from cloud_tasks.errors import BatchFailures, InputError
from cloud_tasks.extract import extract_products
from cloud_tasks.layout import SstFiles

from .conftest import files_below, leftovers, resize_tmpfs, run_cli_process

STEM = "S3A_SL_1_RBT____20170315T113420_20170315T113720_20170315T135348_0179_015_237_1439_SVL_O_NR_002"
GOOD_STEMS = (
    "S3A_SL_1_RBT____20170315T120000_20170315T120300_20170315T135348_0179_015_238_1440_SVL_O_NR_002",
    "S3B_SL_1_RBT____20170315T130000_20170315T130300_20170315T145348_0179_015_239_1441_SVL_O_NR_002",
)
PAGE = 4096


def expect_error(result: subprocess.CompletedProcess, path: Path | str, problem: str) -> None:
    """Exit status 2 and exactly one line ``error: <path>: ...`` matching ``problem``; no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # log lines aside
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}: "), result.stderr
    assert re.search(problem, errors[0]), errors[0]


def snapshot(root: Path, *, outside: Path) -> dict[Path, tuple[int, int]]:
    """(size, mtime) of everything below ``root`` except below ``outside``: what a command must not touch."""
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p != outside and outside not in p.parents and not p.is_symlink()
    }


# ---------------------------------------------------------------- sst-comp: match-up tables and mask files


@pytest.fixture
def sst_inputs(tmp_path) -> tuple[Path, Path]:
    """A good match-up table (CSV) and masks folder, as test_sst makes them: (table, masks)."""
    from test_sst import make_table, write_masks

    masks = tmp_path / "masks"
    write_masks(masks)
    table = tmp_path / "matchups.csv"
    make_table().to_csv(table, index=False)
    return table, masks


def mask_of(masks: Path) -> Path:
    from test_sst import PRODUCT_A, mask_path

    return mask_path(masks, PRODUCT_A)


def damage_table(table: Path, row: int, cell: str) -> Path:
    import pandas as pd

    frame = pd.read_csv(table)
    frame["cems_path"] = frame["cems_path"].astype(object)
    frame.loc[row, "cems_path"] = cell
    bad = table.with_name("hostile.csv")
    frame.to_csv(bad, index=False)
    return bad


# case -> (cems_path cell of row 3, problem)
HOSTILE_CELLS = {
    "cems_path climbing out": ("../../../../tmp/evil", r"row 3: cems_path '../../../../tmp/evil': last component"),
    "cems_path absolute": ("/etc/passwd", r"row 3: cems_path '/etc/passwd': last component 'passwd' is not an SLSTR"),
    "cems_path of dots": ("..", r"row 3: cems_path '..': last component '..' is not an SLSTR"),
    "cems_path empty": ("", r"row 3: empty cems_path"),
}


@pytest.mark.parametrize("case", HOSTILE_CELLS)
def test_hostile_cems_path_cell(case, sst_inputs, tmp_path):
    table, masks = sst_inputs
    cell, problem = HOSTILE_CELLS[case]
    bad = damage_table(table, 3, cell)
    out = tmp_path / "sst"
    before = snapshot(tmp_path, outside=out)

    expect_error(run_cli_process("sst-comp", bad, masks, out), bad, problem)
    assert snapshot(tmp_path, outside=out) == before and files_below(out) == []


def set_attribute(path: Path, name: str, value, variable: str | None = None) -> None:
    """Set a global attribute of a mask product, or one of ``variable``."""
    with netCDF4.Dataset(path, "a") as ds:
        (ds.variables[variable] if variable else ds).setncattr(name, value)


def huge_mask(path: Path) -> None:
    """A few-KB file declaring a 20000 x 20000 mask (no chunk written), its attributes intact: refused before
    reading."""
    with netCDF4.Dataset(path) as ds:
        attrs = {key: ds.getncattr(key) for key in ds.ncattrs()}
    path.unlink()
    with netCDF4.Dataset(path, "w") as ds:
        ds.setncatts(attrs)
        ds.createDimension("rows", 20000)
        ds.createDimension("columns", 20000)
        ds.createVariable("cloud_mask", "u1", ("rows", "columns"), chunksizes=(256, 256), fill_value=255)


# case -> (damage to product A's mask file, problem)
HOSTILE_MASKS = {
    "product_name climbing out": (
        lambda p: set_attribute(p, "product_name", "../../../tmp/x"),
        r"product_name '../../../tmp/x' is not an SLSTR L1 RBT product name",
    ),
    "product_name absolute": (lambda p: set_attribute(p, "product_name", "/etc/passwd"), "product_name '/etc/passwd'"),
    "product_name not text": (
        lambda p: set_attribute(p, "product_name", [1, 2]),
        "global attribute 'product_name' is missing or not text",
    ),
    "product_name not UTF-8": (
        lambda p: set_attribute(p, "product_name", np.bytes_(b"\xff\xfe")),
        "product_name .* is not an SLSTR",
    ),
    "threshold not numeric": (
        lambda p: set_attribute(p, "threshold", "high", "cloud_mask"),
        r"cloud_mask:threshold must be one finite number, not 'high'",
    ),
    "threshold out of range": (
        lambda p: set_attribute(p, "threshold", 7.5, "cloud_mask"),
        "cloud_mask:threshold 7.5 is not a probability",
    ),
    "threshold NaN": (
        lambda p: set_attribute(p, "threshold", np.nan, "cloud_mask"),
        "cloud_mask:threshold must be one finite number, not 'nan'",
    ),
    "mask of absurd declared size": (huge_mask, r"rows x columns must be 1\.\.4096 each, not \[20000, 20000\]"),
}


@pytest.mark.parametrize("case", HOSTILE_MASKS)
def test_hostile_mask_attribute(case, sst_inputs, tmp_path):
    table, masks = sst_inputs
    damage, problem = HOSTILE_MASKS[case]
    damage(mask_of(masks))
    out = tmp_path / "sst"
    before = snapshot(tmp_path, outside=out)

    expect_error(run_cli_process("sst-comp", table, masks, out), mask_of(masks), problem)
    assert snapshot(tmp_path, outside=out) == before and files_below(out) == []


def test_sst_comp_over_an_earlier_result_on_a_full_disk(sst_inputs, tmp_path, tmpfs, survivors):
    """The disk fills after the new per-pixel table is written: the earlier result set stays whole, with no new
    table beside the old summary, nothing is left beside OUT, and once space is freed the new set replaces it."""
    table, masks = sst_inputs
    reference = tmp_path / "reference"
    assert run_cli_process("sst-comp", table, masks, reference, "--threshold", "0.7").returncode == 0
    new = SstFiles(reference)
    disk = tmpfs(16 * 2**20)
    out = disk / "sst"
    assert run_cli_process("sst-comp", table, masks, out).returncode == 0
    earlier = survivors.guard(out)
    stat = os.statvfs(disk)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    pages = -(-new.table.stat().st_size // PAGE) + (-(-new.histogram.stat().st_size // PAGE)) // 2
    resize_tmpfs(disk, used + pages * PAGE)  # room for the new table and half the new histogram

    result = run_cli_process("sst-comp", table, masks, out, "--threshold", "0.7")

    expect_error(result, SstFiles(out).histogram, f"no space left on device in {out}; .* earlier outputs kept")
    assert survivors.lost() == [] and sorted(files_below(out)) == sorted(earlier)
    assert leftovers(disk) == []
    resize_tmpfs(disk, 16 * 2**20)  # space freed
    assert run_cli_process("sst-comp", table, masks, out, "--threshold", "0.7").returncode == 0
    for path in files_below(reference):
        survivors.expect(out / path.name, like=path)
    assert survivors.lost() == [] and len(files_below(out)) == 3 and leftovers(disk) == []


# ---------------------------------------------------------------- extract: one bad product in a batch


def product_zip(folder: Path, stem: str, member: str = "xfdumanifest.xml", size: int = 2000) -> Path:
    """A small product zip whose one file member is named ``member`` (random content of ``size`` bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{stem}.SEN3/", b"")
        zf.writestr(f"{stem}.SEN3/{member}", np.random.default_rng(len(stem)).bytes(size))
    return path


@pytest.fixture
def batch_with_a_long_name(tmp_path) -> tuple[Path, list[Path]]:
    """A zip whose member name is longer than the file system allows (sorted first), then two good zips."""
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    bad = product_zip(tmp_path / "in", STEM, "S1_" + "r" * name_max + ".nc")
    return bad, [product_zip(tmp_path / "in", stem) for stem in GOOD_STEMS]


def test_member_name_too_long_fails_only_its_product(batch_with_a_long_name, tmp_path):
    bad, _ = batch_with_a_long_name
    out = tmp_path / "out"

    result = run_cli_process("extract", "--keep-going", tmp_path / "in", out)

    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "error: 1 of 3 products failed to extract:" in result.stderr
    assert re.search(rf"\n  {re.escape(str(bad))}: failed with OSError: \[Errno 36\] File name too long", result.stderr)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.SEN3" for stem in GOOD_STEMS)
    assert result.stdout.splitlines() == [str(out / f"{stem}.SEN3") for stem in GOOD_STEMS]

    # Without --keep-going: the same failure is one clear line, and nothing is left for the bad product.
    result = run_cli_process("extract", bad, tmp_path / "out2")
    expect_error(result, bad, r"failed with OSError: \[Errno 36\] File name too long")
    assert list((tmp_path / "out2").iterdir()) == []


def test_member_name_too_long_in_the_dags_batch(batch_with_a_long_name, tmp_path):
    """The DAG's chunks call extract_products(keep_going=True): the good products of the chunk are extracted."""
    bad, good = batch_with_a_long_name
    with pytest.raises(BatchFailures) as info:
        extract_products([bad, *good], tmp_path / "out", keep_going=True)
    assert info.value.done == [tmp_path / "out" / f"{stem}.SEN3" for stem in GOOD_STEMS]
    [failure] = info.value.failures
    assert isinstance(failure, InputError) and failure.path == bad and "File name too long" in failure.problem


def test_full_disk_still_stops_a_keep_going_batch(tmp_path, tmpfs):
    """A full disk is no product's fault: the batch stops at once (the next product would not fit either)."""
    big = product_zip(tmp_path / "in", STEM, size=64 * PAGE)
    small = product_zip(tmp_path / "in", GOOD_STEMS[0])
    out = tmpfs(16 * PAGE) / "extracted"

    result = run_cli_process("extract", "--keep-going", big, small, out)

    expect_error(result, out / f"{STEM}.SEN3", "no space left on device")
    assert list(out.iterdir()) == []  # the small product, which would fit, was not tried


# ---------------------------------------------------------------- bad output locations


@pytest.fixture
def read_only_folder(tmp_path) -> Path:
    """A folder no one may write into: a read-only tmpfs for root (who ignores permission bits), else mode 0555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=65536", "tmpfs", str(folder)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"root writes into a mode-0555 folder, and no read-only tmpfs can be mounted here: {mount.stderr}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def command(verb: str, out: Path, sst_inputs, tmp_path: Path) -> list:
    """The command line of ``verb`` with OUT (or ``--output``) at ``out``, on good inputs."""
    if verb == "discover --output":
        archive = tmp_path / "archive"
        product_zip(archive / "sentinel3a/data/SLSTR/L1_RBT/2017/03/15", STEM)
        return ["discover", archive, "--start", "2017-03-15", "--end", "2017-03-16", "--output", out]
    if verb == "extract":
        return ["extract", product_zip(tmp_path / "in", STEM), out]
    table, masks = sst_inputs
    return ["sst-comp", table, masks, out]


VERBS = ("discover --output", "extract", "sst-comp")


@pytest.mark.parametrize("verb", VERBS)
def test_output_is_an_existing_file(verb, sst_inputs, tmp_path):
    out = tmp_path / "taken"
    out.write_text("mine")
    argv = command(verb, out / "list.txt" if verb.startswith("discover") else out, sst_inputs, tmp_path)
    expect_error(run_cli_process(*argv), out, "output folder is an existing file, not a folder")
    assert out.read_text() == "mine"


@pytest.mark.parametrize("verb", VERBS)
def test_output_in_a_read_only_folder(verb, sst_inputs, tmp_path, read_only_folder):
    target = read_only_folder / "list.txt" if verb.startswith("discover") else read_only_folder
    argv = command(verb, target, sst_inputs, tmp_path)
    expect_error(run_cli_process(*argv), read_only_folder, "output folder is not writable")
    assert list(read_only_folder.iterdir()) == []


@pytest.mark.parametrize("verb", VERBS)
def test_output_below_a_file(verb, sst_inputs, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    out = blocker / "sub"
    argv = command(verb, out / "list.txt" if verb.startswith("discover") else out, sst_inputs, tmp_path)
    result = run_cli_process(*argv)
    expect_error(result, blocker if verb == "sst-comp" else out, "(existing file|cannot create the output folder)")
    assert blocker.read_text() == "mine"


def test_discover_output_is_a_folder(sst_inputs, tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    argv = command("discover --output", folder, sst_inputs, tmp_path)
    expect_error(run_cli_process(*argv), folder, "output file is an existing folder")
    assert list(folder.iterdir()) == []


def test_sst_comp_out_holding_other_files(sst_inputs, tmp_path):
    out = tmp_path / "sst"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    expect_error(run_cli_process(*command("sst-comp", out, sst_inputs, tmp_path)), out, "no part of an sst-comp result")
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


# ---------------------------------------------------------------- text inputs and arguments


@pytest.mark.parametrize("verb", ["discover", "extract"])
def test_file_list_not_utf8(verb, tmp_path):
    zip_path = product_zip(tmp_path / "in", STEM)
    file_list = tmp_path / "list.txt"
    file_list.write_bytes(f"{zip_path}\n".encode() + b"/data/caf\xe9.zip\n")
    argv = ["discover", "--file-list", file_list] if verb == "discover" else ["extract", file_list, tmp_path / "out"]
    expect_error(run_cli_process(*argv), file_list, r"file list is not UTF-8 text \(byte 0xe9 at offset \d+\)")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_file_list_with_a_nul(tmp_path):
    file_list = tmp_path / "list.txt"
    file_list.write_bytes(b"/data/a\x00b.zip\n")
    expect_error(run_cli_process("discover", "--file-list", file_list), file_list, "NUL character")


# case -> (--start, --end, the option named, problem)
BAD_TIMES = {
    "start in year 1": ("0001-01-01", "2017-03-16", "--start", "time '0001-01-01' outside the supported range"),
    "end in year 9999": ("2017-03-15", "9999-12-31", "--end", "time '9999-12-31' outside the supported range"),
    "offset past year 9999": ("2017-03-15", "9999-12-31T23:00-05:00", "--end", "invalid time '9999-12-31T23:00-05:00'"),
}


@pytest.mark.parametrize("case", BAD_TIMES)
def test_absurd_discover_times(case, tmp_path):
    start, end, option, problem = BAD_TIMES[case]
    expect_error(run_cli_process("discover", tmp_path, "--start", start, "--end", end), option, problem)
