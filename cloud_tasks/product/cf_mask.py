"""The cloud-mask product: a CF-1.10 / ACDD-1.3 NetCDF-4 file per product (writer and checked reader).

Usage (inference writes it; ``sst-comp``, the GeoTIFF, the STAC catalogue and the UI read it)::

    from cloud_tasks.product import cf_mask

    cf_mask.write_mask(
        masks.mask(stem),                      # where (layout.MaskFiles)
        probability,                           # float32 (rows, columns), NaN = no data
        latitude, longitude,                   # (rows, columns) degrees, NaN where unknown
        product=read_attrs(hdf_path),          # converted HDF5 attributes: product_name, mission, sensing_start/stop
        models=[cf_mask.Model("v3", sha256)],  # the model(s) that made the pixels (kind "day" or "thermal")
        threshold=0.5,                         # cloudy where probability >= threshold
        valid=valid,                           # optional bool (rows, columns): False = no valid input = no data
        model_used=None,                       # optional (rows, columns) index into ``models`` (issue 17)
        source=hdf_path,                       # the converted file it was made from (its name is recorded)
    )
    mask = cf_mask.read_mask(path)             # MaskProduct: arrays and attributes, checked
    mask.cloud_mask, mask.valid, mask.cloud_fraction  # the decision, where it holds, cloud share of valid pixels
    cf_mask.made_by(path, models, threshold)   # an existing file made by these models with this threshold?
    cf_mask.classify(probability, threshold, valid)  # the cloud_mask values write_mask stores, before writing
    cf_mask.cloud_fraction(values)             # cloud share of the valid pixels of cloud_mask values (or None)

Use ``cloud_mask`` (or ``MaskProduct.cloudy``) for clear/cloudy decisions: it was taken on the unquantised
probability, whereas ``cloud_probability`` is stored to 0.01.

| variable (rows, columns) | stored as | content |
|---|---|---|
| ``cloud_probability`` | byte 0..100, ``scale_factor`` 0.01, fill -127 | model output; fill = no data |
| ``cloud_mask`` | uint8 flags 0 1 ``clear cloudy``, fill 255 | ``threshold`` attribute |
| ``model_used`` (optional) | uint8 flags, meanings = model kinds, fill 255 | which model made the pixel |
| ``latitude``, ``longitude`` | int32 micro-degrees (``scale_factor`` 1e-6) | pixel centres |
| ``time``, ``time_bnds`` (scalar, nv) | int64 microseconds since 1970 | sensing start; start and stop |

Global attributes: ACDD discovery set (title, summary, keywords, id, history, ``date_created``, geospatial
bounds and extents, time coverage, platform, instrument, processing level, license...) and the provenance
``product_name``, ``source_product``, ``source``, ``model_version``, ``model_sha256``, ``model_kind`` (one
space-separated entry per model, in ``model_used`` order), ``software_version``. ``geospatial_bounds`` is the
swath footprint (``footprint.swath_footprint``) in WKT, latitude first (EPSG:4326 axis order, as ACDD shows);
``geospatial_lon_min`` > ``geospatial_lon_max`` when the swath crosses the antimeridian (ACDD).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks import __version__
from cloud_tasks.atomic import atomic_file
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.naming import ProductName, stem_from_file
from cloud_tasks.product.footprint import Footprint, swath_footprint

CLEAR, CLOUDY, NO_DATA = 0, 1, 255  # cloud_mask values (NO_DATA: the _FillValue of cloud_mask and model_used)
# CF 8.1 packs into byte, short or int only: the probability is a signed byte 0..100, fill -127 (NetCDF's byte fill).
PROBABILITY_FILL = np.int8(-127)
MASK_MEANINGS = "clear cloudy"
MODEL_KINDS = ("day", "thermal")  # day: reflectances + BTs; thermal: BTs only (issue 17)
DAY_MODEL, THERMAL_MODEL = MODEL_KINDS
PROBABILITY_SCALE = 0.01
COORDINATE_SCALE = 1e-6
COORDINATE_FILL = np.int32(-(2**31))
CONVENTIONS = "CF-1.10, ACDD-1.3"
FORMAT_VERSION = "1.0"  # of this file layout
PLATFORMS = {"S3A": "Sentinel-3A", "S3B": "Sentinel-3B"}
INSTRUMENT = "SLSTR"
MAX_SIDE = 4096  # rows or columns read back: the SLSTR 1 km grid is 1200 x 1500
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_UNITS = "microseconds since 1970-01-01 00:00:00"  # int64: exact, as the SLSTR time stamps
_CHUNK = 512
# Who makes and publishes the product: the deployment may pass its own (``producer=``) over these.
PRODUCER = {
    "creator_name": "cloud-tasks pipeline",
    "creator_type": "group",
    "institution": "cloud-tasks pipeline operator",
    "project": "cloud-tasks: SLSTR cloud masking",
    "naming_authority": "cloud-tasks",
    "publisher_name": "cloud-tasks pipeline operator",
}
_SPATIAL = ("rows", "columns")


@dataclass(frozen=True)
class Model:
    """A model that made (some of) a mask's pixels."""

    version: str  # registry version (v3) or a model file name: no blanks
    sha256: str
    kind: str = "day"  # one of MODEL_KINDS


@dataclass
class MaskProduct:
    """A mask file read back and checked."""

    path: Path
    probability: np.ndarray  # float32, NaN = no data
    cloud_mask: np.ndarray  # uint8 CLEAR / CLOUDY / NO_DATA
    latitude: np.ndarray  # float64 degrees, NaN where unknown
    longitude: np.ndarray
    threshold: float
    models: tuple[Model, ...]
    model_used: np.ndarray | None  # uint8 index into models, NO_DATA where no data; None if not recorded
    sensing: tuple[dt.datetime, dt.datetime]  # start, stop (UTC)
    attrs: dict  # global attributes

    @property
    def product_name(self) -> str:
        return self.attrs["product_name"]

    @property
    def valid(self) -> np.ndarray:
        return self.cloud_mask != NO_DATA

    @property
    def cloudy(self) -> np.ndarray:
        return self.cloud_mask == CLOUDY

    @property
    def cloud_fraction(self) -> float | None:
        """Share of the valid pixels that are cloudy (None when no pixel is valid)."""
        return cloud_fraction(self.cloud_mask)


def classify(probability: np.ndarray, threshold: float, valid: np.ndarray | None = None) -> np.ndarray:
    """``cloud_mask`` values (uint8): CLOUDY where the probability >= ``threshold``, CLEAR below, NO_DATA where it
    is NaN or not ``valid``."""
    probability = np.asarray(probability, np.float32)
    no_data = ~np.isfinite(probability) if valid is None else ~np.isfinite(probability) | ~np.asarray(valid, bool)
    # compared in float64 (a float64 scalar is a strong type): float32(0.7) < 0.7 must stay clear, as before
    cloudy = probability >= np.float64(threshold)
    return np.where(no_data, NO_DATA, np.where(cloudy, CLOUDY, CLEAR)).astype(np.uint8)


def cloud_fraction(values: np.ndarray) -> float | None:
    """Share of the valid pixels of ``cloud_mask`` values that are cloudy (None when no pixel is valid): the one
    cloud fraction of quicklooks, logs, the STAC catalogue and summaries."""
    n_valid = int(np.count_nonzero(values != NO_DATA))
    return float(np.count_nonzero(values == CLOUDY) / n_valid) if n_valid else None


@dataclass(frozen=True)
class _Product:
    """The source product as its attributes describe it, checked."""

    name: ProductName
    start: dt.datetime
    stop: dt.datetime


def write_mask(
    path: str | Path,
    probability: np.ndarray,
    latitude: np.ndarray,
    longitude: np.ndarray,
    *,
    product: Mapping,
    models: Sequence[Model],
    threshold: float,
    valid: np.ndarray | None = None,
    model_used: np.ndarray | None = None,
    source: str | Path | None = None,
    history: str | None = None,
    created: dt.datetime | None = None,
    producer: Mapping[str, str] | None = None,
) -> Path:
    """Write the mask product atomically; return ``path``.

    ``product`` holds ``product_name`` (the stem), ``sensing_start`` and ``sensing_stop`` (ISO 8601), as the
    converted HDF5 file's attributes do; ``created`` (default now) sets ``date_created``; ``history`` is
    appended to the line this call writes; ``source`` is the converted file, recorded by its name (the product
    does not tell where the pipeline keeps its files). Raise InputError (naming ``source`` or the product) for bad
    attributes, CloudTasksError for inconsistent arrays or settings.
    """
    info = product_info(product, source)
    probability = np.asarray(probability, np.float32)
    no_data = _check_arrays(probability, latitude, longitude, valid, model_used, models, threshold)
    try:
        footprint = swath_footprint(latitude, longitude)
    except ValueError as exc:
        raise InputError(source or info.name.stem, f"no usable geolocation: {exc}") from None
    created = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    attrs = _global_attributes(info, models, footprint, latitude, longitude, created, source, history, producer)
    mask = classify(probability, threshold, ~no_data)
    counts = np.rint(np.nan_to_num(probability) / PROBABILITY_SCALE).astype(np.int8)
    counts[no_data] = PROBABILITY_FILL
    used = None if model_used is None else np.where(no_data, NO_DATA, model_used).astype(np.uint8)
    path = Path(path)
    with atomic_file(path) as tmp:
        _write_netcdf(tmp, attrs, counts, mask, used, models, threshold, latitude, longitude, info)
    return path


def product_info(product: Mapping, source: str | Path | None) -> _Product:
    """The product's name and sensing times from its attributes (values from a file: checked; an InputError
    names ``source``): ``write_mask`` calls it, and a caller may, to refuse a product before predicting."""
    where = source or "product attributes"
    stem = stem_from_file(product.get("product_name"), where)
    times = []
    for key in ("sensing_start", "sensing_stop"):
        value = product.get(key)
        try:
            when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise InputError(where, f"{key} {str(value)[:80]!r} is not an ISO 8601 time") from None
        times.append(when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC))
    if times[1] < times[0]:
        raise InputError(where, f"sensing_stop {times[1]} is before sensing_start {times[0]}")
    return _Product(ProductName.parse(stem), times[0], times[1])


def _check_arrays(probability, latitude, longitude, valid, model_used, models, threshold) -> np.ndarray:
    """Check shapes and settings; return the no-data pixels (NaN probability or not ``valid``)."""
    shape = probability.shape
    if probability.ndim != 2:
        raise CloudTasksError(f"probability must be 2-D (rows, columns), not {shape}")
    for name, array in (("latitude", latitude), ("longitude", longitude), ("valid", valid), ("model_used", model_used)):
        if array is not None and np.shape(array) != shape:
            raise CloudTasksError(f"{name} has shape {np.shape(array)}, the probability {shape}")
    if not 0.0 <= threshold <= 1.0:
        raise CloudTasksError(f"threshold must be a probability from 0 to 1, not {threshold}")
    if not models or any(m.kind not in MODEL_KINDS or not m.version or " " in m.version for m in models):
        raise CloudTasksError(f"models must name at least one model, of kinds {MODEL_KINDS}, versions without blanks")
    if len({m.kind for m in models}) != len(models):
        raise CloudTasksError("one model per kind")
    no_data = ~np.isfinite(probability)
    if valid is not None:
        no_data |= ~np.asarray(valid, bool)
    if np.any((probability[~no_data] < 0) | (probability[~no_data] > 1)):
        raise CloudTasksError("probability holds values outside 0..1")
    if model_used is not None and np.any(np.asarray(model_used)[~no_data] >= len(models)):
        raise CloudTasksError(f"model_used holds indices beyond the {len(models)} models given")
    return no_data


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _lon_extent(longitude: np.ndarray, footprint: Footprint) -> tuple[float, float]:
    """ACDD geospatial_lon_min/max: the data's, or the footprint's west > east across the antimeridian."""
    if footprint.crosses_antimeridian:
        return footprint.bbox[0], footprint.bbox[2]
    return float(np.nanmin(longitude)), float(np.nanmax(longitude))


def _global_attributes(info: _Product, models, footprint, lat, lon, created, source, history, producer) -> dict:
    """The file's global attributes (ACDD discovery set and provenance)."""
    name, seconds, rows = info.name, (info.stop - info.start).total_seconds(), np.shape(lat)[0]
    lon_min, lon_max = _lon_extent(np.asarray(lon, np.float64), footprint)
    model_text = ", ".join(f"{m.kind} model {m.version}" for m in models)
    line = f"{_iso(created)} cloud_tasks {__version__}: cloud mask of {name.sen3} by {model_text}"
    return {
        "Conventions": CONVENTIONS,
        "title": f"SLSTR cloud mask of {name.stem}",
        "summary": (
            f"Cloud probability and binary cloud mask on the 1 km nadir grid of the Sentinel-3 SLSTR L1 RBT product "
            f"{name.sen3}, predicted by a U-Net ({model_text}) from its reflectances and brightness temperatures. "
            "Pixels without valid input are no data and excluded from cloud fractions."
        ),
        "keywords": "cloud mask, cloud detection, cloud probability, Sentinel-3, SLSTR, U-Net",
        "id": f"{name.stem}_cloud_mask",
        **PRODUCER,
        **(producer or {}),
        "license": f"Contains modified Copernicus Sentinel data {info.start.year}",
        "acknowledgement": "Copernicus Sentinel-3 SLSTR data (ESA, EUMETSAT)",
        "history": line + (f"\n{history}" if history else ""),
        "source": f"Sentinel-3 SLSTR L1 RBT {name.sen3}" + (f", converted as {Path(source).name}" if source else ""),
        "comment": "Swath product: latitude and longitude are the pixel centres of the SLSTR 1 km nadir grid.",
        "processing_level": "L2",
        "cdm_data_type": "Swath",
        "date_created": _iso(created),
        **{f"date_{what}": _iso(created) for what in ("issued", "modified", "metadata_modified")},  # written once
        "geospatial_bounds": footprint.wkt_lat_lon(),
        "geospatial_bounds_crs": "EPSG:4326",
        "geospatial_lat_min": float(np.nanmin(lat)),
        "geospatial_lat_max": float(np.nanmax(lat)),
        "geospatial_lon_min": lon_min,
        "geospatial_lon_max": lon_max,
        "geospatial_lat_units": "degrees_north",
        "geospatial_lon_units": "degrees_east",
        "time_coverage_start": _iso(info.start),
        "time_coverage_end": _iso(info.stop),
        "time_coverage_duration": f"PT{seconds:.6f}S",
        "time_coverage_resolution": f"PT{seconds / rows:.6f}S",  # one 1 km row
        "standard_name_vocabulary": "CF Standard Name Table v93",
        "platform": PLATFORMS[name.mission],
        "instrument": INSTRUMENT,
        "product_version": FORMAT_VERSION,
        "product_name": name.stem,
        "source_product": name.sen3,
        "model_version": " ".join(m.version for m in models),
        "model_sha256": " ".join(m.sha256 for m in models),
        "model_kind": " ".join(m.kind for m in models),
        "software_version": __version__,
    }


def _variable(ds, name: str, data: np.ndarray, fill, attrs: dict, dims=_SPATIAL):
    """A compressed, chunked variable holding ``data`` as stored (no netCDF4 packing of ours)."""
    chunks = tuple(min(n, _CHUNK) for n in data.shape) or None
    var = ds.createVariable(
        name, data.dtype, dims, zlib=bool(dims), complevel=4, shuffle=bool(dims), chunksizes=chunks, fill_value=fill
    )
    var.set_auto_maskandscale(False)
    var.setncatts(attrs)
    var[...] = data
    return var


def _coordinate(values: np.ndarray, limit: int) -> np.ndarray:
    """Degrees as int32 micro-degrees, fill where unknown."""
    values = np.asarray(values, np.float64)
    counts = np.rint(np.clip(np.nan_to_num(values), -limit, limit) / COORDINATE_SCALE).astype(np.int32)
    counts[~np.isfinite(values)] = COORDINATE_FILL
    return counts


def _write_netcdf(tmp: Path, attrs, counts, mask, used, models, threshold, lat, lon, info: _Product) -> None:
    import netCDF4

    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.setncatts(attrs)
        ds.createDimension("rows", mask.shape[0])
        ds.createDimension("columns", mask.shape[1])
        ds.createDimension("nv", 2)
        _time_variables(ds, info)
        for name, values, limit, units in (
            ("latitude", lat, 90, "degrees_north"),
            ("longitude", lon, 180, "degrees_east"),
        ):
            _variable(ds, name, _coordinate(values, limit), COORDINATE_FILL, _coordinate_attrs(name, limit, units))
        coordinates = "time latitude longitude"
        _variable(ds, "cloud_probability", counts, PROBABILITY_FILL, _probability_attrs(coordinates))
        _variable(ds, "cloud_mask", mask, np.uint8(NO_DATA), _mask_attrs(coordinates, threshold))
        if used is not None:
            _variable(ds, "model_used", used, np.uint8(NO_DATA), _model_used_attrs(coordinates, models))


def _time_variables(ds, info: _Product) -> None:
    start, stop = ((t - _EPOCH) // dt.timedelta(microseconds=1) for t in (info.start, info.stop))
    time_attrs = {
        "standard_name": "time",
        "long_name": "sensing start time",
        "units": _TIME_UNITS,
        "calendar": "standard",
        "axis": "T",
        "bounds": "time_bnds",
    }
    _variable(ds, "time", np.array(start, np.int64), None, time_attrs, dims=())
    _variable(ds, "time_bnds", np.array([start, stop], np.int64), None, {}, dims=("nv",))


def _coordinate_attrs(name: str, limit: int, units: str) -> dict:
    return {
        "standard_name": name,
        "long_name": f"{name} of the pixel centre",
        "units": units,
        "scale_factor": np.float64(COORDINATE_SCALE),
        "valid_min": np.int32(-limit / COORDINATE_SCALE),
        "valid_max": np.int32(limit / COORDINATE_SCALE),
        "coverage_content_type": "coordinate",
    }


def _probability_attrs(coordinates: str) -> dict:
    return {
        "standard_name": "cloud_area_fraction",
        "long_name": "cloud probability",
        "comment": "Probability that the pixel is cloudy (U-Net output), i.e. the expected cloud area fraction of "
        "the pixel; stored to 0.01. Fill: no valid input.",
        "units": "1",
        "scale_factor": np.float32(PROBABILITY_SCALE),
        "add_offset": np.float32(0.0),
        "valid_min": np.int8(0),
        "valid_max": np.int8(round(1 / PROBABILITY_SCALE)),
        "coordinates": coordinates,
        "coverage_content_type": "modelResult",
    }


def _mask_attrs(coordinates: str, threshold: float) -> dict:
    return {
        "standard_name": "cloud_binary_mask",
        "long_name": "cloud mask",
        "comment": "cloudy where the cloud probability (before packing) >= threshold; fill: no valid input",
        "units": "1",
        "flag_values": np.array([CLEAR, CLOUDY], np.uint8),
        "flag_meanings": MASK_MEANINGS,
        "valid_min": np.uint8(CLEAR),
        "valid_max": np.uint8(CLOUDY),
        "threshold": np.float64(threshold),
        "coordinates": coordinates,
        "coverage_content_type": "thematicClassification",
    }


def _model_used_attrs(coordinates: str, models: Sequence[Model]) -> dict:
    return {
        "long_name": "model that made the pixel",
        "comment": "index into the model_version, model_sha256 and model_kind global attributes",
        "flag_values": np.arange(len(models), dtype=np.uint8),
        "flag_meanings": " ".join(m.kind for m in models),
        "coordinates": coordinates,
        "coverage_content_type": "auxiliaryInformation",
    }


# --- reading ------------------------------------------------------------------------------------------------


def read_mask(path: str | Path) -> MaskProduct:
    """Read a mask product, checking its layout and attributes before use; InputError naming the file if bad."""
    import netCDF4

    path = Path(path)
    try:
        with netCDF4.Dataset(path) as ds:
            return _read(ds, path)
    except OSError as exc:
        raise InputError(path, f"cannot be read as NetCDF: {exc}") from None


def made_by(path: str | Path, models: Sequence[Model], threshold: float) -> bool:
    """Whether ``path`` is a readable, valid mask made by these models (version, sha256 and kind: a mask of
    another registry version of the same file is made again) with this threshold."""
    if not Path(path).is_file():
        return False
    try:
        mask = read_mask(path)  # checked in full: a damaged file is made again
    except InputError:
        return False
    return mask.models == tuple(models) and mask.threshold == threshold


def _read(ds, path: Path) -> MaskProduct:
    attrs = _global_text(ds, path)
    attrs["product_name"] = stem_from_file(attrs.get("product_name"), path)
    models = _models(attrs, path)
    shape = _grid_shape(ds, path)
    cloud_mask = _raw(ds, "cloud_mask", np.uint8, shape, path)
    mask_var = ds["cloud_mask"]
    meanings = mask_var.getncattr("flag_meanings") if "flag_meanings" in mask_var.ncattrs() else None
    if meanings != MASK_MEANINGS or not np.isin(cloud_mask, (CLEAR, CLOUDY, NO_DATA)).all():
        raise InputError(path, f"cloud_mask must hold {MASK_MEANINGS!r} flags ({CLEAR}, {CLOUDY}) or {NO_DATA}")
    model_used = None
    if "model_used" in ds.variables:
        model_used = _raw(ds, "model_used", np.uint8, shape, path)
        if np.any((model_used >= len(models)) & (model_used != NO_DATA)):
            raise InputError(path, f"model_used holds indices beyond the {len(models)} models recorded")
    return MaskProduct(
        path=path,
        probability=_unpacked(ds, "cloud_probability", np.int8, shape, path).astype(np.float32),
        cloud_mask=cloud_mask,
        latitude=_unpacked(ds, "latitude", np.int32, shape, path),
        longitude=_unpacked(ds, "longitude", np.int32, shape, path),
        threshold=_threshold(mask_var, path),
        models=models,
        model_used=model_used,
        sensing=(_time_attr(attrs, "time_coverage_start", path), _time_attr(attrs, "time_coverage_end", path)),
        attrs=attrs,
    )


def _global_text(ds, path: Path) -> dict:
    """The global attributes; those this reader relies on must be text."""
    attrs = {key: ds.getncattr(key) for key in ds.ncattrs()}
    for key in ("product_name", "model_version", "model_sha256", "model_kind", "time_coverage_start"):
        if not isinstance(attrs.get(key), str):
            raise InputError(path, f"global attribute {key!r} is missing or not text")
    return attrs


def _models(attrs: dict, path: Path) -> tuple[Model, ...]:
    fields = [attrs[key].split() for key in ("model_version", "model_sha256", "model_kind")]
    if not fields[0] or len({len(f) for f in fields}) != 1 or any(k not in MODEL_KINDS for k in fields[2]):
        raise InputError(path, "model_version, model_sha256 and model_kind must list the same models")
    return tuple(Model(*entry) for entry in zip(*fields, strict=True))


def _time_attr(attrs: dict, key: str, path: Path) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(attrs.get(key)).replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        raise InputError(path, f"global attribute {key!r} is not an ISO 8601 time") from None


def _grid_shape(ds, path: Path) -> tuple[int, int]:
    sizes = [len(ds.dimensions[d]) if d in ds.dimensions else 0 for d in _SPATIAL]
    if not all(1 <= n <= MAX_SIDE for n in sizes):
        raise InputError(path, f"dimensions rows x columns must be 1..{MAX_SIDE} each, not {sizes}")
    return sizes[0], sizes[1]


def _variable_of(ds, name: str, path: Path):
    if name not in ds.variables:
        raise InputError(path, f"has no variable {name!r}")
    return ds.variables[name]


def _raw(ds, name: str, dtype, shape: tuple[int, int], path: Path) -> np.ndarray:
    """A (rows, columns) variable's stored values, after checking its dimensions and type."""
    var = _variable_of(ds, name, path)
    if var.dimensions != _SPATIAL or var.shape != shape or var.dtype != dtype:
        found = f"{var.dtype} {var.dimensions} {var.shape}"
        raise InputError(path, f"variable {name!r} must be {np.dtype(dtype)} {_SPATIAL} {shape}, not {found}")
    var.set_auto_maskandscale(False)
    return np.asarray(var[...])


def _number(var, key: str, path: Path, default: float | None = None) -> float:
    """A finite numeric scalar attribute of a variable."""
    value = var.getncattr(key) if key in var.ncattrs() else default
    array = np.asarray(value)
    if value is None or array.size != 1 or array.dtype.kind not in "iuf" or not np.isfinite(array).all():
        raise InputError(path, f"{var.name}:{key} must be one finite number, not {str(value)[:80]!r}")
    return float(array.reshape(()))


def _threshold(var, path: Path) -> float:
    threshold = _number(var, "threshold", path)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(path, f"cloud_mask:threshold {threshold} is not a probability")
    return threshold


def _unpacked(ds, name: str, dtype, shape: tuple[int, int], path: Path) -> np.ndarray:
    """A packed variable as float64: stored * scale_factor + add_offset, NaN at its _FillValue."""
    raw = _raw(ds, name, dtype, shape, path)
    var = ds.variables[name]
    scale = _number(var, "scale_factor", path)
    offset = _number(var, "add_offset", path, default=0.0)
    fill = _number(var, "_FillValue", path)
    if scale <= 0:
        raise InputError(path, f"{name}:scale_factor must be positive, not {scale}")
    values = raw * np.float64(scale) + offset
    values[raw == fill] = np.nan
    return values


def read_models(path: str | Path) -> tuple[Model, ...]:
    """The models a mask records (its global attributes only: cheap for a day of thousands of masks)."""
    import netCDF4

    path = Path(path)
    try:
        with netCDF4.Dataset(path, "r") as ds:
            return _models(_global_text(ds, path), path)
    except OSError as exc:
        raise InputError(path, f"cannot be read as NetCDF: {exc}") from None
