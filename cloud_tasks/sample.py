"""Synthetic Sentinel-3 SLSTR L1 RBT products and SST match-ups: sample data for the whole pipeline.

``python -m cloud_tasks make-sample OUT --date YYYY-MM-DD --products N [--missions S3A,S3B] [--grid small|full]``
writes ``N`` zipped products in the CEDA layout (``OUT/sentinel3a/data/SLSTR/L1_RBT/YYYY/MM/DD/<name>.zip``)
and the day's match-up table ``OUT/matchups/sst_matchups_YYYYMMDD.h5``.
``python -m cloud_tasks make-sample PRODUCT.SEN3 --complete`` adds the files a partial real product lacks
(``S1..S6_radiance_an.nc``, ``geodetic_an.nc``), consistent with the files it has.

Generated products copy the real product's variable names, dtypes, dimensions, attributes, global
attributes and compression (zlib level 2 + shuffle, one chunk per variable). Decisions and simplifications:

- Illumination kind by product index: ``day night twilight day day`` repeating (day SZA 20-75 deg, night
  SZA > 100 deg everywhere, twilight crossing 90 deg inside the frame).
- ``confidence_in``: ``day`` where the solar zenith angle (tie points interpolated to the pixel) is < 90 deg
  and ``twilight`` where 90 <= SZA < 100 deg (the real product sets ``day`` up to 90 deg, not 85);
  ``ocean``/``land``/``coastline``, ``unfilled`` where the brightness temperatures are fill, ``summary_cloud``.
- Clouds: a smooth random field thresholded at a per-product cloud fraction (10-70 %). ``bayes_in`` is
  non-zero exactly where that field is cloudy (``single_low|dual_low``, plus the ``moderate`` bits for
  thicker cloud); ``summary_cloud`` uses a slightly lower threshold, so it flags a few % more pixels.
- Radiances ``L = R * E0 * cos(SZA) / pi`` on the 0.5 km grid (each 1 km scene value repeated 2x2, plus
  0.5 km noise); fill where SZA >= 90 deg or unknown (no VIS/SWIR at night: ``S{n}_exception_an``
  ``ISP_absent``), a few scattered fill pixels (``unfilled_pixel``) in one channel of some products.
- ``geodetic_an.nc``: ``latitude_an``/``longitude_an`` int32 with ``scale_factor`` 1e-6 (as real SLSTR),
  ``elevation_an`` int16 metres, interpolated from the ``geodetic_tx`` tie points via unit vectors.
- ``flags_in.nc: bayes_orphan_in`` is on (rows, columns), as in the real product.

Match-up table (pandas HDF, key ``matchups``, one row per buoy match-up, day products only):

| column | meaning |
|---|---|
| ``isst`` | buoy SST, deg C (a few rows <= 0: failing the seed's ``isst > 0`` filter) |
| ``slat``, ``slon`` | buoy position, deg (most within 0.004/0.008 deg of the pixel, ~5 % far) |
| ``latitude_an``, ``longitude_an`` | the product's ``geodetic_an`` value at 0.5 km pixel ``(2 y_cems, 2 x_cems)`` |
| ``satzan``, ``satzao`` | nadir (from ``geometry_tn``) and oblique satellite zenith angles, deg |
| ``quality_level`` | 0-5 (~85 % are 5) |
| ``sst_algorithm_type`` | 1 N2, 2 N3R, 3 N3, 4 D2 (~85 %), 5 D3 |
| ``sat_sst_0..3`` | satellite SST, K, algorithms N2, N3, D2, D3: truth + noise, several K cold where cloudy |
| ``cems_path`` | ``/neodc/<CEDA mission dir>/YYYY/MM/DD/<product>.SEN3`` |
| ``x_cems``, ``y_cems`` | column and row of the pixel on the 1 km grid |
| ``pcloudn``, ``pcloudo`` | Bayesian cloud probabilities (nadir, oblique); mostly > 0.9 where cloudy |
| ``bayes_in`` | the product's ``bayes_in`` flag word at the pixel |
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import logging
import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file
from cloud_tasks.errors import InputError
from cloud_tasks.naming import CEDA_MISSION_DIRS, ProductName, format_product_name

log = logging.getLogger(__name__)


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
_RESOLUTION_ATTR = {"in": "[ 1000 1000 ]", "an": "[ 500 500 ]", "tn": "[ 16000 1000 ]"}


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

RADIANCE_CHANNELS = ("S1", "S2", "S3", "S4", "S5", "S6")
BT_CHANNELS = ("S7", "S8", "S9")
SOLAR_IRRADIANCE = dict(zip(RADIANCE_CHANNELS, (1858.954, 1538.219, 968.199, 370.085, 248.214, 78.347), strict=True))
_BAND_CENTRE = (0.5543, 0.6595, 0.868, 1.3748, 1.6134, 2.2557)  # um, as the real files hold them
_BANDWIDTH = (0.0193, 0.0192, 0.0206, 0.0208, 0.0607, 0.0502)
# Radiance packing: 0.5 km counts * scale; the scales fit reflectance ~1.3 at the zenith into int16.
RADIANCE_SCALE = dict(zip(RADIANCE_CHANNELS, (0.025, 0.02, 0.0125, 0.005, 0.0035, 0.001), strict=True))
BT_SCALE, BT_OFFSET = 0.01, 283.73
FILL_INT16 = np.int16(-32768)
FILL_INT32 = np.int32(-2147483648)

CONFIDENCE_MEANINGS = (
    "coastline ocean tidal land inland_water unfilled spare spare cosmetic duplicate day twilight sun_glint snow"
    " summary_cloud summary_pointing"
)
BAYES_MEANINGS = "single_low single_moderate dual_low dual_moderate spare spare spare spare"
CLOUD_MEANINGS = (
    "visible 1.37_threshold 1.6_small_histogram 1.6_large_histogram 2.25_small_histogram 2.25_large_histogram"
    " 11_spatial_coherence gross_cloud thin_cirrus medium_high fog_low_stratus 11_12_view_difference"
    " 3.7_11_view_difference thermal_histogram spare spare"
)
POINTING_MEANINGS = (
    "FlipMirrorAbsoluteError FlipMirrorIntegratedError FlipMirrorRMSError ScanMirrorAbsoluteError"
    " ScanMirrorIntegratedError ScanMirrorRMSError ScanTimeError Platform_Mode"
)
EXCEPTION_MEANINGS = (
    "ISP_absent pixel_absent not_decompressed no_signal saturation invalid_radiance no_parameters unfilled_pixel"
)
DAY_MAX_SZA, TWILIGHT_MAX_SZA = 90.0, 100.0

_KIND_CYCLE = ("day", "night", "twilight", "day", "day")
_ORBIT_PERIOD_S = 27 * 86400 / 385  # Sentinel-3: 385 orbits in a 27-day repeat cycle
_ORBITS_PER_CYCLE = 385
# An ascending-node crossing per mission: (time, absolute orbit, cycle, relative orbit). S3A's is that of the
# real product (frame 1439 s after it); S3B's is a plausible one.
_ORBIT_EPOCHS = {
    "S3A": (dt.datetime(2017, 3, 15, 11, 10, 21, tzinfo=dt.UTC), 5600, 15, 237),
    "S3B": (dt.datetime(2019, 1, 1, 0, 40, 0, tzinfo=dt.UTC), 3560, 12, 100),
}
_ORPHANS_PER_COLUMN = 0.125  # the real product: 187 orphan pixels for 1500 columns
_BASE_ATTRS = {  # constant global attributes, as in the real product
    "comment": " ",
    "contact": "EOHElp@esa.int",
    "netCDF_version": "4.2 of Jul  5 2012 17:07:43 $",
    "references": "S3IPF PDS 005 - i2r3 - Product Data Format Specification - SLSTR, S3IPF PDS 002 - i1r6 - Product"
    " Data Format Specification - Product Structures, S3IPF DPM 003 - i1r5 - Detailed Processing Model - SLSTR Level 1",
    "source": "IPF-SL-1 06.17",
    "title": "S3 SLSTR L1 Radiance and Brightness Temperatures Product. (Measurements + Annotations)",
}
PRODUCT_FILES = tuple(
    sorted(
        [f"{ch}_quality_an.nc" for ch in RADIANCE_CHANNELS]
        + [f"{ch}_radiance_an.nc" for ch in RADIANCE_CHANNELS]
        + [f"{ch}_BT_in.nc" for ch in BT_CHANNELS]
        + ["flags_in.nc", "geodetic_an.nc", "geodetic_tx.nc", "geometry_tn.nc", "time_in.nc", "xfdumanifest.xml"]
    )
)
COMPLETED_FILES = (*(f"{ch}_radiance_an.nc" for ch in RADIANCE_CHANNELS), "geodetic_an.nc")
MATCHUP_COLUMNS = (
    *("isst", "slat", "slon", "latitude_an", "longitude_an", "satzan", "satzao", "quality_level"),
    *("sst_algorithm_type", "sat_sst_0", "sat_sst_1", "sat_sst_2", "sat_sst_3", "cems_path", "x_cems", "y_cems"),
    *("pcloudn", "pcloudo", "bayes_in"),
)
# Reflectance by surface class (sea, land, snow/ice) and of thick cloud, channels S1..S6.
_SURFACE_REFLECTANCE = np.array(
    [
        [0.055, 0.035, 0.015, 0.002, 0.006, 0.003],
        [0.07, 0.09, 0.28, 0.004, 0.24, 0.14],
        [0.85, 0.82, 0.75, 0.01, 0.08, 0.04],
    ],
    dtype=np.float32,
).T
_CLOUD_REFLECTANCE = np.array([0.8, 0.78, 0.76, 0.0, 0.48, 0.3], dtype=np.float32)  # S4 depends on cloud height


def bit(meanings: str, name: str) -> int:
    """The mask of flag ``name`` in a ``flag_meanings`` string (masks 1, 2, 4, ... in order)."""
    return 1 << meanings.split().index(name)


# --- product list -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductSpec:
    """One product to generate: its name, precise sensing times, orbit, illumination kind, grid and seed."""

    name: ProductName
    start_time: dt.datetime
    stop_time: dt.datetime
    absolute_orbit: int
    kind: str  # "day", "night" or "twilight"
    grid: GridSpec
    seed: int
    index: int

    def rng(self, stream: int) -> np.random.Generator:
        """An independent random stream of this product (0 scene, 1 match-ups, 2 0.5 km noise)."""
        return np.random.default_rng([self.seed, self.index, stream])


def _orbit(mission: str, when: dt.datetime) -> tuple[int, int, int, int]:
    """(absolute orbit, cycle, relative orbit, frame = seconds since the ascending node) at ``when``."""
    anx, absolute, cycle, relative = _ORBIT_EPOCHS[mission]
    elapsed = (when - anx).total_seconds()
    k = math.floor(elapsed / _ORBIT_PERIOD_S)
    rel0 = relative - 1 + k
    frame = int(elapsed - k * _ORBIT_PERIOD_S)
    return max(1, absolute + k), max(1, cycle + rel0 // _ORBITS_PER_CYCLE), rel0 % _ORBITS_PER_CYCLE + 1, frame


def product_specs(
    date: dt.date, n_products: int, missions=("S3A", "S3B"), grid: str = "small", seed: int = 0
) -> list[ProductSpec]:
    """The products ``make_sample_archive`` generates: 3-minute frames spread over ``date`` (UTC)."""
    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, not {n_products}")
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r} (expected one of {', '.join(GRIDS)})")
    unknown = [m for m in missions if m not in CEDA_MISSION_DIRS]
    if unknown or not missions:
        raise ValueError(f"missions must be among {', '.join(CEDA_MISSION_DIRS)}, not {missions!r}")
    midnight = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
    slot = (86400 - 200) / n_products
    specs = []
    for index in range(n_products):
        rng = np.random.default_rng([seed, index, 3])
        mission = missions[index % len(missions)]
        start = midnight + dt.timedelta(seconds=int((index + rng.uniform(0.05, 0.9)) * slot))
        # Fractional start and duration keep the name's stop (truncated to seconds) at start + 180 s.
        start_time = start + dt.timedelta(microseconds=int(rng.uniform(0.3, 0.7) * 1e6))
        duration = rng.uniform(179.7, 180.29)
        stop_time = start_time + dt.timedelta(microseconds=int(duration * 1e6))
        creation = start + dt.timedelta(seconds=int(rng.uniform(2, 5) * 3600))
        absolute, cycle, relative, frame = _orbit(mission, start)
        stem = format_product_name(
            mission,
            start,
            start + dt.timedelta(seconds=180),
            creation,
            duration_s=int(duration),
            cycle=cycle,
            relative_orbit=relative,
            frame=frame,
            centre="LN2",
            timeliness="NT",
            baseline="004",
        )
        kind = _KIND_CYCLE[index % len(_KIND_CYCLE)]
        specs.append(
            ProductSpec(ProductName.parse(stem), start_time, stop_time, absolute, kind, GRIDS[grid], seed, index)
        )
    return specs


# --- interpolation ------------------------------------------------------------------------------------------


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


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """A smooth random float32 field of unit variance: white noise on ``cell``-pixel cells, upsampled."""
    coarse = rng.standard_normal((int(shape[0] / cell) + 3, int(shape[1] / cell) + 3), dtype=np.float32)
    phase = rng.uniform(0, 1, 2)
    field = resample(coarse, np.arange(shape[0]) / cell + phase[0], np.arange(shape[1]) / cell + phase[1])
    field -= field.mean()
    field /= field.std()
    return field


def _lat_lon_to_xyz(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lat, lon = np.radians(lat), np.radians(lon)
    return np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)


def geodetic_on_grid(
    lat_tp: np.ndarray, lon_tp: np.ndarray, row_pos: np.ndarray, col_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude interpolated from tie points through unit vectors (safe across poles and 180 deg)."""
    x, y, z = (resample(v, row_pos, col_pos) for v in _lat_lon_to_xyz(lat_tp, lon_tp))
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


# --- scene --------------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """The truth of one generated product: tie-point and 1 km fields its files are made from."""

    spec: ProductSpec
    tie_points: dict[str, np.ndarray]  # geometry_tn / geodetic_tx variables, (rows, tp_columns) float64
    sza: np.ndarray  # 1 km solar zenith angle, deg (float64)
    vza: np.ndarray  # 1 km nadir satellite zenith angle, deg
    land: np.ndarray  # bool
    coast: np.ndarray  # bool
    elevation: np.ndarray  # metres, float32
    sst: np.ndarray  # sea surface temperature, K (float32)
    cloud: np.ndarray  # cloud opacity 0..1, > 0 exactly where cloudy
    summary_cloud: np.ndarray  # bool: the L1 summary cloud test (slightly different threshold)
    cloud_height: np.ndarray  # 0..1
    bt: np.ndarray  # (3, rows, columns) float32 K, NaN where fill

    @property
    def cloudy(self) -> np.ndarray:
        return self.cloud > 0

    @property
    def cloud_fraction(self) -> float:
        return float(self.cloudy.mean())

    @functools.cached_property
    def sza_an(self) -> np.ndarray:
        """Solar zenith angle on the 0.5 km grid (float64), interpolated from the tie points."""
        g = self.spec.grid
        pos = tie_point_positions(g.an_shape, AN_RESOLUTION, g.track_offset_an, TN_RESOLUTION, g.track_offset_tn)
        return resample(self.tie_points["solar_zenith_tn"], *pos)

    @functools.cached_property
    def sunlight_an(self) -> tuple[np.ndarray, np.ndarray]:
        """(cos(SZA), dark) on the 0.5 km grid."""
        return sunlight(self.sza_an)

    @functools.cached_property
    def geodetic_an(self) -> tuple[np.ndarray, np.ndarray]:
        """``latitude_an``/``longitude_an`` as written: int32 micro-degrees."""
        g = self.spec.grid
        pos = tie_point_positions(g.an_shape, AN_RESOLUTION, g.track_offset_an, TN_RESOLUTION, g.track_offset_tn)
        lat, lon = geodetic_on_grid(self.tie_points["latitude_tx"], self.tie_points["longitude_tx"], *pos)
        return _micro_degrees(lat), _micro_degrees(lon)


def _micro_degrees(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 1e6).astype(np.int32)


def _solar_zenith_tp(kind: str, g: GridSpec, rng: np.random.Generator) -> np.ndarray:
    """A smooth solar zenith field on the tie points: linear across and along track plus a little curvature."""
    scale = IN_RESOLUTION[0] / TN_RESOLUTION[0]
    lo, hi = (
        -g.track_offset_in * scale + g.track_offset_tn,
        (g.columns - 1 - g.track_offset_in) * scale + g.track_offset_tn,
    )
    x = 2 * (np.arange(g.tp_columns) - lo) / (hi - lo) - 1  # -1..1 over the image columns
    y = np.arange(g.rows) / max(g.rows - 1, 1) - 0.5
    sign = rng.choice([-1.0, 1.0])
    base, across, along = {
        "day": (rng.uniform(35, 58), rng.uniform(0, 10), rng.uniform(-3, 3)),
        "night": (rng.uniform(115, 140), rng.uniform(0, 8), rng.uniform(-3, 3)),
        "twilight": (rng.uniform(87, 93), rng.uniform(8, 12), rng.uniform(-2, 2)),
    }[kind]
    sza = base + sign * across * x[None, :] + along * y[:, None] + 1.5 * x[None, :] ** 2
    return np.clip(sza, 0.0, 180.0)


def _tie_point_fields(spec: ProductSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """geometry_tn and geodetic_tx variables on the tie-point grid (NaN beyond the valid columns for geometry)."""
    g = spec.grid
    col = np.arange(g.tp_columns, dtype=np.float64)
    row = np.arange(g.rows, dtype=np.float64)
    scale = IN_RESOLUTION[0] / TN_RESOLUTION[0]
    half_width = max(g.track_offset_in, g.columns - 1 - g.track_offset_in) * scale
    across_km = np.broadcast_to((col - g.track_offset_tn) * TN_RESOLUTION[0] / 1000, (g.rows, g.tp_columns))
    along_km = np.broadcast_to(row[:, None] * TN_RESOLUTION[1] / 1000, (g.rows, g.tp_columns))
    heading = np.radians(348.0 if spec.kind == "night" else 192.0)  # ascending at night, descending by day
    lat0, lon0 = rng.uniform(-60, 60), rng.uniform(-180, 180)
    north = along_km * np.cos(heading) - across_km * np.sin(heading)
    east = along_km * np.sin(heading) + across_km * np.cos(heading)
    lat = lat0 + north / 111.195
    lon = (lon0 + east / (111.195 * np.cos(np.radians(lat))) + 180) % 360 - 180
    sza = _solar_zenith_tp(spec.kind, g, rng)
    saa = (rng.uniform(0, 360) + 20 * (col / g.tp_columns)[None, :] + 5 * (row / g.rows)[:, None]) % 360
    offset = np.abs(col - g.track_offset_tn)[None, :] / half_width
    vza = np.broadcast_to(61.0 * offset, sza.shape).copy()
    vaa = np.broadcast_to(np.where(col >= g.track_offset_tn, 102.0, 282.0)[None, :], sza.shape).copy()
    fields = {
        "sat_azimuth_tn": vaa,
        "sat_path_tn": np.zeros_like(sza),
        "sat_zenith_tn": vza,
        "solar_azimuth_tn": saa,
        "solar_path_tn": np.full_like(sza, 1.4878e11),
        "solar_zenith_tn": sza,
    }
    for values in fields.values():
        values[:, g.tp_valid_columns :] = np.nan
    return fields | {"latitude_tx": lat, "longitude_tx": lon}


def make_scene(spec: ProductSpec) -> Scene:
    """Generate the scene of one product (deterministic for its seed and index)."""
    g = spec.grid
    rng = spec.rng(0)
    shape = (g.rows, g.columns)
    tie = _tie_point_fields(spec, rng)
    pos = tie_point_positions(shape, IN_RESOLUTION, g.track_offset_in, TN_RESOLUTION, g.track_offset_tn)
    sza, vza, lat = (resample(tie[name], *pos) for name in ("solar_zenith_tn", "sat_zenith_tn", "latitude_tx"))

    land_fraction = 0.0 if rng.random() < 0.4 else rng.uniform(0.02, 0.12)
    land_field = _smooth_field(rng, shape, rng.uniform(48, 96))
    land_threshold = np.quantile(land_field, 1 - land_fraction) if land_fraction else np.inf
    land = land_field > land_threshold
    sea_neighbour = np.zeros_like(land)
    for axis in (0, 1):
        for shift in (1, -1):
            sea_neighbour |= ~np.roll(land, shift, axis)
    coast = land & sea_neighbour
    elevation = np.where(land, 20 + 400 * (land_field - land_threshold), 0).astype(np.float32)

    sst = np.clip(29 * np.cos(np.radians(lat)) ** 2 - 1, -1.8, 30.5).astype(np.float32) + np.float32(273.15)
    sst += 0.8 * _smooth_field(rng, shape, 64) + 0.15 * _smooth_field(rng, shape, 6)
    land_offset = {"day": 6.0, "night": -5.0, "twilight": 0.0}[spec.kind]
    surface_t = np.where(land, sst + land_offset + 2.5 * _smooth_field(rng, shape, 24), sst)

    cell = rng.uniform(16, 40)
    field = 0.8 * _smooth_field(rng, shape, cell) + 0.45 * _smooth_field(rng, shape, cell / 4)
    threshold = np.quantile(field, 1 - rng.uniform(0.1, 0.7))
    strength = np.clip((field - threshold) / 0.8, 0, 1)
    cloud = np.where(field > threshold, 0.25 + 0.75 * strength, 0).astype(np.float32)
    summary_cloud = field > threshold - 0.1
    height = np.clip(0.5 + 0.35 * _smooth_field(rng, shape, 2 * cell), 0, 1)

    mu0 = np.cos(np.radians(np.minimum(sza, 90))).astype(np.float32)
    path = (1 / np.cos(np.radians(vza))).astype(np.float32)
    wet = np.clip(0.3 + 0.5 * (sst - 273.15) / 30 + 0.1 * _smooth_field(rng, shape, 48), 0.1, 1.0)
    absorption = (0.4 + 2.6 * wet) * path
    bt11 = surface_t - absorption
    bt12 = surface_t - 1.6 * absorption
    bt37 = surface_t - 0.6 * absorption + mu0 * np.where(land, 6.0, 1.5)
    cloud_top = sst - (6 + 40 * height)
    # Day-time 3.7 um clouds also reflect sunlight: an unpredictable warm term.
    reflected = mu0 * 14 * np.clip(0.5 + 0.5 * _smooth_field(rng, shape, cell / 2), 0, 1.5)
    bt = np.stack(
        [
            (1 - cloud) * bt37 + cloud * (cloud_top + 1 + reflected),
            (1 - cloud) * bt11 + cloud * cloud_top,
            (1 - cloud) * bt12 + cloud * (cloud_top - 0.3) - 1.5 * cloud * (1 - cloud),
        ]
    ).astype(np.float32)
    bt += rng.standard_normal(bt.shape, dtype=np.float32) * np.array([0.08, 0.04, 0.05], np.float32)[:, None, None]
    if rng.random() < 0.5:  # one partly lost scan line in the three thermal channels
        row, length = rng.integers(g.rows), int(rng.integers(g.columns // 8, g.columns // 2))
        first = int(rng.integers(0, g.columns - length))
        bt[:, row, first : first + length] = np.nan
    return Scene(spec, tie, sza, vza, land, coast, elevation, sst, cloud, summary_cloud, height, bt)


# --- NetCDF writing -----------------------------------------------------------------------------------------

Variable = tuple[str, np.ndarray, tuple[str, ...], dict]


def _write_netcdf(path: Path, attrs: dict, dims: dict[str, int], variables: list[Variable]) -> None:
    """Write a NetCDF-4 file like the real ones: one zlib-2 + shuffle chunk per variable, values pre-packed."""
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts(attrs)
        for name, size in dims.items():
            ds.createDimension(name, size)
        for name, data, dimensions, var_attrs in variables:
            var_attrs = dict(var_attrs)
            fill = var_attrs.pop("_FillValue", None)
            var = ds.createVariable(
                name,
                data.dtype,
                dimensions,
                zlib=True,
                complevel=2,
                shuffle=True,
                chunksizes=data.shape,
                fill_value=fill,
            )
            var.set_auto_maskandscale(False)
            var.setncatts(var_attrs)
            var[...] = data


def _global_attrs(spec: ProductSpec, grid: str) -> dict:
    """The global attributes every file of the real product carries, for grid ``in``, ``an`` or ``tn``."""
    g = spec.grid
    track = {"in": g.track_offset_in, "an": g.track_offset_an, "tn": g.track_offset_tn}[grid]
    attrs = {
        "absolute_orbit_number": np.uint32(spec.absolute_orbit),
        "creation_time": f"{spec.name.creation:%Y%m%dT%H%M%S}Z",
        "institution": spec.name.centre,
        "product_name": spec.name.sen3,
        "resolution": _RESOLUTION_ATTR[grid],
        "start_offset": np.int32(g.start_offset),
        "start_time": f"{spec.start_time:%Y-%m-%dT%H:%M:%S.%f}Z",
        "stop_time": f"{spec.stop_time:%Y-%m-%dT%H:%M:%S.%f}Z",
        "track_offset": np.int32(track),
    }
    return dict(sorted((_BASE_ATTRS | attrs).items()))


def _flag_attrs(meanings: str, dtype, **extra) -> dict:
    masks = np.array([1 << i for i in range(len(meanings.split()))], dtype=dtype)
    return {"flag_masks": masks, "flag_meanings": meanings, **extra}


def _orphan_columns(columns: int) -> np.ndarray:
    """Image columns whose values the orphan variables repeat (orphans are real pixels dropped by regridding)."""
    return np.linspace(0, columns - 1, max(1, round(columns * _ORPHANS_PER_COLUMN))).astype(np.intp)


def _pack(values: np.ndarray, scale: float, offset: float = 0.0) -> np.ndarray:
    """int16 counts of ``values`` (NaN -> fill)."""
    counts = np.rint((values - offset) / scale)
    counts = np.clip(counts, -32767, 32767, out=counts)
    counts[np.isnan(counts)] = FILL_INT16
    return counts.astype(np.int16)


def _exception_vars(channel: str, grid: str, exception: np.ndarray, orphans: np.ndarray, standard: str):
    attrs = _flag_attrs(EXCEPTION_MEANINGS, np.uint8, standard_name=standard)
    return [
        (f"{channel}_exception_{grid}", exception, ("rows", "columns"), attrs),
        (f"{channel}_exception_orphan_{grid}", exception[:, orphans], ("rows", "orphan_pixels"), attrs),
    ]


def write_radiance_file(path: Path, attrs: dict, channel: str, counts: np.ndarray, exception: np.ndarray) -> None:
    """``S{n}_radiance_an.nc`` from packed counts (fill already set) and the exception flags."""
    orphans = _orphan_columns(counts.shape[1])
    rad_attrs = {
        "_FillValue": FILL_INT16,
        "add_offset": np.float64(0.0),
        "long_name": f"TOA radiance for channel {channel} (A stripe grid, nadir view)",
        "scale_factor": np.float64(RADIANCE_SCALE[channel]),
        "standard_name": "toa_upwelling_spectral_radiance",
        "units": "mW.m-2.sr-1.nm-1",
    }
    orphan_attrs = rad_attrs | {
        "long_name": f"TOA radiance for orphaned pixels for channel {channel} (A stripe grid, nadir view)"
    }
    variables = [
        *_exception_vars(channel, "an", exception, orphans, "toa_upwelling_spectral_radiance_status_flag"),
        (f"{channel}_radiance_an", counts, ("rows", "columns"), rad_attrs),
        (f"{channel}_radiance_orphan_an", counts[:, orphans], ("rows", "orphan_pixels"), orphan_attrs),
    ]
    dims = {"rows": counts.shape[0], "columns": counts.shape[1], "orphan_pixels": len(orphans)}
    _write_netcdf(path, attrs, dims, variables)


def write_geodetic_an(path: Path, attrs: dict, lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray) -> None:
    """``geodetic_an.nc``: int32 micro-degree latitude/longitude and int16 elevation (m), plus orphans."""
    orphans = _orphan_columns(lat.shape[1])

    def coordinate(name: str, unit: str, limit: int) -> dict:
        return {
            "_FillValue": FILL_INT32,
            "long_name": f"{name.capitalize()} of detector FOV centre on the earth's surface",
            "scale_factor": np.float64(1e-6),
            "standard_name": name,
            "units": unit,
            "valid_max": np.int32(limit * 1_000_000),
            "valid_min": np.int32(-limit * 1_000_000),
        }

    elevation_attrs = {
        "_FillValue": FILL_INT16,
        "long_name": "Elevation of detector FOV centre above the reference ellipsoid",
        "standard_name": "height_above_reference_ellipsoid",
        "units": "m",
    }
    variables = []
    for name, data, var_attrs in (
        ("elevation", elevation, elevation_attrs),
        ("latitude", lat, coordinate("latitude", "degrees_north", 90)),
        ("longitude", lon, coordinate("longitude", "degrees_east", 180)),
    ):
        variables.append((f"{name}_an", data, ("rows", "columns"), var_attrs))
        variables.append((f"{name}_orphan_an", data[:, orphans], ("rows", "orphan_pixels"), var_attrs))
    dims = {"rows": lat.shape[0], "columns": lat.shape[1], "orphan_pixels": len(orphans)}
    _write_netcdf(path, attrs, dims, variables)


def sunlight(sza: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos(SZA) as float32, 0 where dark; dark = SZA >= 90 deg or unknown) of a solar zenith field."""
    dark = ~(sza < DAY_MAX_SZA)
    mu0 = np.cos(np.radians(np.where(dark, 90.0, sza))).astype(np.float32)
    mu0[dark] = 0
    return mu0, dark


def _radiance_counts(
    reflectance: np.ndarray, light: tuple[np.ndarray, np.ndarray], channel: str, e0: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Packed 0.5 km radiance and exception flags from a 1 km reflectance (each value repeated 2x2, plus noise).

    ``L = R * E0 * cos(SZA) / pi``; fill where dark (no VIS/SWIR acquisition: ``ISP_absent``).
    """
    mu0, dark = light
    exception = np.where(dark, np.uint8(bit(EXCEPTION_MEANINGS, "ISP_absent")), np.uint8(0))
    if dark.all():
        return np.full(dark.shape, FILL_INT16), exception
    to_counts = np.float32(e0 / (math.pi * RADIANCE_SCALE[channel]))
    counts = np.repeat(np.repeat(reflectance * to_counts, 2, axis=0), 2, axis=1)
    noise = rng.random(counts.shape, dtype=np.float32)  # uniform: much cheaper than normal, sd 0.002
    noise -= np.float32(0.5)
    noise *= to_counts * np.float32(0.002 * math.sqrt(12))
    counts += noise
    counts *= mu0
    np.rint(counts, out=counts)
    np.clip(counts, 0, 32767, out=counts)  # no negative radiance from the noise
    counts = counts.astype(np.int16)
    counts[dark] = FILL_INT16
    return counts, exception


def _reflectance(surface: np.ndarray, cloud: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(6, rows, columns) float32 reflectance: surface class 0 sea, 1 land, 2 snow/ice, mixed with cloud."""
    surf = _SURFACE_REFLECTANCE[:, surface]
    thick = np.broadcast_to(_CLOUD_REFLECTANCE[:, None, None], surf.shape).copy()
    thick[3] = 0.02 + 0.3 * height  # 1.375 um sees high cloud only
    return surf + (thick - surf) * cloud


def _bt_file(scene: Scene, channel: str, values: np.ndarray) -> tuple[dict, list[Variable]]:
    counts = _pack(values, BT_SCALE, BT_OFFSET)
    orphans = _orphan_columns(counts.shape[1])
    attrs = {
        "_FillValue": FILL_INT16,
        "add_offset": np.float64(BT_OFFSET),
        "long_name": f"Gridded pixel brightness temperature for channel {channel} (1km TIR grid, nadir view)",
        "scale_factor": np.float64(BT_SCALE),
        "standard_name": "toa_brightness_temperature",
        "units": "K",
    }
    orphan_attrs = attrs | {
        "long_name": f"Brightness temperatures for orphaned pixels for channel {channel} (1km TIR grid, nadir view)"
    }
    exception = np.where(counts == FILL_INT16, np.uint8(bit(EXCEPTION_MEANINGS, "unfilled_pixel")), np.uint8(0))
    variables = [
        (f"{channel}_BT_in", counts, ("rows", "columns"), attrs),
        (f"{channel}_BT_orphan_in", counts[:, orphans], ("rows", "orphan_pixels"), orphan_attrs),
        *_exception_vars(channel, "in", exception, orphans, "toa_brightness_temperature_status_flag"),
    ]
    return {"rows": counts.shape[0], "columns": counts.shape[1], "orphan_pixels": len(orphans)}, variables


def _flags(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence_in uint16, bayes_in uint8, cloud_in uint16) of a scene."""

    def c(name):
        return np.uint16(bit(CONFIDENCE_MEANINGS, name))

    confidence = np.where(scene.land, c("land"), c("ocean"))
    confidence |= np.where(scene.coast, c("coastline"), 0).astype(np.uint16)
    confidence |= np.where(np.isnan(scene.bt).any(axis=0), c("unfilled"), 0).astype(np.uint16)
    confidence |= np.where(scene.sza < DAY_MAX_SZA, c("day"), 0).astype(np.uint16)
    twilight = (scene.sza >= DAY_MAX_SZA) & (scene.sza < TWILIGHT_MAX_SZA)
    confidence |= np.where(twilight, c("twilight"), 0).astype(np.uint16)
    confidence |= np.where(scene.summary_cloud, c("summary_cloud"), 0).astype(np.uint16)

    def b(*names):
        return np.uint8(sum(bit(BAYES_MEANINGS, n) for n in names))

    bayes = np.where(scene.cloudy, b("single_low", "dual_low"), b())
    bayes |= np.where(scene.cloud > 0.4, b("single_moderate"), b())
    bayes |= np.where(scene.cloud > 0.55, b("dual_moderate"), b())

    def t(*names):
        return np.uint16(sum(bit(CLOUD_MEANINGS, n) for n in names))

    day = scene.sza < DAY_MAX_SZA
    cloud = np.where(scene.summary_cloud & (scene.cloud > 0.5), t("gross_cloud"), t("11_spatial_coherence"))
    cloud |= np.where(scene.summary_cloud & day, t("visible", "1.6_large_histogram"), t("thermal_histogram"))
    cloud[~scene.summary_cloud] = 0
    return confidence, bayes, cloud


def _flags_file(scene: Scene) -> tuple[dict, list[Variable]]:
    confidence, bayes, cloud = _flags(scene)
    pointing = np.zeros_like(bayes)
    orphans = _orphan_columns(bayes.shape[1])
    rc, ro = ("rows", "columns"), ("rows", "orphan_pixels")
    bayes_attrs = _flag_attrs(BAYES_MEANINGS, np.uint8)
    cloud_attrs = _flag_attrs(CLOUD_MEANINGS, np.uint16)
    conf_attrs = _flag_attrs(CONFIDENCE_MEANINGS, np.uint16)
    point_attrs = _flag_attrs(POINTING_MEANINGS, np.uint8)
    variables = [
        ("bayes_in", bayes, rc, bayes_attrs),
        ("bayes_orphan_in", bayes, rc, bayes_attrs),  # (rows, columns) in the real product too
        ("cloud_in", cloud, rc, cloud_attrs),
        ("cloud_orphan_in", cloud[:, orphans], ro, cloud_attrs),
        ("confidence_in", confidence, rc, conf_attrs),
        ("confidence_orphan_in", confidence[:, orphans], ro, conf_attrs),
        ("pointing_in", pointing, rc, point_attrs),
        ("pointing_orphan_in", pointing[:, orphans], ro, point_attrs),
    ]
    return {"rows": bayes.shape[0], "columns": bayes.shape[1], "orphan_pixels": len(orphans)}, variables


def _angle_attrs(long_name: str, standard_name: str | None = None, units: str = "degrees") -> dict:
    attrs = {"_FillValue": np.float64(np.nan), "long_name": long_name}
    return attrs | ({"standard_name": standard_name} if standard_name else {}) | {"units": units}


_GEOMETRY_ATTRS = {
    "sat_azimuth_tn": _angle_attrs("Satellite azimuth angle", "satellite_azimuth_angle"),
    "sat_path_tn": _angle_attrs("Distance from satellite to surface", units="m"),
    "sat_zenith_tn": _angle_attrs("Satellite zenith angle", "satellite_zenith_angle"),
    "solar_azimuth_tn": _angle_attrs("Solar azimuth angle", "solar_azimuth_angle"),
    "solar_path_tn": _angle_attrs("Distance from sun to surface", units="m"),
    "solar_zenith_tn": _angle_attrs("Solar zenith angle", "solar_zenith_angle"),
}


def _geodetic_tx_attrs(name: str, unit: str, limit: float) -> dict:
    return {
        "_FillValue": np.float64(np.nan),
        "long_name": f"{name.capitalize()} of detector FOV centre on the earth's surface",
        "standard_name": name,
        "units": unit,
        "valid_max": np.float64(limit),
        "valid_min": np.float64(-limit),
    }


def _quality_variables(channel: str, index: int, rows: int) -> list[Variable]:
    e0 = np.full(4, SOLAR_IRRADIANCE[channel])
    view = f"channel {channel} (A stripe, nadir view)"
    return [
        (
            f"{channel}_T_detector_an",
            np.full(rows, 266.563),
            ("rows",),
            {"_FillValue": -1.0, "long_name": "Detector temperature", "units": "K"},
        ),
        (
            f"{channel}_band_centre_an",
            np.full(4, _BAND_CENTRE[index]),
            ("detectors",),
            {
                "_FillValue": np.nan,
                "long_name": f"Detector filter band centre for {view}",
                "standard_name": "radiation_wavelength",
                "units": "m",
            },
        ),
        (
            f"{channel}_bandwidth_an",
            np.full(4, _BANDWIDTH[index]),
            ("detectors",),
            {"_FillValue": np.nan, "standard_name": "radiation_wavelength", "units": "m"},
        ),
        (
            f"{channel}_solar_irradiance_an",
            e0,
            ("detectors",),
            {"_FillValue": np.nan, "long_name": "Solar irradiance at top of atmosphere", "units": "mW m^-2 nm^-1"},
        ),
    ]


def _time_variables(spec: ProductSpec) -> list[Variable]:
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    start = (spec.start_time - epoch) // dt.timedelta(microseconds=1)
    stop = (spec.stop_time - epoch) // dt.timedelta(microseconds=1)
    stamps = start + (np.arange(spec.grid.rows, dtype=np.int64) * (stop - start)) // spec.grid.rows
    int32_fill = {"_FillValue": FILL_INT32}
    return [
        (
            "PIXSYNC_i",
            np.array([81], np.int32),
            ("one",),
            int32_fill | {"long_name": "Frequency at which the pixels are sampled on each scan", "units": "us"},
        ),
        (
            "SCANSYNC",
            np.array([299985], np.int32),
            ("one",),
            int32_fill | {"long_name": "Scan Period defined as a complete rotation of the scan mirrors", "units": "us"},
        ),
        (
            "time_stamp_i",
            stamps,
            ("rows",),
            {
                "_FillValue": np.int64(-9223372036854775808),
                "long_name": "Acquisition time of the sub-satellite point included in each line",
                "standard_name": "time",
                "units": "microseconds since 2000-01-01T00:00:00Z",
            },
        ),
    ]


def _write_visible_files(scene: Scene, folder: Path, attrs: dict) -> None:
    """``S1..S6_radiance_an.nc`` and ``S1..S6_quality_an.nc`` of a generated product."""
    spec, g = scene.spec, scene.spec.grid
    reflectance = _reflectance(scene.land.astype(np.uint8), scene.cloud, scene.cloud_height)
    noise = spec.rng(2)
    n_an = g.an_shape[0] * g.an_shape[1]
    lost_channel, lost = int(noise.integers(6)), noise.integers(0, n_an, noise.integers(0, n_an // 2000))
    for k, channel in enumerate(RADIANCE_CHANNELS):
        e0 = SOLAR_IRRADIANCE[channel]
        counts, exception = _radiance_counts(reflectance[k], scene.sunlight_an, channel, e0, noise)
        if k == lost_channel and spec.kind != "night":  # a few scattered lost pixels (< 0.05 %)
            counts.flat[lost], exception.flat[lost] = FILL_INT16, bit(EXCEPTION_MEANINGS, "unfilled_pixel")
        write_radiance_file(folder / f"{channel}_radiance_an.nc", attrs, channel, counts, exception)
        dims = {"detectors": 4, "rows": g.an_shape[0]}
        _write_netcdf(folder / f"{channel}_quality_an.nc", attrs, dims, _quality_variables(channel, k, g.an_shape[0]))


def write_product(scene: Scene, sen3_dir: str | Path) -> list[Path]:
    """Write all files of a generated product into the (existing, empty) folder ``sen3_dir``."""
    spec, g = scene.spec, scene.spec.grid
    folder = Path(sen3_dir)
    an, tn, tp_dims = _global_attrs(spec, "an"), _global_attrs(spec, "tn"), {"rows": g.rows, "columns": g.tp_columns}
    _write_visible_files(scene, folder, an)
    for k, channel in enumerate(BT_CHANNELS):
        dims, variables = _bt_file(scene, channel, scene.bt[k])
        _write_netcdf(folder / f"{channel}_BT_in.nc", _global_attrs(spec, "in"), dims, variables)
    dims, variables = _flags_file(scene)
    _write_netcdf(folder / "flags_in.nc", _global_attrs(spec, "in"), dims, variables)
    geometry = [(name, scene.tie_points[name], ("rows", "columns"), attrs) for name, attrs in _GEOMETRY_ATTRS.items()]
    _write_netcdf(folder / "geometry_tn.nc", tn, tp_dims, geometry)
    geodetic_tx = [
        (f"{name}_tx", scene.tie_points[f"{name}_tx"], ("rows", "columns"), _geodetic_tx_attrs(name, unit, limit))
        for name, unit, limit in (("latitude", "degrees_north", 90), ("longitude", "degrees_east", 180))
    ]
    _write_netcdf(folder / "geodetic_tx.nc", tn, tp_dims, geodetic_tx)
    lat, lon = scene.geodetic_an
    elevation = np.rint(np.repeat(np.repeat(scene.elevation, 2, axis=0), 2, axis=1)).astype(np.int16)
    write_geodetic_an(folder / "geodetic_an.nc", an, lat, lon, elevation)
    _write_netcdf(folder / "time_in.nc", _global_attrs(spec, "in"), {"one": 1, "rows": g.rows}, _time_variables(spec))
    files = sorted(folder.glob("*.nc"))
    (folder / "xfdumanifest.xml").write_text(_manifest(spec, files))
    return sorted(folder.iterdir())


def _manifest(spec: ProductSpec, files: list[Path]) -> str:
    """A small XFDU manifest: acquisition period, platform, product information and the data objects."""
    name = spec.name
    units, objects = [], []
    for path in files:
        object_id = f"SLSTR_{path.stem.upper()}_Data"
        units.append(
            f'      <xfdu:contentUnit ID="SLSTR_{path.stem.upper()}_Unit" unitType="Measurement Data Unit">\n'
            f'        <dataObjectPointer dataObjectID="{object_id}"/>\n      </xfdu:contentUnit>'
        )
        data = path.read_bytes()
        objects.append(
            f'    <dataObject ID="{object_id}">\n'
            f'      <byteStream mimeType="application/x-netcdf" size="{len(data)}">\n'
            f'        <fileLocation locatorType="URL" href="./{path.name}"/>\n'
            f'        <checksum checksumName="MD5">{hashlib.md5(data).hexdigest()}</checksum>\n'
            "      </byteStream>\n    </dataObject>"
        )
    start, stop = (f"{t:%Y-%m-%dT%H:%M:%S.%f}Z" for t in (spec.start_time, spec.stop_time))
    ns = (
        'xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:sentinel-safe="http://www.esa.int/safe/sentinel/1.1" '
        'xmlns:sentinel3="http://www.esa.int/safe/sentinel/sentinel-3/1.0"'
    )
    metadata = (
        f"<sentinel-safe:acquisitionPeriod><sentinel-safe:startTime>{start}</sentinel-safe:startTime>"
        f"<sentinel-safe:stopTime>{stop}</sentinel-safe:stopTime></sentinel-safe:acquisitionPeriod>",
        f"<sentinel-safe:platform><sentinel-safe:familyName>Sentinel-3</sentinel-safe:familyName>"
        f"<sentinel-safe:number>{name.mission[-1]}</sentinel-safe:number></sentinel-safe:platform>",
        f"<sentinel-safe:orbitReference><sentinel-safe:orbitNumber>{spec.absolute_orbit}</sentinel-safe:orbitNumber>"
        f"<sentinel-safe:relativeOrbitNumber>{name.relative_orbit}</sentinel-safe:relativeOrbitNumber>"
        f"<sentinel-safe:cycleNumber>{name.cycle}</sentinel-safe:cycleNumber></sentinel-safe:orbitReference>",
        f"<sentinel3:generalProductInformation><sentinel3:productName>{name.sen3}</sentinel3:productName>"
        f"<sentinel3:productType>SL_1_RBT___</sentinel3:productType>"
        f"<sentinel3:timeliness>{name.timeliness}</sentinel3:timeliness>"
        f"<sentinel3:baselineCollection>{name.baseline}</sentinel3:baselineCollection>"
        f"<sentinel3:creationTime>{name.creation:%Y%m%dT%H%M%S}</sentinel3:creationTime>"
        f"<sentinel3:productUnit><sentinel3:type>FRAME</sentinel3:type>"
        f"<sentinel3:duration>{name.duration_s}</sentinel3:duration>"
        f"<sentinel3:alongtrackCoordinate>{int(name.frame)}</sentinel3:alongtrackCoordinate></sentinel3:productUnit>"
        f"</sentinel3:generalProductInformation>",
    )
    ids = ("acquisitionPeriod", "platform", "measurementOrbitReference", "generalProductInformation")
    metadata_objects = "\n".join(
        f'    <metadataObject ID="{object_id}" classification="DESCRIPTION" category="DMD">\n'
        '      <metadataWrap mimeType="text/xml" vocabularyName="Sentinel-SAFE">\n'
        f"        <xmlData>{xml}</xmlData>\n      </metadataWrap>\n"
        "    </metadataObject>"
        for object_id, xml in zip(ids, metadata, strict=True)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<xfdu:XFDU {ns} version="esa/safe/sentinel/sentinel-3/slstr/level-1/1.0">\n'
        "  <informationPackageMap>\n"
        '    <xfdu:contentUnit ID="packageUnit" unitType="Information Package" '
        'textInfo="SENTINEL-3 SLSTR Level 1 package" dmdID="acquisitionPeriod platform">\n'
        + "\n".join(units)
        + "\n    </xfdu:contentUnit>\n  </informationPackageMap>\n"
        f"  <metadataSection>\n{metadata_objects}\n  </metadataSection>\n"
        "  <dataObjectSection>\n" + "\n".join(objects) + "\n  </dataObjectSection>\n</xfdu:XFDU>\n"
    )


# --- archive ------------------------------------------------------------------------------------------------


def _expected_members(name: ProductName) -> list[str]:
    return [f"{name.sen3}/"] + [f"{name.sen3}/{f}" for f in PRODUCT_FILES]


def _is_complete_zip(path: Path, name: ProductName) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return sorted(zf.namelist()) == _expected_members(name)
    except (OSError, zipfile.BadZipFile):
        return False


def _zip_folder(folder: Path, zip_path: Path, name: ProductName, when: dt.datetime) -> None:
    """Zip a product folder deterministically: sorted members, fixed dates, NetCDF stored (already compressed)."""
    date_time = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    with atomic_file(zip_path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        top = zipfile.ZipInfo(f"{name.sen3}/", date_time)
        top.external_attr = (0o40755 << 16) | 0x10
        zf.writestr(top, b"")
        for path in sorted(folder.iterdir()):
            info = zipfile.ZipInfo(f"{name.sen3}/{path.name}", date_time)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED if path.suffix == ".xml" else zipfile.ZIP_STORED
            zf.writestr(info, path.read_bytes(), compresslevel=6)


def write_product_zip(scene: Scene, zip_path: str | Path) -> Path:
    """Write a generated product as a CEDA-style zip holding one ``<name>.SEN3/`` folder."""
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=zip_path.parent) as staging:
        folder = Path(staging) / scene.spec.name.sen3
        folder.mkdir()
        write_product(scene, folder)
        _zip_folder(folder, zip_path, scene.spec.name, scene.spec.name.start)
    return zip_path


def make_sample_archive(
    out: str | Path,
    date: dt.date | str,
    n_products: int,
    missions=("S3A", "S3B"),
    grid: str = "small",
    seed: int = 0,
) -> list[Path]:
    """Write ``n_products`` synthetic zipped products under ``out`` (CEDA layout) and the day's match-up table.

    Deterministic for a seed (byte-identical zips); an existing complete zip is kept as it is.
    Returns the zip paths, sorted.
    """
    import pandas as pd

    out = Path(out)
    date = dt.date.fromisoformat(date) if isinstance(date, str) else date
    zips, tables = [], []
    for spec in product_specs(date, n_products, tuple(missions), grid, seed):
        began = time.perf_counter()
        scene = make_scene(spec)
        zip_path = spec.name.archive_path(out)
        if _is_complete_zip(zip_path, spec.name):
            log.info("%s exists, kept", zip_path.name)
        else:
            write_product_zip(scene, zip_path)
            log.info(
                "wrote %s (%s, cloud %.0f %%, %.1f s)",
                zip_path.name,
                spec.kind,
                100 * scene.cloud_fraction,
                time.perf_counter() - began,
            )
        zips.append(zip_path)
        if spec.kind == "day":
            tables.append(matchups_for_scene(scene))
    table = pd.concat(tables, ignore_index=True)  # never empty: product 0 is a day product
    write_matchups(matchup_path(out, date), table)
    return sorted(zips)


# --- match-ups ----------------------------------------------------------------------------------------------


def matchup_path(out: str | Path, date: dt.date) -> Path:
    """Where ``make_sample_archive`` writes the match-ups of ``date``."""
    return Path(out) / "matchups" / f"sst_matchups_{date:%Y%m%d}.h5"


def cems_path(name: ProductName, root: str = "/neodc") -> str:
    """The product's path as the match-up files name it (CEDA's ``/neodc`` tree, ``.SEN3``)."""
    return f"{root}/{CEDA_MISSION_DIRS[name.mission]}/{name.start:%Y/%m/%d}/{name.sen3}"


def matchups_for_scene(scene: Scene):
    """SST buoy match-ups of a day product (a pandas DataFrame with ``MATCHUP_COLUMNS``)."""
    import pandas as pd

    spec, g = scene.spec, scene.spec.grid
    rng = spec.rng(1)
    n = round(rng.integers(30, 101) * g.rows * g.columns / (GRIDS["small"].rows * GRIDS["small"].columns))
    usable = ~scene.land & ~np.isnan(scene.bt).any(axis=0) & (scene.sza < DAY_MAX_SZA)
    cloudy, clear = np.flatnonzero(usable & scene.cloudy), np.flatnonzero(usable & ~scene.cloudy)
    n_cloudy = min(len(cloudy), round(n * np.clip(scene.cloud_fraction, 0.3, 0.6)))
    n_clear = min(len(clear), n - n_cloudy)
    flat = np.concatenate([rng.choice(cloudy, n_cloudy, replace=False), rng.choice(clear, n_clear, replace=False)])
    flat.sort()
    n = len(flat)
    y, x = np.unravel_index(flat, (g.rows, g.columns))
    is_cloudy = scene.cloudy.flat[flat]
    opacity = scene.cloud.flat[flat].astype(np.float64)
    truth = scene.sst.flat[flat].astype(np.float64)
    lat_i, lon_i = scene.geodetic_an
    lat, lon = lat_i[2 * y, 2 * x] * 1e-6, lon_i[2 * y, 2 * x] * 1e-6

    isst = truth - 273.15 + rng.normal(0, 0.15, n)
    bad = rng.random(n) < 0.03  # bad buoys / ice: fail isst > 0
    isst[bad] = -rng.uniform(0.1, 1.5, bad.sum())
    far = rng.random(n) < 0.05
    slat = lat + rng.uniform(-0.004, 0.004, n) + far * rng.choice([-1, 1], n) * rng.uniform(0.01, 0.05, n)
    slon = lon + rng.uniform(-0.008, 0.008, n) + far * rng.choice([-1, 1], n) * rng.uniform(0.02, 0.1, n)
    satzao = rng.uniform(51, 55, n)
    oblique = rng.random(n) < 0.04
    satzao[oblique] = rng.uniform(55.5, 60, oblique.sum())
    quality = np.where(rng.random(n) < 0.85, 5, rng.integers(0, 5, n))
    algorithm = np.where(rng.random(n) < 0.85, 4, rng.choice([1, 2, 3, 5], n))
    contamination = is_cloudy * (2 + 8 * opacity) * rng.uniform(0.5, 1.5, n)  # cloud makes retrievals cold
    sat_sst = {
        f"sat_sst_{k}": truth + rng.normal(bias, sd, n) - contamination
        for k, (bias, sd) in enumerate(((0.1, 0.35), (0.05, 0.3), (-0.05, 0.22), (0.0, 0.25)))
    }
    likely = rng.random(n)
    pcloudn = np.where(
        is_cloudy,
        np.where(likely < 0.9, rng.uniform(0.9, 1.0, n), rng.uniform(0.5, 0.9, n)),
        np.where(likely < 0.94, rng.uniform(0.0, 0.3, n), rng.uniform(0.3, 1.0, n)),
    )
    pcloudo = np.clip(pcloudn + rng.normal(0, 0.04, n), 0, 1)
    _, bayes, _ = _flags(scene)
    table = {
        "isst": isst,
        "slat": slat,
        "slon": slon,
        "latitude_an": lat,
        "longitude_an": lon,
        "satzan": scene.vza.flat[flat],
        "satzao": satzao,
        "quality_level": quality.astype(np.int64),
        "sst_algorithm_type": algorithm.astype(np.int64),
        **sat_sst,
        "cems_path": cems_path(spec.name),
        "x_cems": x.astype(np.int64),
        "y_cems": y.astype(np.int64),
        "pcloudn": pcloudn,
        "pcloudo": pcloudo,
        "bayes_in": bayes.flat[flat].astype(np.int64),
    }
    return pd.DataFrame(table, columns=list(MATCHUP_COLUMNS))


def write_matchups(path: str | Path, table) -> Path:
    """Write a match-up DataFrame as a pandas HDF table (key ``matchups``), atomically; return the path."""
    missing = [c for c in MATCHUP_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"match-up table lacks column(s) {', '.join(missing)}")
    path = Path(path)
    with atomic_file(path) as tmp:
        table[list(MATCHUP_COLUMNS)].to_hdf(tmp, key="matchups", mode="w", format="table", index=False)
    return path


# --- completing a real partial product ----------------------------------------------------------------------


def _read_variable(path: Path, name: str) -> tuple[np.ndarray, dict]:
    """A variable (masked values -> NaN for floats; flags raw) and its file's global attributes."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as ds:
            var = ds[name]
            flag = "flag_meanings" in var.ncattrs()
            var.set_auto_mask(not flag)
            data = var[...]
            if np.ma.isMaskedArray(data):
                data = data.astype(np.float64).filled(np.nan)
            return np.asarray(data), {key: ds.getncattr(key) for key in ds.ncattrs()}
    except (OSError, IndexError) as exc:
        raise InputError(path, f"cannot read variable {name}: {exc}") from None


def _cloudiness_from_bts(bt11: np.ndarray, bt12: np.ndarray) -> np.ndarray:
    """Cloud opacity 0..1 from real brightness temperatures: colder than the warm (clear) end means cloudier."""
    valid = ~np.isnan(bt11)
    clear_end = np.percentile(bt11[valid], 99) if valid.any() else 290.0
    split = np.nan_to_num(bt11 - bt12, nan=0.0)  # thin cirrus: large split-window difference
    cloud = np.clip((clear_end - bt11) / 25 + 0.3 * np.clip(split - 1.5, 0, 2), 0, 1)
    fallback = np.median(cloud[valid]) if valid.any() else 0.0
    return np.where(valid, cloud, fallback).astype(np.float32)


def complete_product(sen3_dir: str | Path, seed: int = 0) -> list[Path]:
    """Add the missing ``S1..S6_radiance_an.nc`` and ``geodetic_an.nc`` to a partial product; return what was written.

    The 0.5 km grid is twice the 1 km grid of ``flags_in.nc``; global attributes come from the present
    ``S{n}_quality_an.nc`` (``resolution``, ``track_offset`` included); radiances come from a cloudiness
    derived from the real brightness temperatures and the surface flags, ``E0`` of the quality files and
    the solar zenith angle of ``geometry_tn.nc``. Existing files are never modified.
    """
    folder = Path(sen3_dir)
    if not folder.is_dir():
        raise InputError(folder, "not a product folder")
    todo = [name for name in COMPLETED_FILES if not (folder / name).exists()]
    if not todo:
        return []
    needed = ["flags_in.nc", "geometry_tn.nc", "geodetic_tx.nc", "S8_BT_in.nc", "S9_BT_in.nc"]
    needed += [f"{ch}_quality_an.nc" for ch in RADIANCE_CHANNELS]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise InputError(folder, f"cannot complete: missing {', '.join(missing)}")
    if not os.access(folder, os.W_OK):
        raise InputError(folder, "cannot complete: the folder is read-only (complete a copy)")
    rng = np.random.default_rng([seed, 0xC0])

    confidence, _ = _read_variable(folder / "flags_in.nc", "confidence_in")
    bt11, _ = _read_variable(folder / "S8_BT_in.nc", "S8_BT_in")
    bt12, _ = _read_variable(folder / "S9_BT_in.nc", "S9_BT_in")
    sza_tp, tn_attrs = _read_variable(folder / "geometry_tn.nc", "solar_zenith_tn")
    lat_tp, tx_attrs = _read_variable(folder / "geodetic_tx.nc", "latitude_tx")
    lon_tp, _ = _read_variable(folder / "geodetic_tx.nc", "longitude_tx")
    e0 = {}
    for ch in RADIANCE_CHANNELS:
        irradiance, an_attrs = _read_variable(folder / f"{ch}_quality_an.nc", f"{ch}_solar_irradiance_an")
        e0[ch] = float(irradiance[0])
    shape = (2 * confidence.shape[0], 2 * confidence.shape[1])

    def positions(attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        return tie_point_positions(
            shape,
            parse_resolution(an_attrs["resolution"]),
            float(an_attrs["track_offset"]),
            parse_resolution(attrs["resolution"]),
            float(attrs["track_offset"]),
        )

    def has(name: str) -> np.ndarray:
        return (confidence & bit(CONFIDENCE_MEANINGS, name)) > 0

    written = []
    if any(name.endswith("_radiance_an.nc") for name in todo):
        cloud = _cloudiness_from_bts(bt11, bt12)
        surface = np.where(has("snow"), 2, np.where(has("land"), 1, 0)).astype(np.uint8)
        height = np.clip((290.0 - np.nan_to_num(bt11, nan=260.0)) / 60, 0, 1).astype(np.float32)
        reflectance = _reflectance(surface, cloud, height)
        light = sunlight(resample(sza_tp, *positions(tn_attrs)))
        for k, ch in enumerate(RADIANCE_CHANNELS):
            path = folder / f"{ch}_radiance_an.nc"
            if path.name not in todo:
                continue
            counts, exception = _radiance_counts(reflectance[k], light, ch, e0[ch], rng)
            with atomic_file(path) as tmp:
                write_radiance_file(tmp, an_attrs, ch, counts, exception)
            written.append(path)
    if "geodetic_an.nc" in todo:
        lat, lon = geodetic_on_grid(lat_tp, lon_tp, *positions(tx_attrs))
        elevation = np.repeat(np.repeat(np.where(has("land"), 50, 0).astype(np.int16), 2, axis=0), 2, axis=1)
        path = folder / "geodetic_an.nc"
        with atomic_file(path) as tmp:
            write_geodetic_an(tmp, an_attrs, _micro_degrees(lat), _micro_degrees(lon), elevation)
        written.append(path)
    log.info("completed %s: %s", folder.name, ", ".join(p.name for p in written))
    return written


# --- command line -------------------------------------------------------------------------------------------


def _missions(text: str) -> tuple[str, ...]:
    missions = tuple(m.strip().upper() for m in text.split(",") if m.strip())
    if not missions or any(m not in CEDA_MISSION_DIRS for m in missions):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(CEDA_MISSION_DIRS)}")
    return missions


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(subparsers) -> None:
    """Add the ``make-sample`` sub-command."""
    parser = subparsers.add_parser(
        "make-sample",
        help="write synthetic SLSTR products and match-ups, or complete a partial product",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "out", type=Path, metavar="OUT", help="archive root to write, or a PRODUCT.SEN3 with --complete"
    )
    parser.add_argument("--date", type=_date, help="sensing date (UTC), YYYY-MM-DD")
    parser.add_argument("--products", type=int, help="number of products")
    parser.add_argument("--missions", type=_missions, default=("S3A", "S3B"), help="e.g. S3A,S3B (alternating)")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="small", help="product size (default small)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--complete", action="store_true", help="add the missing radiance/geodetic files to OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> list[Path]:
    """Handler of ``make-sample``."""
    if args.complete:
        return complete_product(args.out, seed=args.seed)
    if args.date is None or args.products is None:
        raise InputError(args.out, "make-sample needs --date and --products (or --complete)")
    if args.products < 1:
        raise InputError(args.out, f"--products must be >= 1, not {args.products}")
    zips = make_sample_archive(args.out, args.date, args.products, args.missions, args.grid, args.seed)
    log.info("%d products under %s", len(zips), args.out)
    return zips
