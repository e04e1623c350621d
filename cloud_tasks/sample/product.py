"""The files of a generated product: every NetCDF file of the real ``.SEN3`` folder, and its manifest.

Generated products copy the real product's variable names, dtypes, dimensions, attributes, global attributes
and compression. A few scattered fill pixels (``unfilled_pixel``) in one visible channel of some products;
``flags_in.nc: bayes_orphan_in`` is on (rows, columns), as in the real product.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from cloud_tasks.hdf import BT_CHANNELS, REFLECTANCE_CHANNELS
from cloud_tasks.sample.flags import (
    BAYES_MEANINGS,
    CLOUD_MEANINGS,
    CONFIDENCE_MEANINGS,
    EXCEPTION_MEANINGS,
    POINTING_MEANINGS,
    bit,
    flag_words,
)
from cloud_tasks.sample.grid import RESOLUTION_ATTR
from cloud_tasks.sample.manifest import MANIFEST, manifest
from cloud_tasks.sample.netcdf import (
    BT_OFFSET,
    BT_SCALE,
    FILL_INT16,
    FILL_INT32,
    Variable,
    exception_vars,
    flag_attrs,
    image_dims,
    orphan_columns,
    pack,
    radiance_counts,
    write_geodetic,
    write_netcdf,
    write_radiance_file,
)
from cloud_tasks.sample.scene import Scene, reflectance_of
from cloud_tasks.sample.specs import ProductSpec

SOLAR_IRRADIANCE = dict(zip(REFLECTANCE_CHANNELS, (1858.954, 1538.219, 968.199, 370.085, 248.214, 78.347), strict=True))
_BAND_CENTRE = (0.5543, 0.6595, 0.868, 1.3748, 1.6134, 2.2557)  # um, as the real files hold them
_BANDWIDTH = (0.0193, 0.0192, 0.0206, 0.0208, 0.0607, 0.0502)
_BASE_ATTRS = {  # constant global attributes, as in the real product
    "comment": " ",
    "contact": "EOHElp@esa.int",
    "netCDF_version": "4.2 of Jul  5 2012 17:07:43 $",
    "references": "S3IPF PDS 005 - i2r3 - Product Data Format Specification - SLSTR, S3IPF PDS 002 - i1r6 - Product"
    " Data Format Specification - Product Structures, S3IPF DPM 003 - i1r5 - Detailed Processing Model - SLSTR Level 1",
    "source": "IPF-SL-1 06.17",
    "title": "S3 SLSTR L1 Radiance and Brightness Temperatures Product. (Measurements + Annotations)",
}
# The files of a product folder, as the real product names them.
RADIANCE_FILES = {ch: f"{ch}_radiance_an.nc" for ch in REFLECTANCE_CHANNELS}
QUALITY_FILES = {ch: f"{ch}_quality_an.nc" for ch in REFLECTANCE_CHANNELS}
BT_FILES = {ch: f"{ch}_BT_in.nc" for ch in BT_CHANNELS}
FLAGS_FILE, GEOMETRY_FILE, TIME_FILE = "flags_in.nc", "geometry_tn.nc", "time_in.nc"
GEODETIC_FILES = {"an": "geodetic_an.nc", "in": "geodetic_in.nc"}  # by grid
GEODETIC_AN_FILE, GEODETIC_IN_FILE, GEODETIC_TX_FILE = GEODETIC_FILES["an"], GEODETIC_FILES["in"], "geodetic_tx.nc"
PRODUCT_FILES = tuple(
    sorted(
        [
            *QUALITY_FILES.values(),
            *RADIANCE_FILES.values(),
            *BT_FILES.values(),
            *(FLAGS_FILE, *GEODETIC_FILES.values(), GEODETIC_TX_FILE, GEOMETRY_FILE, TIME_FILE, MANIFEST),
        ]
    )
)


def global_attrs(spec: ProductSpec, grid: str) -> dict:
    """The global attributes every file of the real product carries, for grid ``in``, ``an`` or ``tn``."""
    g = spec.grid
    track = {"in": g.track_offset_in, "an": g.track_offset_an, "tn": g.track_offset_tn}[grid]
    attrs = {
        "absolute_orbit_number": np.uint32(spec.absolute_orbit),
        "creation_time": f"{spec.name.creation:%Y%m%dT%H%M%S}Z",
        "institution": spec.name.centre,
        "product_name": spec.name.sen3,
        "resolution": RESOLUTION_ATTR[grid],
        "start_offset": np.int32(g.start_offset),
        "start_time": f"{spec.start_time:%Y-%m-%dT%H:%M:%S.%f}Z",
        "stop_time": f"{spec.stop_time:%Y-%m-%dT%H:%M:%S.%f}Z",
        "track_offset": np.int32(track),
    }
    return dict(sorted((_BASE_ATTRS | attrs).items()))


def _bt_file(channel: str, values: np.ndarray) -> tuple[dict, list[Variable]]:
    counts = pack(values, BT_SCALE, BT_OFFSET)
    orphans = orphan_columns(counts.shape[1])
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
        *exception_vars(channel, "in", exception, orphans, "toa_brightness_temperature_status_flag"),
    ]
    return image_dims(counts, orphans), variables


def _flags_file(scene: Scene) -> tuple[dict, list[Variable]]:
    confidence, bayes, cloud = flag_words(scene)
    pointing = np.zeros_like(bayes)
    orphans = orphan_columns(bayes.shape[1])
    rc, ro = ("rows", "columns"), ("rows", "orphan_pixels")
    bayes_attrs = flag_attrs(BAYES_MEANINGS, np.uint8)
    cloud_attrs = flag_attrs(CLOUD_MEANINGS, np.uint16)
    conf_attrs = flag_attrs(CONFIDENCE_MEANINGS, np.uint16)
    point_attrs = flag_attrs(POINTING_MEANINGS, np.uint8)
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
    return image_dims(bayes, orphans), variables


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
    reflectances = reflectance_of(scene.land.astype(np.uint8), scene.cloud, scene.cloud_height)
    noise = spec.rng(2)
    n_an = g.an_shape[0] * g.an_shape[1]
    lost_channel, lost = int(noise.integers(6)), noise.integers(0, n_an, noise.integers(0, n_an // 2000))
    for k, channel in enumerate(REFLECTANCE_CHANNELS):
        e0 = SOLAR_IRRADIANCE[channel]
        counts, exception = radiance_counts(reflectances[k], scene.sunlight_an, channel, e0, noise)
        if k == lost_channel and spec.kind != "night":  # a few scattered lost pixels (< 0.05 %)
            counts.flat[lost], exception.flat[lost] = FILL_INT16, bit(EXCEPTION_MEANINGS, "unfilled_pixel")
        write_radiance_file(folder / RADIANCE_FILES[channel], attrs, channel, counts, exception)
        dims = {"detectors": 4, "rows": g.an_shape[0]}
        write_netcdf(folder / QUALITY_FILES[channel], attrs, dims, _quality_variables(channel, k, g.an_shape[0]))


def write_product(scene: Scene, sen3_dir: str | Path) -> list[Path]:
    """Write all files of a generated product into the (existing, empty) folder ``sen3_dir``."""
    spec, g = scene.spec, scene.spec.grid
    folder = Path(sen3_dir)
    an, tn, tp_dims = global_attrs(spec, "an"), global_attrs(spec, "tn"), {"rows": g.rows, "columns": g.tp_columns}
    _write_visible_files(scene, folder, an)
    for k, channel in enumerate(BT_CHANNELS):
        dims, variables = _bt_file(channel, scene.bt[k])
        write_netcdf(folder / BT_FILES[channel], global_attrs(spec, "in"), dims, variables)
    dims, variables = _flags_file(scene)
    write_netcdf(folder / FLAGS_FILE, global_attrs(spec, "in"), dims, variables)
    geometry = [(name, scene.tie_points[name], ("rows", "columns"), attrs) for name, attrs in _GEOMETRY_ATTRS.items()]
    write_netcdf(folder / GEOMETRY_FILE, tn, tp_dims, geometry)
    geodetic_tx = [
        (f"{name}_tx", scene.tie_points[f"{name}_tx"], ("rows", "columns"), _geodetic_tx_attrs(name, unit, limit))
        for name, unit, limit in (("latitude", "degrees_north", 90), ("longitude", "degrees_east", 180))
    ]
    write_netcdf(folder / GEODETIC_TX_FILE, tn, tp_dims, geodetic_tx)
    elevation = np.rint(scene.elevation).astype(np.int16)
    write_geodetic(folder / GEODETIC_AN_FILE, an, "an", *scene.geodetic_an, np.repeat(np.repeat(elevation, 2, 0), 2, 1))
    write_geodetic(folder / GEODETIC_IN_FILE, global_attrs(spec, "in"), "in", *scene.geodetic_in, elevation)
    write_netcdf(folder / TIME_FILE, global_attrs(spec, "in"), {"one": 1, "rows": g.rows}, _time_variables(spec))
    files = sorted(folder.glob("*.nc"))
    (folder / MANIFEST).write_text(manifest(spec, files))
    return sorted(folder.iterdir())
