"""Bad inputs through the CLI: exit status 2, ``error: <file>: <problem>`` on stderr, nothing left behind
for the bad input, and the outputs already in the output folder untouched.

The faults already covered elsewhere (bad zips, a missing NetCDF file or variable, a wrong dtype...)
are listed in ``reused.py``; this module adds the missing ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from cloud_tasks.cli import main
from cloud_tasks.convert import convert_product

from .conftest import copy_product, files_below, leftovers

# ---------------------------------------------------------------- damaging a product


def rewrite_rows(path: Path, rows: int) -> None:
    """Rewrite a NetCDF file with ``rows`` rows (its variables cut or zero-padded): a variable of the wrong shape."""
    original = path.rename(path.with_suffix(".orig"))
    with netCDF4.Dataset(original) as src, netCDF4.Dataset(path, "w") as dst:
        dst.setncatts({key: src.getncattr(key) for key in src.ncattrs()})
        for name, dim in src.dimensions.items():
            dst.createDimension(name, rows if name == "rows" else len(dim))
        for name, var in src.variables.items():
            var.set_auto_maskandscale(False)
            attrs = {key: var.getncattr(key) for key in var.ncattrs()}
            out = dst.createVariable(name, var.dtype, var.dimensions, fill_value=attrs.pop("_FillValue", None))
            out.set_auto_maskandscale(False)
            out.setncatts(attrs)
            data = np.zeros(out.shape, var.dtype)
            keep = min(rows, var.shape[0]) if var.dimensions[:1] == ("rows",) else None
            data[:keep] = var[:keep]
            out[:] = data
    original.unlink()


def fill_everywhere(path: Path, name: str) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        var = ds[name]
        var.set_auto_maskandscale(False)
        var[:] = np.full(var.shape, var.getncattr("_FillValue"), var.dtype)


def corrupt_chunk(path: Path, name: str) -> None:
    """Flip 64 bytes inside a variable's compressed chunk (bit rot: the file keeps its size and structure)."""
    with h5py.File(path) as f:
        chunk = f[name].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    middle = chunk.byte_offset + chunk.size // 3
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def set_global(path: Path, name: str, value) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        ds.setncattr(name, value)


def rows_of(product: Path) -> int:
    with netCDF4.Dataset(product / "flags_in.nc") as ds:
        return len(ds.dimensions["rows"])


# case -> (file damaged, damage, problem expected after "error: <file>: ")
BAD_PRODUCTS: dict[str, tuple[str, Callable[[Path, Path], None], str]] = {
    "BT of the wrong shape": (
        "S8_BT_in.nc",
        lambda p, f: rewrite_rows(f, rows_of(p) - 2),
        r"variable 'S8_BT_in' has shape \(\d+, \d+\), expected \(\d+, \d+\)",
    ),
    "radiance of the wrong shape": (
        "S5_radiance_an.nc",
        lambda p, f: rewrite_rows(f, 2 * rows_of(p) + 2),
        r"variable 'S5_radiance_an' has shape \(\d+, \d+\), expected \(\d+, \d+\)",
    ),
    "radiance all fill": (
        "S2_radiance_an.nc",
        lambda p, f: fill_everywhere(f, "S2_radiance_an"),
        "S2_radiance_an holds only fill values in a day product",
    ),
    "geolocation all fill": (
        "geodetic_in.nc",
        lambda p, f: fill_everywhere(f, "longitude_in"),
        "longitude_in holds only fill values",
    ),
    "geolocation of the wrong shape": (
        "geodetic_in.nc",
        lambda p, f: rewrite_rows(f, rows_of(p) + 3),
        r"variable 'latitude_in' has shape \(\d+, \d+\), expected \(\d+, \d+\)",
    ),
    "BT all fill": ("S9_BT_in.nc", lambda p, f: fill_everywhere(f, "S9_BT_in"), "S9_BT_in holds only fill values"),
    "NetCDF truncated mid-file": ("S1_radiance_an.nc", lambda p, f: truncate(f), r"not a readable NetCDF file \("),
    "NetCDF empty": ("flags_in.nc", lambda p, f: f.write_bytes(b""), r"not a readable NetCDF file \("),
    "NetCDF data chunk corrupt": (
        "S7_BT_in.nc",
        lambda p, f: corrupt_chunk(f, "S7_BT_in"),
        r"variable 'S7_BT_in' cannot be read \(corrupt data: .*[Ii]ncorrect (data check|checksum)",
    ),
    "radiance grid not nested in the 1 km grid": (
        "S4_radiance_an.nc",
        lambda p, f: set_global(f, "track_offset", 999),
        r"track_offset 999(\.0)? is not twice the 1 km grid's .* does not nest",
    ),
}


@pytest.fixture(scope="module")
def day_source(sample_products) -> Path:
    """A day product of the sample (reflectance faults only show in day products)."""
    from test_convert import day_product

    return day_product(sample_products)


@pytest.fixture
def out_with_a_product(sample_products, day_source, tmp_path) -> tuple[Path, Path]:
    """An output folder already holding another product's HDF5 file: (folder, that file)."""
    other = next(p for p in sample_products if p != day_source)
    out = tmp_path / "hdf"
    return out, convert_product(other, out)


def run_cli(capsys, *argv: str | Path) -> tuple[int, str]:
    """``python -m cloud_tasks ARGV`` in this process: (exit status, stderr)."""
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("case", BAD_PRODUCTS)
def test_bad_product_is_refused(case, day_source, out_with_a_product, tmp_path, capsys, survivors):
    name, damage, problem = BAD_PRODUCTS[case]
    out, earlier = out_with_a_product
    survivors.guard(out)
    product = copy_product(day_source, tmp_path / "bad")
    damage(product, product / name)

    status, stderr = run_cli(capsys, "convert-hdf", product, out)

    assert status == 2
    assert stderr.startswith(f"error: {product / name}: ") and len(stderr.splitlines()) == 1, stderr
    assert re.search(problem, stderr), stderr
    assert files_below(out) == [earlier] and leftovers(out) == []  # nothing for the bad product
    assert survivors.lost() == []


def test_product_name_that_does_not_parse(day_source, out_with_a_product, tmp_path, capsys, survivors):
    out, earlier = out_with_a_product
    survivors.guard(out)
    product = copy_product(day_source, tmp_path).rename(tmp_path / "S3A_SL_1_RBT____yesterday.SEN3")

    status, stderr = run_cli(capsys, "convert-hdf", product, out)

    assert status == 2
    assert stderr == f"error: {product}: not an SLSTR L1 RBT product name (MMM_SL_1_RBT____<start>_<stop>_...)\n"
    assert files_below(out) == [earlier] and leftovers(out) == []
    assert survivors.lost() == []


def test_bad_product_among_good_ones_in_worker_processes(sample_products, day_source, tmp_path, capsys, survivors):
    """--workers 2: the bad product's error comes back from its worker process (it used to break the whole pool
    with BrokenProcessPool, naming neither file nor problem, because InputError could not be unpickled)."""
    bad = copy_product(day_source, tmp_path / "bad")
    (bad / "S3_quality_an.nc").unlink()
    good = [p for p in sample_products if p != day_source][:2]
    references = [convert_product(p, tmp_path / "reference") for p in good]

    status, stderr = run_cli(capsys, "convert-hdf", "--workers", "2", "--keep-going", bad, *good, tmp_path / "out")

    assert status == 2
    assert f"{bad / 'S3_quality_an.nc'}: missing from the product" in stderr and "1 of 3 products failed" in stderr
    for reference in references:
        survivors.expect(tmp_path / "out" / reference.relative_to(tmp_path / "reference"), like=reference)
    assert survivors.lost() == []
    assert len(files_below(tmp_path / "out")) == 2 and leftovers(tmp_path / "out") == []


# ---------------------------------------------------------------- match-up tables

# case -> (damage to the table, problem expected)
BAD_TABLES: dict[str, tuple[Callable, str]] = {
    "match-up table missing columns": (lambda t: t.drop(columns=["ISST", "x_cems"]), "lacks required column"),
    "match-up table with no row left after filtering": (
        lambda t: t.assign(quality_level=3),
        r"no match-up left after filter 'quality' \(quality_level == 5\)",
    ),
    "match-up table of headers only": (lambda t: t.iloc[:0], "match-up table holds no rows"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_bad_matchup_table_keeps_the_previous_comparison(case, tmp_path, capsys, survivors):
    from test_sst import make_table, write_masks

    damage, problem = BAD_TABLES[case]
    masks, out = tmp_path / "masks", tmp_path / "sst"
    write_masks(masks)
    make_table().to_csv(tmp_path / "good.csv", index=False)
    assert run_cli(capsys, "sst-comp", tmp_path / "good.csv", masks, out)[0] == 0
    survivors.guard(out)  # the comparison made earlier with a good table
    bad = tmp_path / "bad.csv"
    damage(make_table()).to_csv(bad, index=False)

    status, stderr = run_cli(capsys, "sst-comp", bad, masks, out)

    assert status == 2 and stderr.startswith(f"error: {bad}: ") and re.search(problem, stderr), stderr
    assert survivors.lost() == [] and len(files_below(out)) == 3 and leftovers(out) == []


# ---------------------------------------------------------------- models

BAD_MODELS: dict[str, Callable[[Path], bytes]] = {
    "model file of text": lambda model: b"not a model",
    "model file truncated": lambda model: model.read_bytes()[: model.stat().st_size // 2],
    "model file empty": lambda model: b"",
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_model_file_that_is_not_a_model(case, untrained_model, tmp_path, capsys):
    from ml_data import write_product

    fake = tmp_path / "model.keras"
    fake.write_bytes(BAD_MODELS[case](untrained_model))
    product = write_product(tmp_path / "hdf", 0, shape=(64, 64))

    status, stderr = run_cli(capsys, "inference", fake, product, tmp_path / "masks")

    assert status == 2 and stderr.startswith(f"error: {fake}: not a Keras model file: "), stderr
    assert not (tmp_path / "masks").exists()
