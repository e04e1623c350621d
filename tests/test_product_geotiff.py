"""The mask as a Cloud-Optimized GeoTIFF: opens with rasterio, geographic CRS, overviews, COG layout, and each
grid pixel holds the mask value of the nearest swath pixel (within the radius) or no data."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import xy
from test_product_cf_mask import write_test_mask
from test_product_footprint import EARTH_RADIUS_KM, swath

from cloud_tasks.errors import CloudTasksError
from cloud_tasks.product import cf_mask, geotiff


def nearest_swath_values(mask: cf_mask.MaskProduct, lat: np.ndarray, lon: np.ndarray, radius_m: float) -> np.ndarray:
    """The mask value of the swath pixel nearest to each (lat, lon), by brute-force great-circle distance."""
    la1, lo1 = np.radians(mask.latitude.ravel())[None, :], np.radians(mask.longitude.ravel())[None, :]
    la2, lo2 = np.radians(lat)[:, None], np.radians(lon)[:, None]
    h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
    metres = 2 * EARTH_RADIUS_KM * 1000 * np.arcsin(np.sqrt(h))
    nearest = metres.argmin(axis=1)
    values = mask.cloud_mask.ravel()[nearest]
    return np.where(metres.min(axis=1) <= radius_m, values, cf_mask.NO_DATA)


def check_pixels(tif, mask: cf_mask.MaskProduct, n: int = 300) -> None:
    """Random grid pixels hold the nearest swath pixel's value (pixels at a tie in distance are skipped)."""
    with rasterio.open(tif) as src:
        image = src.read(1)
        rows, columns = np.unravel_index(np.random.default_rng(0).choice(image.size, n, replace=False), image.shape)
        lon, lat = (np.asarray(v) for v in xy(src.transform, rows, columns))
    expected = nearest_swath_values(mask, lat, lon, geotiff.DEFAULT_RADIUS_M)
    assert (image[rows, columns] == expected).mean() > 0.97  # nearest-neighbour ties at equal distance may differ
    assert {0, 1, cf_mask.NO_DATA} <= set(np.unique(image[rows, columns]))


def test_cog_on_a_latitude_longitude_grid(tmp_path):
    lat, lon = swath(40.0, 10.0, 192.0)
    mask = cf_mask.read_mask(write_test_mask(tmp_path / "m.nc", lat, lon))
    tif = geotiff.write_geotiff(tmp_path / "m.tif", mask)
    with rasterio.open(tif) as src:
        assert src.crs.is_geographic and src.crs.to_epsg() == 4326
        assert src.count == 1 and src.dtypes == ("uint8",) and src.nodata == cf_mask.NO_DATA
        assert src.overviews(1) and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.res == (geotiff.DEFAULT_RESOLUTION, geotiff.DEFAULT_RESOLUTION)
        assert src.tags()["product_name"] == mask.product_name and "1500 m" in src.tags()["resampling"]
        left, bottom, right, top = src.bounds
        assert left <= lon.min() and right >= lon.max() and bottom <= lat.min() and top >= lat.max()
        # A known place: the swath pixel (20, 30) is clear or cloudy, and so is the grid pixel holding it.
        row, column = src.index(lon[20, 30], lat[20, 30])
        centre_lon, centre_lat = xy(src.transform, row, column)
        expected = nearest_swath_values(mask, np.array([centre_lat]), np.array([centre_lon]), 1500.0)[0]
        assert src.read(1)[row, column] == expected != cf_mask.NO_DATA
        assert src.read(1)[0, 0] == cf_mask.NO_DATA  # the grid's corner lies outside the tilted swath
    check_pixels(tif, mask)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_no_data_inside_the_swath_stays_no_data(tmp_path):
    mask = cf_mask.read_mask(write_test_mask(tmp_path / "m.nc"))  # its last 10 columns have no valid input
    tif = geotiff.write_geotiff(tmp_path / "m.tif", mask)
    with rasterio.open(tif) as src:
        row, column = src.index(mask.longitude[30, 75], mask.latitude[30, 75])
        assert src.read(1)[row, column] == cf_mask.NO_DATA


def test_a_swath_across_the_antimeridian_makes_one_continuous_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(geotiff, "_BAND_PIXELS", 1000)  # resampled in bands of ~11 grid rows
    lat, lon = swath(-20.0, 179.95, 12.0)
    mask = cf_mask.read_mask(write_test_mask(tmp_path / "m.nc", lat, lon))
    tif = geotiff.write_geotiff(tmp_path / "m.tif", mask)
    with rasterio.open(tif) as src:
        assert 179 < src.bounds.left < 180 < src.bounds.right < 181 and src.width < 200
        row, column = src.index(lon[30, 40] % 360, lat[30, 40])  # longitudes run past 180 on this grid
        assert src.read(1)[row, column] != cf_mask.NO_DATA
    check_pixels(tif, mask)


def test_settings_are_checked(tmp_path):
    mask = cf_mask.read_mask(write_test_mask(tmp_path / "m.nc"))
    with pytest.raises(CloudTasksError, match="resolution"):
        geotiff.write_geotiff(tmp_path / "m.tif", mask, resolution=0)
    with pytest.raises(CloudTasksError, match="radius"):
        geotiff.write_geotiff(tmp_path / "m.tif", mask, radius_m=-1)
    with pytest.raises(CloudTasksError, match="too large"):
        geotiff.write_geotiff(tmp_path / "m.tif", mask, resolution=1e-5)
    assert not (tmp_path / "m.tif").exists()
