"""Hostile values inside well-formed product files, bad output folders, concurrent and killed runs of convert-hdf.

Every hostile product goes through the CLI in a child process whose address space is limited to 2 GB
(``RLIMIT_AS``), in an empty working folder with an empty TMPDIR and HOME: the run must end with exit status 2
and one ``error: <file>: <problem>`` line (no traceback), within that memory, writing nothing outside OUT
and leaving the outputs already there untouched.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest
from isal import isal_zlib

from cloud_tasks.convert import convert_product, existing_output
from cloud_tasks.naming import ProductName

from . import test_bad_inputs
from .conftest import (
    CLI,
    copy_product,
    digest,
    files_below,
    leftovers,
    reaped,
    run_cli_process,
    start_cli,
    wait_until_writing,
)

MEMORY_LIMIT = 2 * 2**30  # bytes of address space for a convert-hdf child (a real product needs ~1 GB)
HUGE = 60_000  # rows and columns declared by a few-MB file


# ---------------------------------------------------------------- running the CLI confined


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_confined(scratch: Path, *argv: str | Path) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """``python -m cloud_tasks ARGV`` under ``RLIMIT_AS`` in empty working, TMPDIR and HOME folders below
    ``scratch``: (the process, the files it left in those folders, i.e. outside its OUT)."""
    folders = [scratch / name for name in ("cwd", "tmp", "home")]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(folders[1]), HOME=str(folders[2]))
    result = subprocess.run(
        [*CLI, *map(str, argv)],
        cwd=folders[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_memory,
    )
    return result, [p for folder in folders for p in folder.rglob("*")]


def error_lines(stderr: str) -> list[str]:
    """The error lines of a CLI run (its INFO log lines left aside); a traceback fails the test."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def snapshot(folder: Path) -> dict[Path, str]:
    return {path: digest(path) for path in files_below(folder)}


# ---------------------------------------------------------------- hostile files


def redeclare(path: Path, sizes: dict[str, int]) -> None:
    """Rewrite a NetCDF file with dimensions of other sizes: variables chunked and compressed, the original
    values in their corner and the rest never written, so that a few-MB file declares a huge grid."""
    original = path.rename(path.with_suffix(".orig"))
    with netCDF4.Dataset(original) as src, netCDF4.Dataset(path, "w") as dst:
        dst.setncatts({key: src.getncattr(key) for key in src.ncattrs()})
        for name, dim in src.dimensions.items():
            dst.createDimension(name, sizes.get(name, len(dim)))
        for name, var in src.variables.items():
            var.set_auto_maskandscale(False)
            attrs = {key: var.getncattr(key) for key in var.ncattrs()}
            shape = [sizes.get(dim, n) for dim, n in zip(var.dimensions, var.shape, strict=True)]
            out = dst.createVariable(
                name,
                var.dtype,
                var.dimensions,
                zlib=True,
                chunksizes=[min(max(n, 1), 1024) for n in shape],
                fill_value=attrs.pop("_FillValue", None),
            )
            out.set_auto_maskandscale(False)
            out.setncatts(attrs)
            corner = tuple(slice(0, min(a, b)) for a, b in zip(shape, var.shape, strict=True))
            if all(s.stop > 0 for s in corner):
                out[corner] = var[corner]
    original.unlink()


def deflate_bomb(path: Path, name: str, inflated: int = MEMORY_LIMIT + 2**29) -> None:
    """Replace a variable's one compressed chunk by ~3 MB of deflate stream inflating to 2.5 GB of zeros."""
    compressor, piece = isal_zlib.compressobj(1), bytes(2**26)
    stream = b"".join(compressor.compress(piece) for _ in range(inflated // len(piece))) + compressor.flush()
    with h5py.File(path, "r+") as f:
        f[name].id.write_direct_chunk((0, 0), stream)


def set_attribute(path: Path, variable: str | None, name: str, value) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        (ds if variable is None else ds[variable]).setncattr(name, value)


def set_values(path: Path, variable: str, value) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        var = ds[variable]
        var.set_auto_maskandscale(False)
        var[0, 0] = value


def set_values_1d(path: Path, variable: str, value) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        ds[variable].set_auto_maskandscale(False)
        ds[variable][0] = value


# case -> (file damaged, damage, problem expected after "error: <file>: ")
HOSTILE: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # sizes declared by a header (checked against the product's own grid before any read)
    "1 km grid of 60000 x 60000": (
        "flags_in.nc",
        lambda f: redeclare(f, {"rows": HUGE, "columns": HUGE}),
        rf"1 km grid of {HUGE} x {HUGE} pixels: expected 1\.\.4800 rows, 1\.\.3000 columns",
    ),
    "BT of 60000 x 60000": (
        "S7_BT_in.nc",
        lambda f: redeclare(f, {"rows": HUGE, "columns": HUGE}),
        rf"variable 'S7_BT_in' has shape \({HUGE}, {HUGE}\), expected \(\d+, \d+\)",
    ),
    "radiance of 60000 x 60000": (
        "S1_radiance_an.nc",
        lambda f: redeclare(f, {"rows": HUGE, "columns": HUGE}),
        rf"variable 'S1_radiance_an' has shape \({HUGE}, {HUGE}\), expected \(\d+, \d+\)",
    ),
    "quality file of 1.5e9 detectors": (
        "S2_quality_an.nc",
        lambda f: redeclare(f, {"detectors": 1_500_000_000}),
        r"variable 'S2_solar_irradiance_an' has shape \(1500000000,\), expected \(1\.\.64,\)",
    ),
    "geometry of 3e7 rows": (
        "geometry_tn.nc",
        lambda f: redeclare(f, {"rows": 30_000_000}),
        r"tie-point grid of 30000000 x \d+ points: expected 2\.\.\d+ rows",
    ),
    "tie-point grid of zero columns": (
        "geometry_tn.nc",
        lambda f: redeclare(f, {"columns": 0}),
        r"tie-point grid of \d+ x 0 points",
    ),
    "geolocation of 60000 x 60000": (
        "geodetic_in.nc",
        lambda f: redeclare(f, {"rows": HUGE, "columns": HUGE}),
        rf"variable 'latitude_in' has shape \({HUGE}, {HUGE}\), expected \(\d+, \d+\)",
    ),
    "chunk inflating to 2.5 GB": (
        "S9_BT_in.nc",
        lambda f: deflate_bomb(f, "S9_BT_in"),
        r"variable 'S9_BT_in' inflates past the \d+ bytes declared",
    ),
    # absurd attribute values
    "non-numeric scale_factor": (
        "S8_BT_in.nc",
        lambda f: set_attribute(f, "S8_BT_in", "scale_factor", "0.01 K"),
        r"attribute scale_factor of variable S8_BT_in: '0\.01 K' is not a number",
    ),
    "NaN add_offset": (
        "S3_radiance_an.nc",
        lambda f: set_attribute(f, "S3_radiance_an", "add_offset", np.nan),
        r"attribute add_offset of variable S3_radiance_an: nan is not within \[",
    ),
    "scale_factor of 1e300": (
        "S4_radiance_an.nc",
        lambda f: set_attribute(f, "S4_radiance_an", "scale_factor", 1e300),
        r"attribute scale_factor of variable S4_radiance_an: 1e\+300 is not within \[",
    ),
    "non-numeric track_offset": (
        "geometry_tn.nc",
        lambda f: set_attribute(f, None, "track_offset", "nadir"),
        r"global attribute track_offset: 'nadir' is not a number",
    ),
    "resolution of [ 0 1000 ]": (
        "geometry_tn.nc",
        lambda f: set_attribute(f, None, "resolution", "[ 0 1000 ]"),
        r"global attribute resolution: 0\.0 is not within \[1, 100000\]",
    ),
    "resolution of one value": (
        "flags_in.nc",
        lambda f: set_attribute(f, None, "resolution", "[ 1000 ]"),
        r"global attribute resolution: '\[ 1000 \]' is not '\[ across along \]'",
    ),
    "flag mask 256 on uint8": (
        "flags_in.nc",
        lambda f: set_attribute(f, "bayes_in", "flag_masks", np.array([1, 2, 4, 8, 16, 32, 64, 256], np.uint16)),
        r"attribute flag_masks of variable bayes_in: \[256\] do not fit uint8",
    ),
    "non-string flag_meanings": (
        "flags_in.nc",
        lambda f: set_attribute(f, "confidence_in", "flag_meanings", np.arange(16, dtype=np.int32)),
        r"attribute flag_meanings of variable confidence_in: array\(\[.* is not text",
    ),
    "non-string start_time": (
        "flags_in.nc",
        lambda f: set_attribute(f, None, "start_time", np.float64(1.5e9)),
        r"global attribute start_time: .*1500000000\.0.* is not text",
    ),
    "infinite solar irradiance": (
        "S5_quality_an.nc",
        lambda f: set_values_1d(f, "S5_solar_irradiance_an", np.inf),
        r"S5_solar_irradiance_an holds no valid irradiance",
    ),
    "latitude of 2000 degrees": (
        "geodetic_in.nc",
        lambda f: set_values(f, "latitude_in", 2_000_000_000),  # micro-degrees
        r"latitude_in holds 1 value\(s\) outside \[-90, 90\] degrees",
    ),
    "longitude scale_factor as text": (
        "geodetic_in.nc",
        lambda f: set_attribute(f, "longitude_in", "scale_factor", "1e-6 degrees"),
        r"attribute scale_factor of variable longitude_in: '1e-6 degrees' is not a number",
    ),
    "latitude add_offset of 1e9": (
        "geodetic_in.nc",
        lambda f: set_attribute(f, "latitude_in", "add_offset", 1e9),
        r"attribute add_offset of variable latitude_in: 1000000000\.0 is not within \[",
    ),
    "solar zenith angle of 1e30": (
        "geometry_tn.nc",
        lambda f: set_values(f, "solar_zenith_tn", 1e30),
        r"solar_zenith_tn holds 1 value\(s\) outside \[0, 180\] degrees",
    ),
}


# ---------------------------------------------------------------- fixtures

# a day product of the sample, and an output folder already holding another product: as for the bad inputs
day_source, out_with_a_product = test_bad_inputs.day_source, test_bad_inputs.out_with_a_product


def renamed_link(product: Path, folder: Path, frame: int) -> Path:
    """A symbolic link to ``product`` under another valid product name (another frame number)."""
    name = ProductName.parse(product)
    stem = name.stem.replace(f"_{name.frame}_", f"_{frame:04d}_", 1)
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / f"{stem}.SEN3"
    link.symlink_to(product.resolve(), target_is_directory=True)
    return link


# ---------------------------------------------------------------- hostile products, one at a time


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_product_is_refused_within_bounded_memory(case, day_source, out_with_a_product, tmp_path, survivors):
    name, damage, problem = HOSTILE[case]
    out, earlier = out_with_a_product
    survivors.guard(out)
    product = copy_product(day_source, tmp_path / "bad")
    damage(product / name)
    assert (product / name).stat().st_size < 16 * 2**20, "a few-MB file"
    inputs = snapshot(product)

    result, outside = run_confined(tmp_path / "scratch", "convert-hdf", product, out)

    assert result.returncode == 2, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: {product / name}: "), result.stderr
    assert re.search(problem, errors[0]), errors[0]
    assert outside == [] and snapshot(product) == inputs
    assert files_below(out) == [earlier] and leftovers(out) == []
    assert survivors.lost() == []


def test_a_real_product_converts_within_the_memory_limit(real_product, tmp_path):
    """The control of the cases above: the 2 GB limit is no failure by itself (the real 1198 x 1500 product)."""
    result, outside = run_confined(tmp_path / "scratch", "convert-hdf", real_product, tmp_path / "hdf")
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [] and outside == []
    assert len(files_below(tmp_path / "hdf")) == 1


def test_output_location_taken_by_a_folder_fails_that_product_in_one_line(sample_products, tmp_path):
    """A folder squatting a product's output name: an OSError that is no error of this package
    (IsADirectoryError), reported as that product's failure, never a traceback."""
    product = sample_products[1]
    split = convert_product(product, tmp_path / "reference").parent.name
    out = tmp_path / "hdf"
    squatter = out / split / f"{ProductName.parse(product).stem}.h5"
    (squatter / "inside").mkdir(parents=True)
    assert existing_output(out, ProductName.parse(product).stem) is None, "a folder is no converted product"

    result, outside = run_confined(tmp_path / "scratch", "convert-hdf", product, out)

    assert result.returncode == 2
    [error] = error_lines(result.stderr)
    assert error.startswith(f"error: {product}: failed with IsADirectoryError: ") and str(squatter) in error
    assert outside == [] and files_below(out) == [] and leftovers(out) == []


# ---------------------------------------------------------------- a batch: the good products still converted


@pytest.mark.parametrize("workers", [1, 2])
def test_keep_going_converts_the_good_products_around_hostile_ones(
    workers, sample_products, day_source, tmp_path, survivors
):
    good = [p for p in sample_products if p != day_source][:3]
    references = [convert_product(p, tmp_path / "reference") for p in good]
    hostile = copy_product(day_source, tmp_path / "hostile")
    redeclare(hostile / "S2_quality_an.nc", {"detectors": 1_500_000_000})
    squatted = good[0]  # its output name taken by a folder: an IsADirectoryError on that product
    squatter = tmp_path / "hdf" / references[0].relative_to(tmp_path / "reference")
    squatter.mkdir(parents=True)

    result, outside = run_confined(
        tmp_path / "scratch", "convert-hdf", "--keep-going", f"--workers={workers}", hostile, *good, tmp_path / "hdf"
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error: 2 of 4 products failed to convert:" in result.stderr
    assert f"  {hostile / 'S2_quality_an.nc'}: variable 'S2_solar_irradiance_an' has shape" in result.stderr
    assert f"  {squatted}: failed with IsADirectoryError" in result.stderr
    for reference in references[1:]:
        survivors.expect(tmp_path / "hdf" / reference.relative_to(tmp_path / "reference"), like=reference)
    assert survivors.lost() == [] and outside == [] and leftovers(tmp_path / "hdf") == []
    assert len(files_below(tmp_path / "hdf")) == 2


# ---------------------------------------------------------------- bad output folders


@pytest.fixture
def read_only_folder(tmp_path) -> Path:
    """A read-only tmpfs mounted on a new folder (root writes through mode bits, not through a read-only mount)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here (root needed): {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


BAD_OUT = {
    "an existing file": "output folder is an existing file, not a folder",
    "below a file": "cannot create the output folder: Not a directory",
    "a read-only folder": "output folder is not writable",
    "below a read-only folder": "cannot create the output folder: Read-only file system",
}


@pytest.mark.parametrize("where", BAD_OUT)
def test_bad_output_folder_is_one_clear_error(where, sample_products, tmp_path, request):
    (tmp_path / "file").write_text("not a folder")
    base = request.getfixturevalue("read_only_folder") if "read-only" in where else tmp_path / "file"
    out = base if where in ("an existing file", "a read-only folder") else base / "hdf"

    result, outside = run_confined(tmp_path / "scratch", "convert-hdf", sample_products[0], out)

    assert result.returncode == 2
    assert error_lines(result.stderr) == [f"error: {out}: {BAD_OUT[where]}"] == result.stderr.splitlines()
    assert outside == [] and (tmp_path / "file").read_text() == "not a folder"
    assert not out.is_dir() or files_below(out) == []


# ---------------------------------------------------------------- concurrent runs, killed runs


def test_concurrent_forced_runs_with_different_day_thresholds_leave_one_split(real_product, tmp_path):
    """Run A (threshold 0.5: day) is stopped mid-write while run B (threshold 0.9: night) converts the same
    product; A then resumes and commits last: the product ends in A's split only, B's file removed (before,
    both runs had looked for an earlier output before writing, and the product stayed in both splits)."""
    out = tmp_path / "hdf"
    stem = ProductName.parse(real_product).stem
    with reaped(start_cli("convert-hdf", "--force", "--day-threshold=0.5", real_product, out)) as (first,):
        wait_until_writing(first, out)
        first.send_signal(signal.SIGSTOP)
        second = run_cli_process("convert-hdf", "--force", "--day-threshold=0.9", real_product, out)
        assert second.returncode == 0, second.stderr
        assert [p.relative_to(out) for p in files_below(out) if not p.name.startswith(".")] == [
            Path("night", f"{stem}.h5")
        ]
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0
    assert files_below(out) == [out / "day" / f"{stem}.h5"] and leftovers(out) == []


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process now."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        table[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> set[int]:
    table, found, frontier = process_table(), set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def test_killed_parent_takes_its_fork_server_and_workers_along(real_product, tmp_path):
    """SIGKILL of ``convert-hdf --workers 2`` (mid-batch): the fork server and both workers are gone soon after."""
    products = [renamed_link(real_product, tmp_path / "links", 2000 + i) for i in range(8)]
    with reaped(start_cli("convert-hdf", "--workers", "2", *products, tmp_path / "hdf")) as (parent,):
        wait_until_writing(parent, tmp_path / "hdf")  # a worker is converting: both were started
        helpers = descendants(parent.pid)  # the fork server, its two workers, the resource tracker
        assert len(helpers) >= 3, helpers
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while alive(helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = alive(helpers)
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == set(), f"still running after their parent was killed: {sorted(left)}"
