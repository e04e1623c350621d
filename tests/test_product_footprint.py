"""Swath footprints: they cover every geolocated pixel, split at the antimeridian, close over a pole; bbox unions.

``swath`` (a synthetic swath on the sphere, anywhere, any heading) is shared with the other test_product_ modules.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from cloud_tasks.product.footprint import swath_footprint, union_bbox

EARTH_RADIUS_KM = 6371.0
SHAPE = (60, 80)


def swath(lat0: float, lon0: float, heading: float, shape=SHAPE, pixel_km: float = 1.0):
    """(latitude, longitude) of a swath of ``shape`` pixels of ``pixel_km``, centred on (lat0, lon0), rows along
    ``heading`` (degrees from north): exact great-circle geometry, so valid across the antimeridian and the poles."""
    la, lo, h = np.radians([lat0, lon0, heading])
    centre = np.array([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
    east = np.array([-np.sin(lo), np.cos(lo), 0.0])
    north = np.array([-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)])
    along = np.cos(h) * north + np.sin(h) * east
    across = np.cross(centre, along)
    a = (np.arange(shape[0]) - (shape[0] - 1) / 2) * pixel_km / EARTH_RADIUS_KM
    c = (np.arange(shape[1]) - (shape[1] - 1) / 2) * pixel_km / EARTH_RADIUS_KM
    a, c = (v[..., None] for v in np.meshgrid(a, c, indexing="ij"))
    p = np.cos(c) * (np.cos(a) * centre + np.sin(a) * along) + np.sin(c) * across
    return np.degrees(np.arcsin(np.clip(p[..., 2], -1, 1))), np.degrees(np.arctan2(p[..., 1], p[..., 0]))


def covers_all(footprint, lat: np.ndarray, lon: np.ndarray) -> bool:
    ok = np.isfinite(lat) & np.isfinite(lon)
    return bool(footprint.geometry.covers(shapely.points(lon[ok], lat[ok])).all())


def test_an_ordinary_swath_is_one_small_polygon_covering_its_pixels():
    lat, lon = swath(40.0, 10.0, 192.0)
    fp = swath_footprint(lat, lon)
    assert fp.geometry.geom_type == "Polygon" and fp.geometry.is_valid and covers_all(fp, lat, lon)
    assert shapely.get_num_coordinates(fp.geometry) < 30  # simplified: not one vertex per edge pixel
    assert not fp.crosses_antimeridian
    west, south, east, north = fp.bbox
    assert west <= lon.min() and east >= lon.max() and south <= lat.min() and north >= lat.max()
    assert east - lon.max() < 0.05 and lat.min() - south < 0.05  # tight: the margin is the tolerance
    assert fp.geometry.exterior.is_ccw  # RFC 7946
    assert fp.geojson()["type"] == "Polygon" and isinstance(fp.geojson()["coordinates"][0][0], list)
    assert fp.wkt_lat_lon().startswith("POLYGON ((4")  # latitude first


def test_a_swath_across_the_antimeridian_is_split_in_two():
    lat, lon = swath(10.0, 179.9, 350.0)
    assert lon.min() < -179 and lon.max() > 179
    fp = swath_footprint(lat, lon)
    assert fp.geometry.geom_type == "MultiPolygon" and len(fp.geometry.geoms) == 2
    assert covers_all(fp, lat, lon)
    west, _, east, _ = fp.bbox
    assert fp.crosses_antimeridian and 179 < west < 180 and -180 < east < -179
    xs = shapely.get_coordinates(fp.geometry)[:, 0]
    assert xs.min() >= -180 and xs.max() <= 180
    assert fp.geometry.area < 1.5  # two slivers, not a band round the globe (~0.5 x 0.8 deg in all)


def test_a_swath_over_a_pole_is_closed_over_it():
    lat, lon = swath(89.8, 30.0, 0.0)
    fp = swath_footprint(lat, lon)
    assert covers_all(fp, lat, lon) and fp.geometry.covers(shapely.Point(0.0, 90.0))
    assert fp.bbox[0] == -180 and fp.bbox[2] == 180 and fp.bbox[3] == 90
    south_pole = swath(-89.9, -120.0, 90.0)
    fp = swath_footprint(*south_pole)
    assert covers_all(fp, *south_pole) and fp.geometry.covers(shapely.Point(45.0, -90.0))


def test_a_swath_near_a_pole_but_not_over_it():
    lat, lon = swath(86.0, 30.0, 0.0, shape=(300, 80))
    fp = swath_footprint(lat, lon)
    assert covers_all(fp, lat, lon) and not fp.geometry.covers(shapely.Point(0.0, 90.0))
    assert fp.bbox[2] - fp.bbox[0] < 60  # ~17 deg of longitude at 86-89 N, not the whole circle


def test_missing_geolocation_at_the_edges_is_left_out_and_none_at_all_is_an_error():
    full_lat, full_lon = swath(-30.0, -60.0, 12.0)
    lat, lon = full_lat.copy(), full_lon.copy()
    lat[:, :5] = np.nan  # columns without geolocation, as beyond the real tie points
    lon[-3:] = np.nan
    fp = swath_footprint(lat, lon)
    assert covers_all(fp, lat, lon)
    left_out = shapely.points(full_lon[5:-5, 0], full_lat[5:-5, 0])  # 5 km beyond the first geolocated column
    assert not fp.geometry.intersects(shapely.MultiPoint(left_out))
    with pytest.raises(ValueError, match="no pixel"):
        swath_footprint(np.full(SHAPE, np.nan), np.full(SHAPE, np.nan))
    with pytest.raises(ValueError, match="one shape"):
        swath_footprint(lat, lon[:, :10])


def test_union_of_bounding_boxes():
    assert union_bbox([(0, 0, 10, 1), (20, -1, 30, 2)]) == (0, -1, 30, 2)
    assert union_bbox([(170, 0, -170, 1), (160, -1, 175, 2)]) == (160, -1, -170, 2)  # across the antimeridian
    assert union_bbox([(-179, 0, -170, 1), (175, -1, 179, 2)]) == (175, -1, -170, 2)  # shorter the other way
    assert union_bbox([(-180, 0, 180, 1), (175, -1, 179, 2)]) == (-180, -1, 180, 2)
    assert union_bbox([(0, 0, 100, 1), (100, 0, -160, 1), (-160, 0, -1, 1)]) == (0, 0, -1, 1)
    with pytest.raises(ValueError):
        union_bbox([])
