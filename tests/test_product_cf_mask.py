"""The CF-NetCDF mask product: round trip, compliance (IOOS compliance-checker, offline), xarray decoding,
geolocation equal to the product's ``geodetic_in``, hostile files refused, atomic writes, ``made_by``.

``write_test_mask`` (a 60 x 80 mask on a synthetic swath) is shared with the other test_product_ modules.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import shapely
from test_product_footprint import SHAPE, covers_all, swath

from cloud_tasks import sample
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.product import cf_mask

STEM = "S3A_SL_1_RBT____20240601T101500_20240601T101800_20240601T140000_0179_113_079_2630_LN2_O_NT_004"
PRODUCT = {
    "product_name": STEM,
    "mission": "S3A",
    "sensing_start": "2024-06-01T10:15:00.400000Z",
    "sensing_stop": "2024-06-01T10:18:00.100000Z",
}
MODELS = [cf_mask.Model("v3", "ab" * 32)]
CREATED = dt.datetime(2024, 6, 2, 3, 4, 5, tzinfo=dt.UTC)


def probability_field(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """Smooth cloud probabilities with a no-data band (NaN), as a twilight product's."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    p = 0.5 + 0.45 * np.sin(rows / 7.0) * np.cos(columns / 9.0) + rng.normal(0, 0.02, shape)
    p = np.clip(p, 0, 1).astype(np.float32)
    p[:, -10:] = np.nan
    return p


def write_test_mask(path: Path, lat=None, lon=None, probability=None, **options) -> Path:
    if lat is None:
        lat, lon = swath(40.0, 10.0, 192.0)
    probability = probability_field(lat.shape) if probability is None else probability
    settings = {"product": PRODUCT, "models": MODELS, "threshold": 0.5, "created": CREATED} | options
    return cf_mask.write_mask(path, probability, lat, lon, **settings)


def high_priority_failures(path: Path) -> dict[str, list]:
    """The IOOS compliance-checker's CF-1.10 and ACDD-1.3 suites, run offline: failing high-priority checks."""
    from compliance_checker.runner import CheckSuite

    suite = CheckSuite()
    suite.load_all_available_checkers()
    results = suite.run_all(suite.load_dataset(str(path)), ["cf:1.10", "acdd:1.3"], skip_checks=[])
    failures = {}
    for name, (groups, errors) in results.items():
        assert not errors, errors
        structure = suite.build_structure(name, groups, str(path))
        failures[name] = [(r.name, r.msgs) for r in structure["high_priorities"] if r.value[0] < r.value[1]]
        print(
            f"{name}: {structure['scored_points']}/{structure['possible_points']} points, failing checks: high "
            f"{structure['high_count']}, medium {structure['medium_count']}, low {structure['low_count']}"
        )
    return failures


def test_round_trip(tmp_path):
    lat, lon = swath(40.0, 10.0, 192.0)
    probability = probability_field()
    valid = np.ones(SHAPE, bool)
    valid[:3] = False  # no valid input there, whatever the probability says
    path = write_test_mask(tmp_path / "m.nc", lat, lon, probability, valid=valid, source="x.h5")

    mask = cf_mask.read_mask(path)
    no_data = np.isnan(probability) | ~valid
    assert np.array_equal(mask.valid, ~no_data)
    assert np.array_equal(mask.cloudy, (probability >= 0.5) & ~no_data)
    assert np.isnan(mask.probability[no_data]).all()
    assert np.abs(mask.probability[~no_data] - probability[~no_data]).max() <= 0.005 + 1e-6
    assert np.abs(mask.latitude - lat).max() < 6e-7 and np.abs(mask.longitude - lon).max() < 6e-7
    assert mask.cloud_fraction == pytest.approx(((probability >= 0.5) & ~no_data).sum() / (~no_data).sum())
    assert mask.threshold == 0.5 and mask.models == tuple(MODELS) and mask.model_used is None
    assert mask.sensing == (
        dt.datetime(2024, 6, 1, 10, 15, 0, 400000, tzinfo=dt.UTC),
        dt.datetime(2024, 6, 1, 10, 18, 0, 100000, tzinfo=dt.UTC),
    )
    assert mask.product_name == STEM and mask.attrs["platform"] == "Sentinel-3A"
    assert mask.attrs["date_created"] == "2024-06-02T03:04:05.000000Z" and "x.h5" in mask.attrs["source"]
    with netCDF4.Dataset(path) as ds:
        probability_var = ds["cloud_probability"]
        assert probability_var.dtype == np.int8 and probability_var.scale_factor == np.float32(0.01)
        assert probability_var.filters()["zlib"] and probability_var.chunking() == list(SHAPE)
        assert ds["cloud_mask"].flag_meanings == "clear cloudy" and ds["cloud_mask"].threshold == 0.5
        bounds = shapely.from_wkt(ds.geospatial_bounds)  # latitude first (EPSG:4326)
    assert covers_all(type("F", (), {"geometry": shapely.transform(bounds, lambda xy: xy[:, ::-1])}), lat, lon)
    assert write_test_mask(tmp_path / "again.nc", lat, lon, probability, valid=valid, source="x.h5").read_bytes() == (
        path.read_bytes()
    ), "same inputs and creation time: same bytes"


def test_compliance_checker_finds_no_high_priority_failure(tmp_path):
    lat, lon = swath(40.0, 10.0, 192.0)
    used = np.zeros(SHAPE, np.uint8)
    used[:, 40:] = 1  # issue 17: day model left, thermal model right
    models = [cf_mask.Model("v3", "ab" * 32), cf_mask.Model("v1", "cd" * 32, kind="thermal")]
    path = write_test_mask(tmp_path / "m.nc", lat, lon, models=models, model_used=used)
    assert high_priority_failures(path) == {"cf:1.10": [], "acdd:1.3": []}
    mask = cf_mask.read_mask(path)
    assert mask.models == tuple(models) and np.array_equal(mask.model_used[mask.valid], used[mask.valid])
    assert (mask.model_used[~mask.valid] == cf_mask.NO_DATA).all()

    crossing = write_test_mask(tmp_path / "crossing.nc", *swath(-20.0, 179.95, 12.0))
    assert high_priority_failures(crossing) == {"cf:1.10": [], "acdd:1.3": []}
    with netCDF4.Dataset(crossing) as ds:
        assert ds.geospatial_lon_min > ds.geospatial_lon_max  # ACDD: west > east across the antimeridian
        assert ds.geospatial_bounds.startswith("MULTIPOLYGON")


def test_xarray_opens_it_with_latitude_longitude_and_time_as_coordinates(tmp_path):
    import xarray as xr

    lat, lon = swath(40.0, 10.0, 192.0)
    path = write_test_mask(tmp_path / "m.nc", lat, lon)
    with xr.open_dataset(path) as ds:
        assert {"latitude", "longitude", "time"} <= set(ds.coords)
        assert {"latitude", "longitude", "time"} <= set(ds.cloud_mask.coords)
        assert ds.latitude.attrs["standard_name"] == "latitude" and ds.longitude.attrs["units"] == "degrees_east"
        assert np.allclose(ds.latitude.values, lat, atol=6e-7)
        assert ds.time.values == np.datetime64("2024-06-01T10:15:00.400000")
        probability = ds.cloud_probability.values
        assert np.isnan(probability[:, -10:]).all() and np.nanmax(probability) <= 1.0
        assert set(np.unique(ds.cloud_mask.values[:, :-10])) <= {0.0, 1.0}


def test_mask_geolocation_is_the_generated_products_geodetic_in(tmp_path):
    spec = sample.product_specs(dt.date(2024, 6, 1), 1, seed=2)[0]
    folder = tmp_path / spec.name.sen3
    folder.mkdir()
    sample.write_product(sample.make_scene(spec), folder)
    window = (slice(100, 160), slice(200, 280))
    with netCDF4.Dataset(folder / "geodetic_in.nc") as ds:  # read with its own scale, offset and fill
        lat, lon = (np.ma.filled(ds[f"{n}_in"][window].astype(np.float64), np.nan) for n in ("latitude", "longitude"))
    product = PRODUCT | {"product_name": spec.name.stem}
    mask = cf_mask.read_mask(write_test_mask(tmp_path / "m.nc", lat, lon, product=product))
    for row, column in ((0, 0), (30, 40), (59, 79), (17, 63)):
        assert mask.latitude[row, column] == lat[row, column] and mask.longitude[row, column] == lon[row, column]
    assert np.array_equal(mask.latitude, lat) and np.array_equal(mask.longitude, lon)


def test_mask_on_the_completed_real_products_geolocation(real_product, tmp_path):
    with netCDF4.Dataset(real_product / "geodetic_in.nc") as ds:
        lat, lon = (np.ma.filled(ds[f"{n}_in"][...].astype(np.float64), np.nan) for n in ("latitude", "longitude"))
    assert lat.shape == (1198, 1500)
    probability = probability_field(lat.shape)
    stem = real_product.name.removesuffix(".SEN3")
    product = PRODUCT | {
        "product_name": stem,
        "sensing_start": "2017-03-15T11:34:20.831396Z",
        "sensing_stop": "2017-03-15T11:37:20.522578Z",
    }
    mask = cf_mask.read_mask(write_test_mask(tmp_path / "real.nc", lat, lon, probability, product=product))
    for row, column in ((0, 0), (600, 750), (1197, 1499), (311, 998)):
        assert mask.latitude[row, column] == lat[row, column] and mask.longitude[row, column] == lon[row, column]
    assert mask.attrs["geospatial_lat_max"] == np.nanmax(lat) > 88  # the real frame reaches 88.9 N
    assert mask.attrs["time_coverage_start"] == "2017-03-15T11:34:20.831396Z"


def damaged(path: Path, tmp_path: Path, name: str, change) -> Path:
    copy = shutil.copy(path, tmp_path / f"{name}.nc")
    with netCDF4.Dataset(copy, "a") as ds:
        change(ds)
    return Path(copy)


def test_hostile_mask_files_are_refused_naming_the_file(tmp_path):
    good = write_test_mask(tmp_path / "good.nc")
    text = tmp_path / "text.nc"
    text.write_text("not a NetCDF file")
    cases = {
        text: "cannot be read as NetCDF",
        damaged(good, tmp_path, "path_name", lambda ds: ds.setncattr("product_name", "../../etc/passwd")): "product",
        damaged(good, tmp_path, "threshold", lambda ds: ds["cloud_mask"].setncattr("threshold", "high")): "threshold",
        damaged(good, tmp_path, "scale", lambda ds: ds["latitude"].setncattr("scale_factor", -1.0)): "scale_factor",
        damaged(good, tmp_path, "models", lambda ds: ds.setncattr("model_kind", "day night")): "model_",
        damaged(good, tmp_path, "meanings", lambda ds: ds["cloud_mask"].setncattr("flag_meanings", "a b")): "clear",
        damaged(good, tmp_path, "missing", lambda ds: ds.renameVariable("longitude", "lon")): "'longitude'",
        damaged(good, tmp_path, "number", lambda ds: ds.setncattr("model_version", np.int32(3))): "model_version",
    }
    for path, problem in cases.items():
        with pytest.raises(InputError, match=problem) as caught:
            cf_mask.read_mask(path)
        assert str(caught.value).startswith(str(path))
        assert not cf_mask.made_by(path, MODELS, 0.5)


def test_write_refuses_inconsistent_inputs_and_leaves_no_file(tmp_path):
    lat, lon = swath(40.0, 10.0, 192.0)
    p = probability_field()
    bad_calls = {
        "shape": lambda: write_test_mask(tmp_path / "m.nc", lat, lon, p[:, :10]),
        "threshold": lambda: write_test_mask(tmp_path / "m.nc", lat, lon, p, threshold=1.5),
        "kinds": lambda: write_test_mask(tmp_path / "m.nc", lat, lon, p, models=[cf_mask.Model("v1", "x", "night")]),
        "outside 0..1": lambda: write_test_mask(tmp_path / "m.nc", lat, lon, p * 2),
        "beyond": lambda: write_test_mask(tmp_path / "m.nc", lat, lon, p, model_used=np.ones(SHAPE, np.uint8)),
        "ISO 8601": lambda: write_test_mask(tmp_path / "m.nc", lat, lon, p, product=PRODUCT | {"sensing_stop": 3}),
        "geolocation": lambda: write_test_mask(tmp_path / "m.nc", lat * np.nan, lon, p),
    }
    for problem, call in bad_calls.items():
        with pytest.raises(CloudTasksError, match=problem):
            call()
    assert list(tmp_path.iterdir()) == []


def test_made_by_recognises_the_models_and_threshold(tmp_path):
    path = write_test_mask(tmp_path / "m.nc")
    assert cf_mask.made_by(path, MODELS, 0.5)
    assert not cf_mask.made_by(path, [cf_mask.Model("v3", "ef" * 32)], 0.5)
    assert not cf_mask.made_by(path, [cf_mask.Model("v4", "ab" * 32)], 0.5), "the same file registered again"
    assert not cf_mask.made_by(path, MODELS, 0.6)
    assert not cf_mask.made_by(tmp_path / "absent.nc", MODELS, 0.5)
