"""make-sample --complete: the missing files of a partial product, consistent with the files it has."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from test_sample import REAL, needs_real, read, reflectance_1km, sza_on

from cloud_tasks import sample
from cloud_tasks.errors import InputError

DATE = dt.date(2024, 5, 1)

# --- completing the real product ----------------------------------------------------------------------------


@needs_real
def test_complete_product_on_a_copy_of_the_real_product(tmp_path):
    source = next(REAL.glob("*.SEN3"))
    product = Path(shutil.copytree(source, tmp_path / source.name))
    for path in [product, *product.iterdir()]:
        path.chmod(path.stat().st_mode | 0o200)
    before = {p.name: p.read_bytes() for p in product.iterdir()}

    written = sample.complete_product(product, seed=0)

    assert sorted(p.name for p in written) == sorted(sample.COMPLETED_FILES)
    assert {p.name: p.read_bytes() for p in product.iterdir() if p.name in before} == before
    with netCDF4.Dataset(product / "S1_quality_an.nc") as quality:
        expected = {k: quality.getncattr(k) for k in ("product_name", "track_offset", "start_offset", "start_time")}
    for path in (p for p in written if p.name.endswith("_an.nc")):  # geodetic_in.nc: in check_geodetic_in
        with netCDF4.Dataset(path) as ds:
            assert {k: ds.getncattr(k) for k in expected} == expected and ds.resolution == "[ 500 500 ]"
    assert expected["track_offset"] == 1996 and expected["start_offset"] == 4081

    sza = sza_on(product, (2396, 3000), "S1_radiance_an.nc")
    for n in range(1, 7):
        rad = read(product / f"S{n}_radiance_an.nc", f"S{n}_radiance_an")
        assert rad.shape == (2396, 3000)
        doubtful = np.abs(sza - 90) < 1e-6
        assert np.array_equal(np.isnan(rad)[~doubtful], (sza >= 90)[~doubtful])
        e0 = read(product / f"S{n}_quality_an.nc", f"S{n}_solar_irradiance_an")[0]
        refl = np.pi * rad / (e0 * np.cos(np.radians(sza)))
        lit = sza < 85  # nearer the terminator, packing quantisation dominates the tiny radiances
        assert np.nanmin(refl[lit]) >= 0 and np.nanmax(refl[lit]) < 1.3

    # Cold (cloudy) pixels are brighter in S1 than warm ones.
    bt = read(product / "S8_BT_in.nc", "S8_BT_in")
    refl = reflectance_1km(product, 1, bt.shape)
    cold, warm = bt < np.nanpercentile(bt, 25), bt > np.nanpercentile(bt, 75)
    assert np.nanmean(refl[cold]) > np.nanmean(refl[warm])

    lat_an = read(product / "geodetic_an.nc", "latitude_an")
    lat_tx = read(product / "geodetic_tx.nc", "latitude_tx")
    assert lat_an.shape == (2396, 3000)
    assert np.allclose(lat_an[::2, 1996], lat_tx[:, 64], atol=1e-5)  # an column 1996 lies on tie-point column 64
    check_geodetic_in(product, lat_an)

    assert sample.complete_product(product) == []


def check_geodetic_in(product: Path, lat_an: np.ndarray) -> None:
    """The real product's 1 km geolocation: its tie points at their columns, linear between them, the 0.5 km one."""
    with netCDF4.Dataset(product / "geodetic_in.nc") as ds, netCDF4.Dataset(product / "flags_in.nc") as flags:
        assert {k: ds.getncattr(k) for k in flags.ncattrs()} == {k: flags.getncattr(k) for k in flags.ncattrs()}
        assert ds["latitude_in"].dtype == np.int32 and ds["latitude_in"].scale_factor == 1e-6
    lat_in, lon_in = (read(product / "geodetic_in.nc", f"{n}_in") for n in ("latitude", "longitude"))
    lat_tx, lon_tx = (read(product / "geodetic_tx.nc", f"{n}_tx") for n in ("latitude", "longitude"))
    assert lat_in.shape == (1198, 1500) and not np.isnan(lat_in).any() and not np.isnan(lon_in).any()
    assert np.allclose(lat_in[:, 998], lat_tx[:, 64], atol=1e-5)  # in column 998 lies on tie-point column 64
    assert np.allclose(lon_in[:, 998], lon_tx[:, 64], atol=1e-5)
    assert np.allclose(lat_in, lat_an[::2, ::2], atol=1.5e-6)
    # Between tie points, against a linear interpolation in degrees: near the pole (this scene reaches 89 deg N)
    # degrees are not linear along the swath, so compare as a ground distance, within half a 1 km pixel.
    columns = (np.arange(1500) - 998) / 16 + 64
    valid = ~np.isnan(lat_tx[0])
    for row in (0, 600, 1197):
        lat, lon = (np.interp(columns, np.flatnonzero(valid), tie[row, valid]) for tie in (lat_tx, lon_tx))
        east = (lon_in[row] - lon + 180) % 360 - 180
        km = 111.195 * np.hypot(lat_in[row] - lat, east * np.cos(np.radians(lat)))
        assert km.max() < 0.5


def test_complete_product_rejects_bad_input(tmp_path):
    with pytest.raises(InputError):
        sample.complete_product(tmp_path / "missing.SEN3")
    (tmp_path / "empty.SEN3").mkdir()
    with pytest.raises(InputError, match=r"flags_in\.nc"):
        sample.complete_product(tmp_path / "empty.SEN3")


# --- completing a generated product (no real product needed) ------------------------------------------------


@pytest.fixture
def generated_product(tmp_path) -> Path:
    """A small generated day product, written as a folder."""
    spec = sample.product_specs(DATE, 1, seed=4)[0]
    folder = tmp_path / spec.name.sen3
    folder.mkdir()
    sample.write_product(sample.make_scene(spec), folder)
    return folder


def test_completing_a_generated_product_restores_its_coordinates(generated_product):
    originals = {
        (file, f"{name}_{grid}"): read(generated_product / file, f"{name}_{grid}", raw=True)
        for grid, file in (("an", "geodetic_an.nc"), ("in", "geodetic_in.nc"))
        for name in ("latitude", "longitude")
    }
    for name in sample.COMPLETED_FILES:
        (generated_product / name).unlink()

    written = sample.complete_product(generated_product, seed=0)

    assert sorted(p.name for p in written) == sorted(sample.COMPLETED_FILES)
    for (file, name), values in originals.items():  # the same tie points, grids and interpolation: same micro-degrees
        assert np.array_equal(read(generated_product / file, name, raw=True), values), name
    rad = read(generated_product / "S1_radiance_an.nc", "S1_radiance_an")
    assert rad.shape == sample.GRIDS["small"].an_shape and np.isfinite(rad).mean() > 0.99


def test_complete_product_rejects_a_bad_grid_attribute(generated_product):
    (generated_product / "geodetic_an.nc").unlink()
    with netCDF4.Dataset(generated_product / "S6_quality_an.nc", "a") as ds:
        ds.resolution = "500 m"
    with pytest.raises(InputError, match=r"S6_quality_an\.nc: .*resolution"):
        sample.complete_product(generated_product)
    assert not (generated_product / "geodetic_an.nc").exists()
