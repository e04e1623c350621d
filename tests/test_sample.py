"""make-sample: synthetic SLSTR archives (grids, names, file contents, determinism) and their match-ups.

The completion of the real partial product is tested in test_sample_complete.py, the command line in
test_sample_cli.py; both use the NetCDF helpers of this module.
"""

from __future__ import annotations

import datetime as dt
import os
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest

from cloud_tasks import sample
from cloud_tasks.layout import matchups_path
from cloud_tasks.naming import ProductName
from cloud_tasks.sample.scene import ICE_HEIGHT

DATE = dt.date(2024, 5, 1)
N_PRODUCTS = 5
REPO = Path(__file__).resolve().parents[1]
REAL_CANDIDATES = [
    Path(os.environ.get("CLOUD_TASKS_REAL_SAMPLE", REPO / "shared/data/real-slstr-partial")),
    REPO.parent / "shared/data/real-slstr-partial",
]
REAL = next((p for p in REAL_CANDIDATES if any(p.glob("*.SEN3"))), None)
needs_real = pytest.mark.skipif(REAL is None, reason="the real partial SLSTR product is not available")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("archive")
    return out, sample.make_sample_archive(out, DATE, N_PRODUCTS, seed=0)


@pytest.fixture(scope="module")
def products(archive, tmp_path_factory) -> dict[str, Path]:
    """The archive's products unzipped: stem -> .SEN3 folder."""
    target = tmp_path_factory.mktemp("unzipped")
    for path in archive[1]:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(target)
    return {p.name.removesuffix(".SEN3"): p for p in sorted(target.glob("*.SEN3"))}


@pytest.fixture(scope="module")
def specs() -> dict[str, sample.ProductSpec]:
    return {s.name.stem: s for s in sample.product_specs(DATE, N_PRODUCTS, seed=0)}


def read(path: Path, name: str, raw: bool = False) -> np.ndarray:
    """A variable as float with NaN for fill (or the raw stored values)."""
    with netCDF4.Dataset(path) as ds:
        var = ds[name]
        var.set_auto_maskandscale(not raw)
        data = var[...]
        return np.ma.filled(data.astype(float), np.nan) if not raw else np.asarray(data)


def sza_on(product: Path, shape: tuple[int, int], grid_file: str) -> np.ndarray:
    """SZA at every pixel of a grid, from the tie points with np.interp (independent of sample.resample)."""
    with netCDF4.Dataset(product / "geometry_tn.nc") as tn, netCDF4.Dataset(product / grid_file) as img:
        tp = np.ma.filled(tn["solar_zenith_tn"][...], np.nan)
        across, along = (float(v) for v in img.resolution.split()[1:3])
        tp_across, tp_along = (float(v) for v in tn.resolution.split()[1:3])
        cols = (np.arange(shape[1]) - img.track_offset) * across / tp_across + tn.track_offset
        rows = np.arange(shape[0]) * along / tp_along
    valid = ~np.isnan(tp[0])
    by_row = np.stack([np.interp(cols, np.flatnonzero(valid), r[valid]) for r in tp])
    return np.stack([np.interp(rows, np.arange(tp.shape[0]), c) for c in by_row.T], axis=1)


def kind_of(product: Path) -> str:
    confidence = read(product / "flags_in.nc", "confidence_in", raw=True)
    day = (confidence & 1024) > 0
    return "day" if day.all() else "night" if not day.any() else "twilight"


def reflectance_1km(product: Path, channel: int, shape: tuple[int, int]) -> np.ndarray:
    rad = read(product / f"S{channel}_radiance_an.nc", f"S{channel}_radiance_an")
    e0 = read(product / f"S{channel}_quality_an.nc", f"S{channel}_solar_irradiance_an")[0]
    mu0 = np.cos(np.radians(sza_on(product, rad.shape, f"S{channel}_radiance_an.nc")))
    refl = np.pi * rad / (e0 * mu0)
    return refl.reshape(shape[0], 2, shape[1], 2).mean(axis=(1, 3))


# --- grids and names ----------------------------------------------------------------------------------------


def test_grids():
    full, small = sample.GRIDS["full"], sample.GRIDS["small"]
    assert (full.rows, full.columns, full.tp_columns, full.an_shape) == (1200, 1500, 130, (2400, 3000))
    assert (full.track_offset_in, full.track_offset_an, full.track_offset_tn, full.start_offset) == (
        998,
        1996,
        64,
        4081,
    )
    assert small.an_shape == (2 * small.rows, 2 * small.columns) and min(small.rows, small.columns) >= 256
    for g in (full, small):
        tp = (np.array([0, g.columns - 1]) - g.track_offset_in) * 1000 / 16000 + g.track_offset_tn
        assert tp[0] >= 0 and tp[1] <= g.tp_valid_columns - 1 <= g.tp_columns - 1


def test_full_grid_scene_covers_the_image():
    scene = sample.make_scene(sample.product_specs(DATE, 1, grid="full")[0])
    assert scene.sza.shape == (1200, 1500) and not np.isnan(scene.sza).any()
    assert scene.sza_an.shape == (2400, 3000) and not np.isnan(scene.sza_an).any()


def test_layout_names_and_zip_members(archive, specs):
    out, zips = archive
    assert zips == sorted(zips) and len(zips) == N_PRODUCTS
    missions = [s.name.mission for s in sorted(specs.values(), key=lambda s: s.index)]
    assert missions == ["S3A", "S3B", "S3A", "S3B", "S3A"]
    for path in zips:
        name = ProductName.parse(path)
        assert path == name.archive_path(out)
        assert name.start.date() == DATE and name.stop - name.start == dt.timedelta(seconds=180)
        assert name.duration_s in (179, 180) and name.baseline == "004"
        assert name.creation > name.stop
        with zipfile.ZipFile(path) as zf:
            members = zf.namelist()
            manifest = ET.fromstring(zf.read(f"{name.sen3}/xfdumanifest.xml"))
        assert {m.split("/")[0] for m in members} == {name.sen3}
        assert members == sorted(members) and members[0] == f"{name.sen3}/"
        assert sorted(m.split("/", 1)[1] for m in members[1:]) == sorted(sample.PRODUCT_FILES)
        hrefs = {e.get("href") for e in manifest.iter("fileLocation")}
        assert hrefs == {f"./{f}" for f in sample.PRODUCT_FILES if f.endswith(".nc")}


# --- file contents ------------------------------------------------------------------------------------------


@needs_real
def test_variables_attributes_and_compression_match_the_real_files(products):
    real = next(REAL.glob("*.SEN3"))
    for stem, product in products.items():
        for path in sorted(product.glob("*.nc")):
            with netCDF4.Dataset(path) as ds:
                assert ds.product_name == f"{stem}.SEN3" and ds.start_offset == 4081
                dt.datetime.strptime(ds.start_time, "%Y-%m-%dT%H:%M:%S.%fZ")
                grid = path.stem.rsplit("_", 1)[1]
                expected = {"an": "[ 500 500 ]", "in": "[ 1000 1000 ]", "tn": "[ 16000 1000 ]", "tx": "[ 16000 1000 ]"}
                assert ds.resolution == expected[grid]
                for var in ds.variables.values():
                    filters = var.filters()
                    assert filters["zlib"] and filters["shuffle"] and filters["complevel"] == 2, var.name
            if (real / path.name).exists():
                with netCDF4.Dataset(real / path.name) as ours_real, netCDF4.Dataset(path) as ours:
                    assert ours.ncattrs() == ours_real.ncattrs()
                    for name in set(ours.variables) & set(ours_real.variables):
                        a, b = ours[name], ours_real[name]
                        assert (a.dtype, a.dimensions, a.ncattrs()) == (b.dtype, b.dimensions, b.ncattrs()), name
                        if "flag_meanings" in b.ncattrs():
                            assert a.flag_meanings == b.flag_meanings
                            assert np.array_equal(a.flag_masks, b.flag_masks)


def test_measurement_variables(products):
    product = next(iter(products.values()))
    with netCDF4.Dataset(product / "S8_BT_in.nc") as ds:
        bt = ds["S8_BT_in"]
        assert bt.dtype == np.int16 and bt.scale_factor == 0.01 and bt.add_offset == 283.73
        assert bt._FillValue == -32768 and bt.units == "K"
    for n, e0 in enumerate((1858.954, 1538.219, 968.199, 370.085, 248.214, 78.347), start=1):
        with netCDF4.Dataset(product / f"S{n}_radiance_an.nc") as ds:
            rad = ds[f"S{n}_radiance_an"]
            assert rad.dtype == np.int16 and rad._FillValue == -32768 and rad.units == "mW.m-2.sr-1.nm-1"
            assert rad.shape == sample.GRIDS["small"].an_shape and "scale_factor" in rad.ncattrs()
            assert ds[f"S{n}_radiance_orphan_an"].dimensions == ("rows", "orphan_pixels")
            assert {f"S{n}_exception_an", f"S{n}_exception_orphan_an"} <= set(ds.variables)
        irradiance = read(product / f"S{n}_quality_an.nc", f"S{n}_solar_irradiance_an")
        assert irradiance.shape == (4,) and irradiance[0] == pytest.approx(e0, abs=1e-3)
    with netCDF4.Dataset(product / "flags_in.nc") as ds:
        for name in ("confidence_in", "bayes_in", "cloud_in", "pointing_in"):
            assert "_FillValue" not in ds[name].ncattrs()
    with netCDF4.Dataset(product / "geodetic_an.nc") as ds:
        assert ds["latitude_an"].dtype == np.int32 and ds["latitude_an"].scale_factor == 1e-6
        assert ds["latitude_an"].shape == sample.GRIDS["small"].an_shape
    g = sample.GRIDS["small"]
    sza = read(product / "geometry_tn.nc", "solar_zenith_tn")
    assert np.isnan(sza[:, g.tp_valid_columns :]).all() and not np.isnan(sza[:, : g.tp_valid_columns]).any()


def test_geodetic_in_is_the_1km_geolocation_of_the_tie_points(products):
    g = sample.GRIDS["small"]
    for product in products.values():
        with netCDF4.Dataset(product / "geodetic_in.nc") as ds:
            assert (ds.resolution, ds.track_offset) == ("[ 1000 1000 ]", g.track_offset_in)
            for name, units in (("latitude_in", "degrees_north"), ("longitude_in", "degrees_east")):
                var = ds[name]
                assert (
                    var.dtype == np.int32 and var.shape == (g.rows, g.columns) and var.dimensions == ("rows", "columns")
                )
                assert (var.scale_factor, var._FillValue, var.units) == (1e-6, -(2**31), units)
                assert var.standard_name == name.removesuffix("_in") and "add_offset" not in var.ncattrs()
            assert ds["elevation_in"].dtype == np.int16 and ds["latitude_orphan_in"].dimensions[1] == "orphan_pixels"
        for name in ("latitude", "longitude"):  # 1 km pixel (y, x) is 0.5 km pixel (2y, 2x): same micro-degrees
            fine = read(product / "geodetic_an.nc", f"{name}_an", raw=True)
            assert np.array_equal(read(product / "geodetic_in.nc", f"{name}_in", raw=True), fine[::2, ::2])
        lat_in, lon_in = (read(product / "geodetic_in.nc", f"{n}_in") for n in ("latitude", "longitude"))
        lat_tx, lon_tx = (read(product / "geodetic_tx.nc", f"{n}_tx") for n in ("latitude", "longitude"))
        assert np.allclose(lat_in[:, g.track_offset_in], lat_tx[:, g.track_offset_tn], atol=1e-6)  # on a tie point
        assert np.allclose(lon_in[:, g.track_offset_in], lon_tx[:, g.track_offset_tn], atol=1e-6)
        assert np.all(np.abs(np.diff(lat_in, axis=0)) < 0.02)  # ~1 km apart: no jumps


def test_day_night_and_twilight_products(products, specs):
    kinds = {stem: kind_of(p) for stem, p in products.items()}
    assert {stem: s.kind for stem, s in specs.items()} == kinds
    assert sorted(kinds.values()) == ["day", "day", "day", "night", "twilight"]
    for stem, product in products.items():
        sza = read(product / "geometry_tn.nc", "solar_zenith_tn")
        rad = read(product / "S1_radiance_an.nc", "S1_radiance_an")
        image_sza = sza_on(product, rad.shape, "S1_radiance_an.nc")
        if kinds[stem] == "night":
            assert np.nanmin(sza) > 100 and np.isnan(rad).all()
        elif kinds[stem] == "day":
            assert image_sza.min() >= 20 and image_sza.max() <= 75
        else:
            assert image_sza.min() < 90 < image_sza.max()
        dark = image_sza >= 90
        assert np.isnan(rad[dark]).all() and np.isnan(rad[~dark]).sum() <= 0.005 * rad.size


def test_clouds_raise_reflectance_and_lower_brightness_temperature(products):
    for product in products.values():
        cloudy = read(product / "flags_in.nc", "bayes_in", raw=True) > 0
        assert 0.1 <= cloudy.mean() <= 0.7
        for n in (7, 8, 9):
            bt = read(product / f"S{n}_BT_in.nc", f"S{n}_BT_in")
            assert np.nanmean(bt[cloudy]) < np.nanmean(bt[~cloudy]) - 5
        if kind_of(product) != "day":
            continue
        rise = []
        for n in range(1, 7):
            refl = reflectance_1km(product, n, cloudy.shape)
            assert np.nanmean(refl[cloudy]) > np.nanmean(refl[~cloudy]) + 0.05
            rise.append(np.nanmean(refl[cloudy]) - np.nanmean(refl[~cloudy]))
        assert min(rise[:3]) > max(rise[3:])  # visible more than SWIR


def test_night_and_twilight_clouds_show_in_the_thermal_channels_as_in_nature():
    """Cloud tops colder than the sea; ice clouds (thin cirrus too) widen the split-window difference S8-S9 and
    warm S7 against S8; water clouds cool S7 against S8 (the fog test); a few clouds are within 1 K of clear sky."""
    warm = cloudy_total = 0
    for spec in sample.product_specs(DATE, 10, seed=0):
        if spec.kind == "day":
            continue
        scene = sample.make_scene(spec)
        bt, seen = scene.bt, np.isfinite(scene.bt).all(axis=0) & ~scene.land
        cloudy, clear = scene.cloudy & seen, ~scene.cloudy & seen
        ice = cloudy & (scene.cloud_height > ICE_HEIGHT)
        anomaly, split_window, fog = bt[1] - scene.sst, bt[1] - bt[2], bt[0] - bt[1]
        assert _against(anomaly, cloudy, clear) < -4
        assert _against(split_window, ice, clear) > 1
        thin_ice = ice & (anomaly > np.median(anomaly[clear]) - 3)
        assert thin_ice.sum() > 100 and _against(split_window, thin_ice, clear) > 0.2
        assert _against(fog, ice, clear) > 1 and _against(fog, cloudy & ~ice, clear) < -0.7
        near_clear = cloudy & (anomaly > np.median(anomaly[clear]) - 1)
        warm, cloudy_total = warm + near_clear.sum(), cloudy_total + cloudy.sum()
    assert 0.01 < warm / cloudy_total < 0.15


def _against(values: np.ndarray, where: np.ndarray, clear: np.ndarray) -> float:
    """The median of ``values`` over ``where`` less their median over the clear pixels."""
    return float(np.median(values[where]) - np.median(values[clear]))


def test_bayes_marks_exactly_the_clouds_and_summary_differs_a_little(products, specs):
    for stem, product in products.items():
        scene = sample.make_scene(specs[stem])
        bayes = read(product / "flags_in.nc", "bayes_in", raw=True)
        confidence = read(product / "flags_in.nc", "confidence_in", raw=True)
        assert np.array_equal(bayes > 0, scene.cloudy)
        assert set(np.unique(bayes)) <= {0, 1 | 4, 1 | 2 | 4, 1 | 2 | 4 | 8}
        summary = (confidence & 16384) > 0
        assert 0.005 < (summary != scene.cloudy).mean() < 0.1
        assert ((confidence & 2) > 0).mean() > 0.85  # mostly ocean


# --- determinism and idempotence ----------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs_and_reruns_keep_zips(archive, tmp_path):
    out, zips = archive
    again = sample.make_sample_archive(tmp_path / "again", DATE, N_PRODUCTS, seed=0)
    assert [p.relative_to(tmp_path / "again") for p in again] == [p.relative_to(out) for p in zips]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(again, zips, strict=True))

    other = sample.make_sample_archive(tmp_path / "other", DATE, 1, seed=1)
    assert other[0].read_bytes() != next(p for p in zips if "S3A" in p.name).read_bytes()

    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in again}
    again[0].write_bytes(b"truncated")  # an incomplete zip is rewritten
    assert sample.make_sample_archive(tmp_path / "again", DATE, N_PRODUCTS, seed=0) == again
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == before[p] for p in again[1:])
    assert again[0].read_bytes() == zips[0].read_bytes()


# --- match-ups ----------------------------------------------------------------------------------------------


def test_matchups(archive, products, specs):
    out, _ = archive
    table = pd.read_hdf(matchups_path(out, DATE), "matchups")
    assert tuple(table.columns) == sample.MATCHUP_COLUMNS
    g = sample.GRIDS["small"]
    for path, rows in table.groupby("cems_path"):
        stem = Path(path).name.removesuffix(".SEN3")
        assert path.startswith("/neodc/") and 30 <= len(rows) <= 100
        if specs[stem].kind == "night":  # night retrievals: N2, N3R or N3
            assert rows.sst_algorithm_type.isin([1, 2, 3]).all()
        if specs[stem].kind == "day":  # no N3 in sunlight
            assert not rows.sst_algorithm_type.isin([3]).any()
        assert rows.x_cems.between(0, g.columns - 1).all() and rows.y_cems.between(0, g.rows - 1).all()
        lat = read(products[stem] / "geodetic_an.nc", "latitude_an")
        assert np.allclose(lat[2 * rows.y_cems, 2 * rows.x_cems], rows.latitude_an, atol=1e-9)
        for name in ("latitude", "longitude"):  # the 1 km geolocation agrees with the table at its pixels
            values = read(products[stem] / "geodetic_in.nc", f"{name}_in")
            assert np.allclose(values[rows.y_cems, rows.x_cems], rows[f"{name}_an"], atol=1e-9)
        bayes = read(products[stem] / "flags_in.nc", "bayes_in", raw=True)
        assert np.array_equal(bayes[rows.y_cems, rows.x_cems], rows.bayes_in)
    assert table.cems_path.nunique() == len(specs) == 5, "every product has match-ups, night ones too"
    near = (abs(table.slat - table.latitude_an) < 0.005) & (abs(table.slon - table.longitude_an) < 0.01)
    assert 0.8 < near.mean() < 1
    for fails in (table.quality_level < 5, table.satzan > 55, table.satzao > 55, ~near):
        assert fails.any()
    assert (table.sst_algorithm_type != 4).any() and (table.isst <= 0).any()

    ok = near & (table.isst > 0) & (table.satzan <= 55) & (table.satzao <= 55) & (table.quality_level == 5)
    ok &= table.sst_algorithm_type == 4
    diff = table.sat_sst_2 - (table.isst + 273.15)
    cloudy = table.bayes_in > 0
    assert diff[ok & cloudy].median() < diff[ok & ~cloudy].median() - 2
    assert (table.pcloudn[cloudy] > 0.9).mean() > 0.8 and (table.pcloudn[~cloudy] > 0.9).mean() < 0.1

    def robust_sd(x):
        return 1.4826 * np.median(np.abs(x - np.median(x)))

    clear = (table.pcloudn < 0.9) & (table.pcloudo < 0.9)
    assert robust_sd(diff[ok & clear]) < 0.6 < robust_sd(diff[ok])
