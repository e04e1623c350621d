"""Writing SLSTR NetCDF files like the real ones: one zlib-2 + shuffle chunk per variable, values pre-packed.

Radiances ``L = R * E0 * cos(SZA) / pi`` on the 0.5 km grid (each 1 km value repeated 2x2, plus 0.5 km
noise), fill where SZA >= 90 deg or unknown (no VIS/SWIR at night: ``S{n}_exception_an`` ``ISP_absent``).
``geodetic_an.nc`` and ``geodetic_in.nc``: ``latitude_<grid>``/``longitude_<grid>`` int32 micro-degrees
(``scale_factor`` 1e-6, ``_FillValue`` -2**31, no ``add_offset``: as real SLSTR), ``elevation_<grid>`` int16 metres.
Radiance and geodetic files are written for generated and for completed products.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cloud_tasks.hdf import REFLECTANCE_CHANNELS
from cloud_tasks.sample.flags import EXCEPTION_MEANINGS, bit

# Radiance packing: 0.5 km counts * scale; the scales fit reflectance ~1.3 at the zenith into int16.
RADIANCE_SCALE = dict(zip(REFLECTANCE_CHANNELS, (0.025, 0.02, 0.0125, 0.005, 0.0035, 0.001), strict=True))
BT_SCALE, BT_OFFSET = 0.01, 283.73
FILL_INT16 = np.int16(-32768)
FILL_INT32 = np.int32(-2147483648)
_ORPHANS_PER_COLUMN = 0.125  # the real product: 187 orphan pixels for 1500 columns

Variable = tuple[str, np.ndarray, tuple[str, ...], dict]


def write_netcdf(path: Path, attrs: dict, dims: dict[str, int], variables: list[Variable]) -> None:
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


def flag_attrs(meanings: str, dtype, **extra) -> dict:
    """``flag_masks`` (1, 2, 4, ... in ``dtype``) and ``flag_meanings`` of a flag variable."""
    masks = np.array([1 << i for i in range(len(meanings.split()))], dtype=dtype)
    return {"flag_masks": masks, "flag_meanings": meanings, **extra}


def orphan_columns(columns: int) -> np.ndarray:
    """Image columns whose values the orphan variables repeat (orphans are real pixels dropped by regridding)."""
    return np.linspace(0, columns - 1, max(1, round(columns * _ORPHANS_PER_COLUMN))).astype(np.intp)


def image_dims(image: np.ndarray, orphans: np.ndarray) -> dict[str, int]:
    """The dimensions of a file holding images of this shape and their orphans."""
    return {"rows": image.shape[0], "columns": image.shape[1], "orphan_pixels": len(orphans)}


def pack(values: np.ndarray, scale: float, offset: float = 0.0) -> np.ndarray:
    """int16 counts of ``values`` (NaN -> fill)."""
    counts = np.rint((values - offset) / scale)
    counts = np.clip(counts, -32767, 32767, out=counts)
    counts[np.isnan(counts)] = FILL_INT16
    return counts.astype(np.int16)


def exception_vars(channel: str, grid: str, exception: np.ndarray, orphans: np.ndarray, standard: str):
    """A channel's exception flags and their orphans."""
    attrs = flag_attrs(EXCEPTION_MEANINGS, np.uint8, standard_name=standard)
    return [
        (f"{channel}_exception_{grid}", exception, ("rows", "columns"), attrs),
        (f"{channel}_exception_orphan_{grid}", exception[:, orphans], ("rows", "orphan_pixels"), attrs),
    ]


def radiance_counts(
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


def write_radiance_file(path: Path, attrs: dict, channel: str, counts: np.ndarray, exception: np.ndarray) -> None:
    """``S{n}_radiance_an.nc`` from packed counts (fill already set) and the exception flags."""
    orphans = orphan_columns(counts.shape[1])
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
        *exception_vars(channel, "an", exception, orphans, "toa_upwelling_spectral_radiance_status_flag"),
        (f"{channel}_radiance_an", counts, ("rows", "columns"), rad_attrs),
        (f"{channel}_radiance_orphan_an", counts[:, orphans], ("rows", "orphan_pixels"), orphan_attrs),
    ]
    write_netcdf(path, attrs, image_dims(counts, orphans), variables)


def write_geodetic(path: Path, attrs: dict, grid: str, lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray) -> None:
    """``geodetic_an.nc`` or ``geodetic_in.nc`` (``grid`` "an" or "in"): int32 micro-degree latitude/longitude
    and int16 elevation (m), plus orphans; variables ``latitude_<grid>``, ``longitude_<grid>``, ``elevation_<grid>``.
    """
    orphans = orphan_columns(lat.shape[1])

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
        variables.append((f"{name}_{grid}", data, ("rows", "columns"), var_attrs))
        variables.append((f"{name}_orphan_{grid}", data[:, orphans], ("rows", "orphan_pixels"), var_attrs))
    write_netcdf(path, attrs, image_dims(lat, orphans), variables)
