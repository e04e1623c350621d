"""The footprint of a swath: a simplified polygon around its geolocated pixels, safe across 180 deg and the poles.

Usage::

    from cloud_tasks.product.footprint import swath_footprint

    fp = swath_footprint(latitude, longitude)  # 2-D arrays of the 1 km grid (degrees, NaN where unknown)
    fp.geometry  # shapely Polygon, or MultiPolygon when split at the antimeridian (lon in [-180, 180])
    fp.geojson()  # {"type": "Polygon"|"MultiPolygon", "coordinates": ...} (lon, lat), for STAC
    fp.bbox  # (west, south, east, north); west > east when the swath crosses the antimeridian
    fp.wkt_lat_lon()  # ACDD ``geospatial_bounds`` (EPSG:4326 axis order: latitude first)

How: the ring of edge pixels (first and last geolocated column of every row, first and last row) is unwrapped in
longitude so that no step exceeds 180 deg. A ring that winds once round the globe encloses a pole: it is closed
over that pole. The polygon is simplified (Douglas-Peucker, ``tolerance`` deg) and grown by the same tolerance,
so it still covers every pixel centre, then cut into pieces of [-180, 180] (a MultiPolygon at the antimeridian).
Exterior rings are counter-clockwise, coordinates rounded to 1e-6 deg (RFC 7946 GeoJSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_TOLERANCE = 0.01  # degrees (~1 km): simplification error, and the margin added back
_DECIMALS = 6


@dataclass(frozen=True)
class Footprint:
    """A swath's footprint in longitude/latitude degrees."""

    geometry: object  # shapely Polygon or MultiPolygon
    bbox: tuple[float, float, float, float]  # west, south, east, north

    @property
    def crosses_antimeridian(self) -> bool:
        return self.bbox[0] > self.bbox[2]

    def geojson(self) -> dict:
        """The geometry as a GeoJSON mapping (plain lists, for JSON)."""
        import shapely

        return json_ready(shapely.geometry.mapping(self.geometry))

    def wkt_lat_lon(self) -> str:
        """WKT with latitude first, as ACDD's ``geospatial_bounds`` in its default CRS EPSG:4326 has it."""
        import shapely

        swapped = shapely.transform(self.geometry, lambda xy: xy[:, ::-1])
        return shapely.to_wkt(swapped, rounding_precision=_DECIMALS, trim=True)


def json_ready(value):
    """Tuples to lists, recursively (GeoJSON mappings from shapely hold tuples)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def swath_footprint(latitude: np.ndarray, longitude: np.ndarray, *, tolerance: float = DEFAULT_TOLERANCE) -> Footprint:
    """The footprint of a swath from its 2-D latitude/longitude (degrees; NaN where unknown).

    Raise ValueError when the arrays differ in shape or hold no geolocated pixel.
    """
    import shapely

    lat, lon = np.asarray(latitude, np.float64), np.asarray(longitude, np.float64)
    if lat.ndim != 2 or lat.shape != lon.shape:
        raise ValueError(f"latitude {lat.shape} and longitude {lon.shape} must be 2-D arrays of one shape")
    ring_lat, ring_lon = _edge_ring(lat, lon)
    unwrapped, pole = _unwrap_ring(ring_lat, ring_lon)
    polygon = shapely.make_valid(shapely.Polygon(unwrapped))
    polygon = polygon.simplify(tolerance).buffer(tolerance, join_style="mitre")
    geometry, west_east = _split_at_antimeridian(polygon)
    geometry = _tidy(geometry)
    _, south, _, north = geometry.bounds
    west, east = (-180.0, 180.0) if pole else west_east
    bbox = (west, max(south, -90.0), east, min(north, 90.0))
    return Footprint(geometry, tuple(round(v, _DECIMALS) for v in bbox))


def _edge_ring(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of the edge pixels, in order round the swath: first row, last columns, last row, first columns."""
    ok = np.isfinite(lat) & np.isfinite(lon)
    rows = np.flatnonzero(ok.any(axis=1))
    if rows.size == 0:
        raise ValueError("no pixel has a finite latitude and longitude")
    first = np.argmax(ok, axis=1)
    last = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
    top, bottom = rows[0], rows[-1]
    top_cols, bottom_cols = np.flatnonzero(ok[top]), np.flatnonzero(ok[bottom])[::-1]
    ring_rows = np.concatenate([np.full(top_cols.size, top), rows, np.full(bottom_cols.size, bottom), rows[::-1]])
    ring_cols = np.concatenate([top_cols, last[rows], bottom_cols, first[rows[::-1]]])
    keep = np.ones(ring_rows.size, bool)
    keep[1:] = (np.diff(ring_rows) != 0) | (np.diff(ring_cols) != 0)
    ring_rows, ring_cols = ring_rows[keep], ring_cols[keep]
    return lat[ring_rows, ring_cols], lon[ring_rows, ring_cols]


def _unwrap_ring(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(x, y) vertices with continuous longitude, and the pole (+-90) the ring winds round, if it does."""
    unwrapped = np.degrees(np.unwrap(np.radians(lon)))
    closing = (lon[0] - lon[-1] + 180.0) % 360.0 - 180.0
    winding = unwrapped[-1] + closing - unwrapped[0]
    points = np.column_stack([unwrapped, lat])
    if abs(winding) < 180.0:
        return points, None
    pole = 90.0 if np.mean(lat) > 0 else -90.0
    end = unwrapped[-1] + closing  # the first vertex again, one turn further
    over_the_pole = [[end, lat[0]], [end, pole], [unwrapped[0], pole]]
    return np.vstack([points, over_the_pole]), pole


def _split_at_antimeridian(polygon) -> tuple[object, tuple[float, float]]:
    """The unwrapped polygon cut into pieces of [-180, 180] (each shifted by whole turns), and (west, east)."""
    import shapely

    minx, _, maxx, _ = polygon.bounds
    turns = range(math.floor((minx + 180.0) / 360.0), math.floor((maxx + 180.0) / 360.0) + 1)
    pieces = []
    for turn in turns:
        window = shapely.box(-180.0 + 360.0 * turn, -90.0, 180.0 + 360.0 * turn, 90.0)
        piece = polygon.intersection(window)
        if not piece.is_empty:
            pieces.append(shapely.affinity.translate(piece, xoff=-360.0 * turn))
    west, east = minx - 360.0 * turns[0], maxx - 360.0 * turns[-1]
    if maxx - minx >= 360.0:
        west, east = -180.0, 180.0
    return shapely.unary_union(pieces), (max(west, -180.0), min(east, 180.0))


def _tidy(geometry):
    """Polygons only, exterior rings counter-clockwise, coordinates rounded (stable bytes in the catalogue)."""
    import shapely
    from shapely.geometry.polygon import orient

    polygons = [g for g in getattr(geometry, "geoms", [geometry]) if g.geom_type == "Polygon" and not g.is_empty]
    rounded = [shapely.transform(orient(p, 1.0), lambda xy: np.round(xy, _DECIMALS)) for p in polygons]
    rounded.sort(key=lambda p: p.bounds)
    return rounded[0] if len(rounded) == 1 else shapely.MultiPolygon(rounded)


def union_bbox(bboxes) -> tuple[float, float, float, float]:
    """The smallest (west, south, east, north) holding every bbox; boxes with west > east cross the antimeridian."""
    boxes = [tuple(float(v) for v in box) for box in bboxes]
    if not boxes:
        raise ValueError("no bounding box to unite")
    south, north = min(b[1] for b in boxes), max(b[3] for b in boxes)
    arcs = sorted((w, e + 360.0 if w > e else e) for w, _, e, _ in boxes)
    if any(e - w >= 360.0 for w, e in arcs):
        return -180.0, south, 180.0, north
    merged = [list(arcs[0])]
    for west, east in arcs[1:]:
        if west <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], east)
        else:
            merged.append([west, east])
    # The widest gap between consecutive arcs (round the circle) is where the union starts and ends.
    gaps = [
        (merged[(i + 1) % len(merged)][0] + (360.0 if i == len(merged) - 1 else 0.0) - merged[i][1], i)
        for i in range(len(merged))
    ]
    gap, before = max(gaps)
    if gap <= 0:
        return -180.0, south, 180.0, north
    west, east = merged[(before + 1) % len(merged)][0], merged[before][1]
    return west, south, east - 360.0 if east > 180.0 else east, north
