"""A Cloud-Optimized GeoTIFF of a cloud mask, resampled from the swath onto a regular latitude/longitude grid.

Usage (opt-in per run: the NetCDF mask is the product of record)::

    from cloud_tasks.product import cf_mask, geotiff

    mask = cf_mask.read_mask(masks.mask(stem))
    geotiff.write_geotiff(masks.geotiff(stem), mask)  # resolution=0.01 deg, radius_m=1500 by default

One band, uint8: 0 clear, 1 cloudy, 255 no data (outside the swath, beyond the radius, or no valid input).
Grid: EPSG:4326, square pixels of ``resolution`` degrees over the swath's bounding box (pixel edges on whole
multiples of the resolution). A swath crossing the antimeridian keeps one continuous grid whose longitudes run
past 180 (e.g. 175..185: GDAL and GIS read them as 175..180, -180..-175). Each grid pixel takes the value of the
nearest swath pixel centre within ``radius_m`` metres (pyresample, on the sphere: correct near the poles).
Written with rasterio as a COG (deflate, 256-pixel tiles, nearest-neighbour overviews down to ~32 pixels),
atomically; the tags record the product, the models, the resampling and its radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.product.cf_mask import NO_DATA, MaskProduct

DEFAULT_RESOLUTION = 0.01  # degrees (~1.1 km along a meridian): the swath's 1 km pixels
DEFAULT_RADIUS_M = 1500.0  # nearest swath pixel within this distance, else no data
MAX_PIXELS = 200_000_000  # a grid this large is a mistake (a 1 km swath near the pole spans ~40 M)
BLOCK = 256
_MIN_OVERVIEW_SIDE = 32
_BAND_PIXELS = 2_000_000  # grid pixels resampled at once
_METRES_PER_DEGREE = 111_000.0  # of latitude (a little less than the mean 111 195 m: a wider margin)
_CRS = "EPSG:4326"


@dataclass(frozen=True)
class LatLonGrid:
    """A regular latitude/longitude grid: its north-west corner, pixel size and size (longitudes may pass 180)."""

    west: float
    north: float
    resolution: float
    width: int
    height: int

    @property
    def transform(self):
        from rasterio.transform import from_origin

        return from_origin(self.west, self.north, self.resolution, self.resolution)


def grid_over(latitude: np.ndarray, longitude: np.ndarray, resolution: float = DEFAULT_RESOLUTION) -> LatLonGrid:
    """The grid covering the geolocated pixels (longitudes unwrapped past 180 when the swath crosses it)."""
    if not resolution > 0:
        raise CloudTasksError(f"resolution must be positive degrees, not {resolution}")
    ok = np.isfinite(latitude) & np.isfinite(longitude)
    if not ok.any():
        raise CloudTasksError("no pixel has a finite latitude and longitude")
    lat, lon = latitude[ok], _continuous(longitude[ok])
    west, east = math.floor(lon.min() / resolution), math.ceil(lon.max() / resolution) + 1
    south, north = math.floor(lat.min() / resolution), math.ceil(lat.max() / resolution) + 1
    north = min(north, round(90 / resolution))
    width, height = east - west, north - max(south, -round(90 / resolution))
    if width * height > MAX_PIXELS:
        raise CloudTasksError(f"a {width} x {height} grid at {resolution} deg is too large; use a coarser one")
    return LatLonGrid(west * resolution, north * resolution, resolution, width, height)


def _continuous(longitude: np.ndarray) -> np.ndarray:
    """Longitudes shifted to 0..360 when that makes their range narrower (a swath across the antimeridian)."""
    shifted = np.where(longitude < 0, longitude + 360.0, longitude)
    if np.ptp(shifted) < np.ptp(longitude):
        return shifted
    return longitude


def resample_to_grid(
    values: np.ndarray, latitude: np.ndarray, longitude: np.ndarray, grid: LatLonGrid, radius_m: float
) -> np.ndarray:
    """``values`` (uint8, swath) on ``grid``: nearest swath pixel within ``radius_m``, else NO_DATA.

    Done in bands of grid rows, each with the swath pixels of its latitudes only: memory stays bounded and
    the nearest-neighbour trees small, even for a polar swath whose grid spans every longitude.
    """
    from pyresample import geometry, kd_tree

    if not radius_m > 0:
        raise CloudTasksError(f"radius must be positive metres, not {radius_m}")
    ok = np.isfinite(latitude) & np.isfinite(longitude)
    lat, lon, values = latitude[ok].astype(np.float64), longitude[ok].astype(np.float64), np.asarray(values)[ok]
    r = grid.resolution
    # Pixel centres given explicitly, longitudes wrapped into -180..180 (an area past 180 would be cut off).
    lons = (grid.west + r * (np.arange(grid.width) + 0.5) + 180.0) % 360.0 - 180.0
    margin = radius_m / _METRES_PER_DEGREE + r  # degrees of latitude
    out = np.full((grid.height, grid.width), NO_DATA, np.uint8)
    band = max(1, _BAND_PIXELS // grid.width)
    for top in range(0, grid.height, band):
        lats = grid.north - r * (np.arange(top, min(top + band, grid.height)) + 0.5)
        near = (lat >= lats[-1] - margin) & (lat <= lats[0] + margin)
        if not near.any():
            continue
        swath = geometry.SwathDefinition(lons=lon[near], lats=lat[near])
        target = geometry.GridDefinition(*np.meshgrid(lons, lats))
        out[top : top + lats.size] = kd_tree.resample_nearest(
            swath, values[near], target, radius_of_influence=radius_m, fill_value=NO_DATA
        )
    return out


def _overview_factors(width: int, height: int) -> list[int]:
    factors, factor = [], 2
    while max(width, height) / factor >= _MIN_OVERVIEW_SIDE:
        factors.append(factor)
        factor *= 2
    return factors


def write_geotiff(
    path: str | Path,
    mask: MaskProduct,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    radius_m: float = DEFAULT_RADIUS_M,
) -> Path:
    """Write ``mask``'s ``cloud_mask`` as a COG on a latitude/longitude grid, atomically; return ``path``."""
    grid = grid_over(mask.latitude, mask.longitude, resolution)
    image = resample_to_grid(mask.cloud_mask, mask.latitude, mask.longitude, grid, radius_m)
    tags = {
        "product_name": mask.product_name,
        "model_version": " ".join(m.version for m in mask.models),
        "model_sha256": " ".join(m.sha256 for m in mask.models),
        "threshold": str(mask.threshold),
        "values": f"0 clear, 1 cloudy, {NO_DATA} no data",
        "resampling": f"nearest swath pixel within {radius_m:g} m (pyresample)",
        "source": mask.path.name,
    }
    path = Path(path)
    with atomic_file(path) as tmp:
        _write_cog(tmp, image, grid, tags)
    return path


def _write_cog(target: Path, image: np.ndarray, grid: LatLonGrid, tags: dict) -> None:
    """A tiled GeoTIFF with overviews in memory, copied into COG layout (overviews before the data)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy

    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8",
        "crs": _CRS,
        "transform": grid.transform,
        "nodata": NO_DATA,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
    }
    with rasterio.Env(GDAL_NUM_THREADS="1"), MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(image, 1)
            dst.set_band_description(1, "cloud_mask")
            dst.update_tags(**tags)
            dst.build_overviews(_overview_factors(grid.width, grid.height), Resampling.nearest)
            dst.update_tags(ns="rio_overview", resampling="nearest")
        with memory.open() as src:
            copy(src, target, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCK, OVERVIEWS="FORCE_USE_EXISTING")
