"""The grids of a generated product and interpolation from its tie points.

A product has three grids: 1 km ``in`` (the thermal channels and flags), 0.5 km ``an`` (twice as fine,
the visible channels) and the 16 km x 1 km tie-point grid ``tn``/``tx`` (angles and coordinates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridSpec:
    """Sizes and offsets of a product's grids: 1 km ``in``, 0.5 km ``an`` (twice as fine) and tie-point ``tn``."""

    rows: int  # 1 km rows (also the tie-point rows: both are 1 km along track)
    columns: int  # 1 km columns
    tp_columns: int  # tie-point columns (16 km across track)
    tp_valid_columns: int  # tie-point columns >= this are NaN, as in the real geometry_tn.nc
    track_offset_in: int
    track_offset_an: int
    track_offset_tn: int
    start_offset: int = 4081

    @property
    def an_shape(self) -> tuple[int, int]:
        return 2 * self.rows, 2 * self.columns


IN_RESOLUTION = (1000.0, 1000.0)  # (across, along) metres, as in the `resolution` attribute
AN_RESOLUTION = (500.0, 500.0)
TN_RESOLUTION = (16000.0, 1000.0)
RESOLUTION_ATTR = {"in": "[ 1000 1000 ]", "an": "[ 500 500 ]", "tn": "[ 16000 1000 ]"}


def _centred_grid(rows: int, columns: int) -> GridSpec:
    """A grid with nadir at its centre column and tie points covering every image column (plus a margin)."""
    track_in = columns // 2
    scale = IN_RESOLUTION[0] / TN_RESOLUTION[0]
    track_tn = math.ceil(track_in * scale) + 1
    last_tp = (columns - 1 - track_in) * scale + track_tn
    valid = math.ceil(last_tp) + 3
    return GridSpec(rows, columns, valid + 4, valid, track_in, 2 * track_in, track_tn)


GRIDS: dict[str, GridSpec] = {
    "full": GridSpec(1200, 1500, 130, 112, 998, 1996, 64),
    "small": _centred_grid(288, 384),
}


def parse_resolution(text: str) -> tuple[float, float]:
    """(across, along) metres from a ``resolution`` attribute such as ``'[ 500 500 ]'``."""
    parts = str(text).split()
    return float(parts[1]), float(parts[2])


def tie_point_positions(
    shape: tuple[int, int],
    resolution: tuple[float, float],
    track_offset: float,
    tp_resolution: tuple[float, float],
    tp_track_offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional tie-point row of every image row and tie-point column of every image column."""
    rows = np.arange(shape[0]) * (resolution[1] / tp_resolution[1])
    columns = (np.arange(shape[1]) - track_offset) * (resolution[0] / tp_resolution[0]) + tp_track_offset
    return rows, columns


def an_positions(grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Tie-point positions of the 0.5 km grid of a generated product."""
    return tie_point_positions(grid.an_shape, AN_RESOLUTION, grid.track_offset_an, TN_RESOLUTION, grid.track_offset_tn)


def in_positions(grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Tie-point positions of the 1 km grid of a generated product (1 km pixel (y, x) = 0.5 km pixel (2y, 2x))."""
    shape = (grid.rows, grid.columns)
    return tie_point_positions(shape, IN_RESOLUTION, grid.track_offset_in, TN_RESOLUTION, grid.track_offset_tn)


def _axis_weights(pos: np.ndarray, n: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour and its weight for fractional positions on an axis of ``n`` samples (clamped to the ends)."""
    pos = np.clip(pos, 0, n - 1)
    left = np.minimum(pos.astype(np.intp), n - 2)
    return left, (pos - left).astype(dtype)


def resample(values: np.ndarray, row_pos: np.ndarray, col_pos: np.ndarray) -> np.ndarray:
    """Bilinear (separable) interpolation of a 2-D array at every (row, column) of two position vectors."""
    i0, wr = _axis_weights(row_pos, values.shape[0], values.dtype)
    j0, wc = _axis_weights(col_pos, values.shape[1], values.dtype)
    wr = wr[:, None]
    along = values[i0] * (1 - wr) + values[i0 + 1] * wr  # rows first: the tie-point grid is narrow
    # In place: the 0.5 km results are large, and fresh arrays cost page faults.
    out = np.take(along, j0, axis=1)
    out *= 1 - wc
    right = np.take(along, j0 + 1, axis=1)
    right *= wc
    out += right
    return out


def _lat_lon_to_xyz(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lat, lon = np.radians(lat), np.radians(lon)
    return np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)


def geodetic_on_grid(
    lat_tp: np.ndarray, lon_tp: np.ndarray, row_pos: np.ndarray, col_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude interpolated from tie points through unit vectors (safe across poles and 180 deg)."""
    x, y, z = (resample(v, row_pos, col_pos) for v in _lat_lon_to_xyz(lat_tp, lon_tp))
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


def micro_degrees(values: np.ndarray) -> np.ndarray:
    """Degrees as the int32 micro-degrees ``geodetic_an.nc`` and ``geodetic_in.nc`` store."""
    return np.rint(values * 1e6).astype(np.int32)
