"""Completion of a partial real product: the ``S1..S6_radiance_an.nc``, ``geodetic_an.nc`` and ``geodetic_in.nc``
it lacks.

The added files are consistent with the files present: the 0.5 km grid is twice the 1 km grid of
``flags_in.nc``; global attributes of the 0.5 km files come from the ``S{n}_quality_an.nc`` files, those of
``geodetic_in.nc`` from ``flags_in.nc`` (``resolution`` and ``track_offset`` included); radiances come from a
cloudiness derived from the real brightness temperatures and the surface flags, ``E0`` of the quality files and
the solar zenith angle of ``geometry_tn.nc``; coordinates of both grids are interpolated from the
``geodetic_tx.nc`` tie points (so ``geodetic_in`` at (y, x) equals ``geodetic_an`` at (2y, 2x) up to rounding).
Existing files are never modified.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file
from cloud_tasks.errors import InputError
from cloud_tasks.hdf import REFLECTANCE_CHANNELS
from cloud_tasks.sample.flags import CONFIDENCE_MEANINGS, bit
from cloud_tasks.sample.grid import geodetic_on_grid, micro_degrees, parse_resolution, resample, tie_point_positions
from cloud_tasks.sample.netcdf import radiance_counts, write_geodetic, write_radiance_file
from cloud_tasks.sample.product import (
    BT_FILES,
    FLAGS_FILE,
    GEODETIC_FILES,
    GEODETIC_TX_FILE,
    GEOMETRY_FILE,
    QUALITY_FILES,
    RADIANCE_FILES,
)
from cloud_tasks.sample.scene import reflectance_of, sunlight

log = logging.getLogger(__name__)

COMPLETED_FILES = (*RADIANCE_FILES.values(), *GEODETIC_FILES.values())
_NEEDED_FILES = (FLAGS_FILE, GEOMETRY_FILE, GEODETIC_TX_FILE, BT_FILES["S8"], BT_FILES["S9"], *QUALITY_FILES.values())


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


@dataclass(frozen=True)
class _TiePointGrid:
    """Where a file's values lie: its ``resolution`` (across, along, metres) and ``track_offset``."""

    resolution: tuple[float, float]
    track_offset: float

    @classmethod
    def of(cls, path: Path, attrs: dict) -> _TiePointGrid:
        try:
            return cls(parse_resolution(attrs["resolution"]), float(attrs["track_offset"]))
        except (KeyError, IndexError, TypeError, ValueError):
            problem = "has no valid 'resolution' ('[ across along ]') and 'track_offset' attributes"
            raise InputError(path, problem) from None


@dataclass(frozen=True)
class _Inputs:
    """What completion reads from the files present."""

    confidence: np.ndarray  # confidence_in, raw flag words
    bt11: np.ndarray  # S8 brightness temperature, K, NaN at fill
    bt12: np.ndarray  # S9
    sza_tp: np.ndarray  # solar_zenith_tn
    geometry_grid: _TiePointGrid
    lat_tp: np.ndarray  # latitude_tx
    lon_tp: np.ndarray
    geodetic_grid: _TiePointGrid
    e0: dict[str, float]  # solar irradiance of detector 0, by channel
    an_attrs: dict  # global attributes of the quality files, given to the 0.5 km files written
    an_grid: _TiePointGrid
    in_attrs: dict  # global attributes of flags_in.nc, given to geodetic_in.nc
    in_grid: _TiePointGrid

    def shape(self, grid: str) -> tuple[int, int]:
        """(rows, columns) of the ``in`` (1 km) or ``an`` (0.5 km) grid."""
        factor = {"in": 1, "an": 2}[grid]
        return factor * self.confidence.shape[0], factor * self.confidence.shape[1]

    def positions(self, tie: _TiePointGrid, grid: str = "an") -> tuple[np.ndarray, np.ndarray]:
        """Tie-point positions of every pixel of the ``an`` or ``in`` grid on a tie-point grid."""
        image = {"an": self.an_grid, "in": self.in_grid}[grid]
        return tie_point_positions(
            self.shape(grid), image.resolution, image.track_offset, tie.resolution, tie.track_offset
        )

    def has(self, name: str) -> np.ndarray:
        """Where ``confidence_in`` carries the flag ``name``."""
        return (self.confidence & bit(CONFIDENCE_MEANINGS, name)) > 0


def _read_inputs(folder: Path) -> _Inputs:
    confidence, in_attrs = _read_variable(folder / FLAGS_FILE, "confidence_in")
    bt11, _ = _read_variable(folder / BT_FILES["S8"], "S8_BT_in")
    bt12, _ = _read_variable(folder / BT_FILES["S9"], "S9_BT_in")
    sza_tp, tn_attrs = _read_variable(folder / GEOMETRY_FILE, "solar_zenith_tn")
    lat_tp, tx_attrs = _read_variable(folder / GEODETIC_TX_FILE, "latitude_tx")
    lon_tp, _ = _read_variable(folder / GEODETIC_TX_FILE, "longitude_tx")
    e0 = {}
    for ch in REFLECTANCE_CHANNELS:
        irradiance, an_attrs = _read_variable(folder / QUALITY_FILES[ch], f"{ch}_solar_irradiance_an")
        e0[ch] = float(irradiance[0])
    return _Inputs(
        confidence,
        bt11,
        bt12,
        sza_tp,
        _TiePointGrid.of(folder / GEOMETRY_FILE, tn_attrs),
        lat_tp,
        lon_tp,
        _TiePointGrid.of(folder / GEODETIC_TX_FILE, tx_attrs),
        e0,
        an_attrs,
        _TiePointGrid.of(folder / QUALITY_FILES[REFLECTANCE_CHANNELS[-1]], an_attrs),
        in_attrs,
        _TiePointGrid.of(folder / FLAGS_FILE, in_attrs),
    )


def _cloudiness_from_bts(bt11: np.ndarray, bt12: np.ndarray) -> np.ndarray:
    """Cloud opacity 0..1 from real brightness temperatures: colder than the warm (clear) end means cloudier."""
    valid = ~np.isnan(bt11)
    clear_end = np.percentile(bt11[valid], 99) if valid.any() else 290.0
    split = np.nan_to_num(bt11 - bt12, nan=0.0)  # thin cirrus: large split-window difference
    cloud = np.clip((clear_end - bt11) / 25 + 0.3 * np.clip(split - 1.5, 0, 2), 0, 1)
    fallback = np.median(cloud[valid]) if valid.any() else 0.0
    return np.where(valid, cloud, fallback).astype(np.float32)


def _write_radiances(folder: Path, todo: list[str], inputs: _Inputs, rng: np.random.Generator) -> list[Path]:
    """The missing radiance files, from a scene whose clouds follow the real brightness temperatures."""
    cloud = _cloudiness_from_bts(inputs.bt11, inputs.bt12)
    surface = np.where(inputs.has("snow"), 2, np.where(inputs.has("land"), 1, 0)).astype(np.uint8)
    height = np.clip((290.0 - np.nan_to_num(inputs.bt11, nan=260.0)) / 60, 0, 1).astype(np.float32)
    reflectance = reflectance_of(surface, cloud, height)
    light = sunlight(resample(inputs.sza_tp, *inputs.positions(inputs.geometry_grid)))
    written = []
    for k, ch in enumerate(REFLECTANCE_CHANNELS):
        path = folder / RADIANCE_FILES[ch]
        if path.name not in todo:
            continue
        counts, exception = radiance_counts(reflectance[k], light, ch, inputs.e0[ch], rng)
        with atomic_file(path) as tmp:
            write_radiance_file(tmp, inputs.an_attrs, ch, counts, exception)
        written.append(path)
    return written


def _write_geodetic(folder: Path, inputs: _Inputs, grid: str) -> Path:
    """``geodetic_an.nc`` or ``geodetic_in.nc`` from the tie points; elevation 50 m on land, 0 at sea."""
    lat, lon = geodetic_on_grid(inputs.lat_tp, inputs.lon_tp, *inputs.positions(inputs.geodetic_grid, grid))
    elevation = np.where(inputs.has("land"), 50, 0).astype(np.int16)
    if grid == "an":
        elevation = np.repeat(np.repeat(elevation, 2, axis=0), 2, axis=1)
    attrs = {"an": inputs.an_attrs, "in": inputs.in_attrs}[grid]
    path = folder / GEODETIC_FILES[grid]
    with atomic_file(path) as tmp:
        write_geodetic(tmp, attrs, grid, micro_degrees(lat), micro_degrees(lon), elevation)
    return path


def complete_product(sen3_dir: str | Path, seed: int = 0) -> list[Path]:
    """Add the missing ``COMPLETED_FILES`` (radiances, geodetic files) to a partial product; return those written.

    See the module's documentation for how they are made. Existing files are never modified.
    """
    folder = Path(sen3_dir)
    if not folder.is_dir():
        raise InputError(folder, "not a product folder")
    todo = [name for name in COMPLETED_FILES if not (folder / name).exists()]
    if not todo:
        return []
    missing = [name for name in _NEEDED_FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(folder, f"cannot complete: missing {', '.join(missing)}")
    if not os.access(folder, os.W_OK):
        raise InputError(folder, "cannot complete: the folder is read-only (complete a copy)")
    rng = np.random.default_rng([seed, 0xC0])
    inputs = _read_inputs(folder)
    written = []
    if any(name in RADIANCE_FILES.values() for name in todo):
        written += _write_radiances(folder, todo, inputs, rng)
    written += [_write_geodetic(folder, inputs, grid) for grid, name in GEODETIC_FILES.items() if name in todo]
    log.info("completed %s: %s", folder.name, ", ".join(p.name for p in written))
    return written
