"""convert-hdf on the real product (completed) and on generated products: values, flags, errors, re-runs."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest
from products import REAL_PRODUCT, writable_copy

from cloud_tasks.convert import convert_product, convert_products
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.hdf import read_converted


def raw_variable(path: Path, name: str) -> tuple[np.ndarray, dict]:
    """A variable's stored integers and attributes, read independently of the code under test."""
    with netCDF4.Dataset(path) as ds:
        var = ds[name]
        var.set_auto_maskandscale(False)
        return var[:], {key: var.getncattr(key) for key in var.ncattrs()}


def global_attrs(path: Path) -> dict:
    with netCDF4.Dataset(path) as ds:
        return {key: ds.getncattr(key) for key in ds.ncattrs()}


def flag_bit(attrs: dict, meaning: str) -> int:
    return int(attrs["flag_masks"][attrs["flag_meanings"].split().index(meaning)])


@pytest.fixture(scope="module")
def real_converted(real_product, tmp_path_factory) -> Path:
    return convert_product(real_product, tmp_path_factory.mktemp("real-hdf"))


def test_real_product_brightness_temperatures_are_raw_times_scale_plus_offset(real_product, real_converted):
    converted = read_converted(real_converted)
    for i, band in enumerate((7, 8, 9)):
        raw, attrs = raw_variable(real_product / f"S{band}_BT_in.nc", f"S{band}_BT_in")
        fill = raw == attrs["_FillValue"]
        expected = raw.astype(np.float64) * attrs["scale_factor"] + attrs["add_offset"]
        assert fill.any(), "the real product has fill pixels in its BTs"
        assert np.isnan(converted.bts[..., i][fill]).all()
        np.testing.assert_allclose(converted.bts[..., i][~fill], expected[~fill], rtol=1e-6)


def test_real_product_grid_split_and_attributes(real_product, real_converted):
    converted = read_converted(real_converted)
    assert converted.refs.shape == (1198, 1500, 6)
    assert converted.attrs["grid_shape"] == [1198, 1500]
    assert converted.attrs["product_name"] == real_product.name.removesuffix(".SEN3")
    assert converted.attrs["mission"] == "S3A"
    assert converted.attrs["baseline"] == "002"
    assert converted.attrs["sensing_start"] == "2017-03-15T11:34:20.831396Z"
    assert converted.attrs["day_fraction"] == pytest.approx(0.83, abs=0.01)
    assert converted.attrs["split"] == "day" and real_converted.parent.name == "day"


def test_real_product_flags_decode_by_meaning_and_bayes_255_is_not_masked(real_product, real_converted):
    confidence, confidence_attrs = raw_variable(real_product / "flags_in.nc", "confidence_in")
    bayes_raw, _ = raw_variable(real_product / "flags_in.nc", "bayes_in")
    assert (bayes_raw == 255).all()
    with h5py.File(real_converted) as f:
        summary = f["summary_cloud"][()]
        bayes = f["bayes"][()]
        assert (f["flags/bayes_in"][()] == 255).all()
        assert f["flags/confidence_in"].attrs["flag_meanings"] == confidence_attrs["flag_meanings"]
        degenerate = list(f.attrs["degenerate_labels"])
    expected_summary = (confidence & flag_bit(confidence_attrs, "summary_cloud")) != 0
    np.testing.assert_array_equal(summary.astype(bool), expected_summary)
    assert 0 < expected_summary.mean() < 1
    assert (bayes == 1).all(), "255 everywhere means every cloud bit set, not a masked value"
    assert degenerate == ["bayes"]


def test_degenerate_labels_are_warned_about(real_product, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cloud_tasks.convert"):
        convert_product(real_product, tmp_path)
    assert any("bayes" in r.getMessage() and "one value everywhere" in r.getMessage() for r in caplog.records)


def test_sza_equals_tie_points_at_tie_point_columns(real_product, real_converted):
    tie, _ = raw_variable(real_product / "geometry_tn.nc", "solar_zenith_tn")
    image_attrs = global_attrs(real_product / "flags_in.nc")
    tie_attrs = global_attrs(real_product / "geometry_tn.nc")
    with h5py.File(real_converted) as f:
        sza = f["sza"][()]
    # columns 16 apart in the 1 km grid are one tie-point column apart (16 km vs 1 km)
    columns = np.arange(image_attrs["track_offset"] % 16, sza.shape[1], 16)
    tie_columns = (columns - image_attrs["track_offset"]) // 16 + tie_attrs["track_offset"]
    assert len(columns) > 50
    np.testing.assert_array_equal(sza[:, columns], tie[:, tie_columns].astype(np.float32))
    # every row is its own tie-point row (the reference mapped them all to the last one)
    assert not np.allclose(sza[0], sza[-1], atol=1e-3)


def independent_reflectance(product: Path, band: int, row: int, column: int) -> float:
    """pi * L / (E0 * cos SZA) at one 1 km pixel, from the raw files."""
    raw, attrs = raw_variable(product / f"S{band}_radiance_an.nc", f"S{band}_radiance_an")
    block = raw[2 * row : 2 * row + 2, 2 * column : 2 * column + 2].astype(np.float64)
    assert (block != attrs["_FillValue"]).all()
    radiance = (block * attrs["scale_factor"] + attrs["add_offset"]).mean()
    irradiance, _ = raw_variable(product / f"S{band}_quality_an.nc", f"S{band}_solar_irradiance_an")
    tie, _ = raw_variable(product / "geometry_tn.nc", "solar_zenith_tn")
    image_offset = global_attrs(product / "flags_in.nc")["track_offset"]
    tie_offset = global_attrs(product / "geometry_tn.nc")["track_offset"]
    x = (column - image_offset) / 16 + tie_offset
    x0 = math.floor(x)
    sza = tie[row, x0] + (x - x0) * (tie[row, x0 + 1] - tie[row, x0])
    return math.pi * radiance / (irradiance[0] * math.cos(math.radians(sza)))


@pytest.mark.parametrize("band", [1, 4, 6])
def test_reflectance_matches_independent_computation(real_product, real_converted, band):
    converted = read_converted(real_converted)
    with h5py.File(real_converted) as f:
        sza = f["sza"][()]
    sunlit = np.argwhere(sza < 85)
    assert len(sunlit) > 1000
    for row, column in sunlit[:: len(sunlit) // 7][:7]:
        expected = independent_reflectance(real_product, band, row, column)
        assert converted.refs[row, column, band - 1] == pytest.approx(expected, rel=1e-5)


def test_reflectance_is_nan_without_sunlight(real_converted):
    converted = read_converted(real_converted)
    with h5py.File(real_converted) as f:
        sza = f["sza"][()]
    dark = ~(sza < 90)
    assert dark.any() and (~dark).any()
    assert np.isnan(converted.refs[dark]).all()


def geodetic_in(product: Path) -> tuple[np.ndarray, np.ndarray]:
    """latitude_in, longitude_in as netCDF4 decodes them (its own scale, offset and fill; NaN at fill)."""
    with netCDF4.Dataset(product / "geodetic_in.nc") as ds:
        return tuple(np.ma.filled(ds[f"{n}_in"][...].astype(np.float64), np.nan) for n in ("latitude", "longitude"))


def assert_geolocation_is_geodetic_in(product: Path, converted_path: Path) -> None:
    converted = read_converted(converted_path, labels=(), geolocation=True)
    latitude, longitude = geodetic_in(product)
    assert converted.latitude.dtype == converted.longitude.dtype == np.float64
    assert np.array_equal(converted.latitude, latitude, equal_nan=True)
    assert np.array_equal(converted.longitude, longitude, equal_nan=True)
    with h5py.File(converted_path) as f:
        assert (f["latitude"].attrs["units"], f["longitude"].attrs["units"]) == ("degrees_north", "degrees_east")


def test_real_product_latitude_longitude_are_its_geodetic_in(real_product, real_converted):
    assert_geolocation_is_geodetic_in(real_product, real_converted)
    converted = read_converted(real_converted, labels=(), geolocation=True)
    assert converted.latitude.shape == (1198, 1500) and np.nanmax(converted.latitude) > 88  # the frame nears the pole
    assert read_converted(real_converted).latitude is None, "read only when asked for (training does not)"


def test_fill_in_geodetic_in_is_nan(sample_products, tmp_path):
    product = broken_copy(sample_products[0], tmp_path)
    with netCDF4.Dataset(product / "geodetic_in.nc", "a") as ds:
        var = ds["longitude_in"]
        var.set_auto_maskandscale(False)
        var[:5, :7] = var.getncattr("_FillValue")
    path = convert_product(product, tmp_path / "out")
    assert_geolocation_is_geodetic_in(product, path)
    longitude = read_converted(path, labels=(), geolocation=True).longitude
    assert np.isnan(longitude[:5, :7]).all() and np.isfinite(longitude).sum() == longitude.size - 35


def test_a_product_without_geodetic_in_is_refused_naming_it(tmp_path):
    """The real partial product lacks it until completed (``real_product`` is the completed one)."""
    assert not (REAL_PRODUCT / "geodetic_in.nc").exists()
    with pytest.raises(InputError, match=rf"^{REAL_PRODUCT / 'geodetic_in.nc'}: missing from the product$"):
        convert_product(REAL_PRODUCT, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_sample_products_split_into_day_and_night(sample_products, tmp_path):
    paths = convert_products(sample_products, tmp_path)
    assert len(paths) == len(sample_products)
    splits = {p.parent.name for p in paths}
    assert splits == {"day", "night"}
    for path in paths:
        converted = read_converted(path)
        if converted.attrs["split"] == "night":
            assert np.isnan(converted.refs).all()
        else:
            assert np.isfinite(converted.refs).mean() > 0.5
            assert converted.attrs["degenerate_labels"] == []
        assert np.isfinite(converted.bts).mean() > 0.99
    for product in sample_products:
        stem = product.name.removesuffix(".SEN3")
        assert_geolocation_is_geodetic_in(product, next(p for p in paths if p.stem == stem))


def test_rerun_does_no_work_and_force_gives_identical_bytes(sample_products, tmp_path):
    first = convert_products(sample_products[:2], tmp_path)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in first}
    assert convert_products(sample_products[:2], tmp_path) == first
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in first} == before
    assert convert_products(sample_products[:2], tmp_path, force=True) == first
    for path in first:
        assert path.stat().st_ino != before[path][1], "forced run rewrote the file"
        assert path.read_bytes() == before[path][2], "conversion is deterministic"


def test_two_workers_give_the_same_files(sample_products, tmp_path):
    one = convert_products(sample_products, tmp_path / "one")
    two = convert_products(sample_products, tmp_path / "two", workers=2)
    assert [p.relative_to(tmp_path / "one") for p in one] == [p.relative_to(tmp_path / "two") for p in two]
    for a, b in zip(one, two, strict=True):
        assert a.read_bytes() == b.read_bytes()


def assert_no_output(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert leftovers == []


def broken_copy(product: Path, tmp_path: Path) -> Path:
    return writable_copy(product, tmp_path / product.name)


def test_missing_netcdf_file_names_the_file(sample_products, tmp_path):
    product = broken_copy(sample_products[0], tmp_path)
    (product / "S3_radiance_an.nc").unlink()
    with pytest.raises(InputError, match=r"S3_radiance_an\.nc: missing from the product"):
        convert_product(product, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def rewrite_without(path: Path, drop: str, retype: dict | None = None) -> None:
    """Rewrite a NetCDF file without one variable (or with a variable of another dtype)."""
    retype = retype or {}
    copy = path.with_suffix(".orig")
    path.rename(copy)
    with netCDF4.Dataset(copy) as src, netCDF4.Dataset(path, "w") as dst:
        dst.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
        for name, dim in src.dimensions.items():
            dst.createDimension(name, len(dim))
        for name, var in src.variables.items():
            if name == drop:
                continue
            var.set_auto_maskandscale(False)
            dtype = retype.get(name, var.dtype)
            out = dst.createVariable(name, dtype, var.dimensions)
            out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
            out[:] = var[:].astype(dtype)
    copy.unlink()


def test_missing_variable_names_file_and_variable(sample_products, tmp_path):
    product = broken_copy(sample_products[0], tmp_path)
    rewrite_without(product / "flags_in.nc", drop="bayes_in")
    with pytest.raises(InputError, match=r"flags_in\.nc: has no variable 'bayes_in'"):
        convert_product(product, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_wrong_dtype_is_refused(sample_products, tmp_path):
    product = broken_copy(sample_products[0], tmp_path)
    rewrite_without(product / "S8_BT_in.nc", drop="", retype={"S8_BT_in": "float32"})
    with pytest.raises(InputError, match=r"S8_BT_in\.nc: variable 'S8_BT_in' has dtype float32, expected int16"):
        convert_product(product, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_truncated_netcdf_is_refused(sample_products, tmp_path):
    product = broken_copy(sample_products[0], tmp_path)
    path = product / "S1_radiance_an.nc"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"S1_radiance_an\.nc"):
        convert_product(product, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_unparsable_product_name_is_refused(sample_products, tmp_path):
    product = shutil.copytree(sample_products[0], tmp_path / "not_a_product.SEN3")
    with pytest.raises(InputError, match="not an SLSTR L1 RBT product name"):
        convert_product(product, tmp_path / "out")


def day_product(products: list[Path]) -> Path:
    for product in products:
        confidence, attrs = raw_variable(product / "flags_in.nc", "confidence_in")
        if ((confidence & flag_bit(attrs, "day")) != 0).mean() > 0.9:
            return product
    raise AssertionError("the sample has no day product")


def test_all_fill_radiance_in_a_day_product_is_refused(sample_products, tmp_path):
    product = broken_copy(day_product(sample_products), tmp_path)
    with netCDF4.Dataset(product / "S2_radiance_an.nc", "a") as ds:
        var = ds["S2_radiance_an"]
        var.set_auto_maskandscale(False)
        var[:] = np.full(var.shape, var.getncattr("_FillValue"), var.dtype)
    with pytest.raises(InputError, match=r"S2_radiance_an\.nc: S2_radiance_an holds only fill values"):
        convert_product(product, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_keep_going_converts_the_good_products(sample_products, tmp_path):
    bad = broken_copy(sample_products[0], tmp_path / "bad")
    (bad / "geometry_tn.nc").unlink()
    with pytest.raises(CloudTasksError, match=r"(?s)1 of 3 products failed.*geometry_tn\.nc: missing"):
        convert_products([bad, *sample_products[1:3]], tmp_path / "out", keep_going=True)
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.h5"))
    assert written == sorted(p.name.replace(".SEN3", ".h5") for p in sample_products[1:3])
    assert not [p for p in (tmp_path / "out").rglob(".*")], "no temporary files left"
    assert os.listdir(tmp_path / "out")
