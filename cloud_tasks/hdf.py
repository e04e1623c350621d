"""The converted-product HDF5 layout: the contract between ``convert-hdf`` and the ML stages.

One file per product, ``<out>/{day,night}/<product stem>.h5`` (``layout.converted_path``), holding on the product's own
1 km (``in``) grid of ``rows x columns`` pixels:

| dataset | dtype | shape | content |
|---|---|---|---|
| ``refs`` | float32 | rows, columns, 6 | reflectance S1..S6 (0.5 km radiances block-averaged 2x2) |
| ``bts`` | float32 | rows, columns, 3 | brightness temperature S7..S9, K |
| ``sza`` | float32 | rows, columns | solar zenith angle, degrees, interpolated from the tie points |
| ``latitude`` | float64 | rows, columns | pixel centre, degrees_north: ``geodetic_in.nc`` ``latitude_in`` decoded |
| ``longitude`` | float64 | rows, columns | pixel centre, degrees_east (-180..180): ``longitude_in`` decoded |
| ``bayes`` | uint8 | rows, columns | 1 where ``bayes_in`` has any of its named cloud bits set |
| ``summary_cloud`` | uint8 | rows, columns | 1 where ``confidence_in`` has the ``summary_cloud`` bit |
| ``flags/<name>`` | uint8/16 | rows, columns | raw ``bayes_in``, ``confidence_in``, ``cloud_in`` + flag attributes |

NaN marks "no valid value": a fill in the source, a 2x2 block with no valid 0.5 km pixel, and for
reflectances also a solar zenith angle >= 90 degrees or unknown (night: no sunlight to reflect).
``latitude``/``longitude`` are ``counts * scale_factor + add_offset`` of the source in float64, the value a CF
reader decodes from ``geodetic_in.nc`` (exact to its micro-degree counts); NaN at its ``_FillValue``. Files
converted before they were carried lack them: ``read_converted(..., geolocation=True)`` refuses those.
File attributes: see ``ATTRIBUTES``. Readers check a file against this table and its own ``grid_shape``
before reading any dataset (``check_converted``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.errors import InputError
from cloud_tasks.slstr import MAX_COLUMNS, MAX_PIXELS, MAX_ROWS  # a converted grid is its product's 1 km grid

REFLECTANCE_CHANNELS = ("S1", "S2", "S3", "S4", "S5", "S6")
BT_CHANNELS = ("S7", "S8", "S9")
INPUT_CHANNELS = REFLECTANCE_CHANNELS + BT_CHANNELS  # the U-Net's input, in this order
N_CHANNELS = len(INPUT_CHANNELS)
LABEL_SOURCES = ("bayes", "summary_cloud")
GEOLOCATION = ("latitude", "longitude")
GEOLOCATION_UNITS = {"latitude": "degrees_north", "longitude": "degrees_east"}

ATTRIBUTES = (
    "product_name",  # product stem, without .SEN3
    "mission",  # S3A / S3B
    "sensing_start",  # ISO 8601 UTC, from the product's start_time
    "sensing_stop",
    "grid_shape",  # [rows, columns] of the 1 km grid
    "day_fraction",  # fraction of pixels with the confidence_in 'day' bit
    "split",  # 'day' or 'night' (day_fraction >= day threshold)
    "baseline",  # processing baseline from the product name, e.g. '002'
    "degenerate_labels",  # label sources that hold one value everywhere (unusable for training)
    "cloud_tasks_version",
)


@dataclass
class ConvertedProduct:
    """A converted product read back into memory (what training and inference consume)."""

    path: Path
    refs: np.ndarray  # (rows, columns, 6) float32
    bts: np.ndarray  # (rows, columns, 3) float32
    labels: dict[str, np.ndarray]  # label source -> (rows, columns) uint8
    attrs: dict
    latitude: np.ndarray | None = None  # (rows, columns) float64 degrees, NaN unknown; read if asked
    longitude: np.ndarray | None = None

    @property
    def product_name(self) -> str:
        return str(self.attrs["product_name"])


CHANNEL_DATASETS = {"refs": len(REFLECTANCE_CHANNELS), "bts": len(BT_CHANNELS)}


def read_converted(
    path: str | Path, *, labels: tuple[str, ...] = LABEL_SOURCES, geolocation: bool = False
) -> ConvertedProduct:
    """Read a converted product, with its latitude and longitude if ``geolocation``; raise InputError naming the
    file if it is not one (checked before reading)."""
    path = Path(path)
    with open_converted(path) as f:
        check_converted(f, path, labels, geolocation=geolocation)
        coordinates = {name: f[name][()] for name in GEOLOCATION} if geolocation else {}
        return ConvertedProduct(
            path=path,
            refs=f["refs"][()],
            bts=f["bts"][()],
            labels={name: f[name][()] for name in labels},
            attrs=attributes(f),
            **coordinates,
        )


def read_attrs(path: str | Path) -> dict:
    """The file attributes of a converted product, decoded (cheap: no dataset is read)."""
    with open_converted(path) as f:
        return attributes(f)


def attributes(f) -> dict:
    """The file attributes of an open HDF5 file, decoded by ``plain_value``."""
    return {key: plain_value(value) for key, value in f.attrs.items()}


@contextlib.contextmanager
def open_converted(path: str | Path) -> Iterator:
    """An open h5py file, read-only; a file that is not HDF5 (or a read that fails) is an InputError naming it."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as exc:
        raise InputError(path, f"cannot be read as HDF5: {exc}") from None


def check_converted(
    f, path: str | Path, labels: tuple[str, ...] = LABEL_SOURCES, *, geolocation: bool = False
) -> tuple[int, int]:
    """Check an open converted product before any of its datasets is read; return its grid (rows, columns).

    The ``grid_shape`` attribute must be a grid ``convert-hdf`` could have made (see ``grid_shape``), and
    ``refs``, ``bts``, the ``labels`` (and ``latitude``/``longitude`` if ``geolocation``) must be plain datasets
    stored in this file (no link, no external or virtual storage) of exactly that grid and the layout's dtypes:
    memory use is then bounded whatever the header declares.
    """
    rows, columns = grid_shape(f.attrs.get("grid_shape"), path)
    expected = {name: ((rows, columns, n), "float32") for name, n in CHANNEL_DATASETS.items()}
    expected |= {name: ((rows, columns), "integer") for name in labels}
    if geolocation:
        if not any(name in f for name in GEOLOCATION):
            raise InputError(path, "has no latitude/longitude (converted without them): convert it again (--force)")
        expected |= {name: ((rows, columns), "float64") for name in GEOLOCATION}
    missing = [name for name in expected if name not in f]
    if missing:
        raise InputError(path, f"not a converted product: missing dataset(s) {', '.join(missing)}")
    for name, (shape, dtype_name) in expected.items():
        dataset = _plain_dataset(f, name, path)
        if dataset.shape != shape:
            raise InputError(path, f"dataset {name} has shape {dataset.shape}, not {shape} (grid_shape)")
        if not _has_dtype(dataset.dtype, dtype_name):
            raise InputError(path, f"dataset {name} has dtype {dataset.dtype}, not {dtype_name}")
    return rows, columns


def _has_dtype(dtype: np.dtype, name: str) -> bool:
    """Whether a dataset's dtype is the layout's: that float type in either byte order, or any integer (``integer``)."""
    if name == "integer":
        return dtype.kind in "biu"
    return (dtype.kind, dtype.itemsize) == (np.dtype(name).kind, np.dtype(name).itemsize)


def grid_shape(value, path: str | Path) -> tuple[int, int]:
    """The ``grid_shape`` attribute as (rows, columns), checked: at least one pixel, and no more than
    ``convert-hdf`` accepts from a product (``slstr.MAX_ROWS``, ``MAX_COLUMNS``, ``MAX_PIXELS``)."""
    shape = plain_value(value)
    if not isinstance(shape, list) or len(shape) != 2 or not all(type(n) is int for n in shape):
        raise InputError(path, f"grid_shape attribute {str(shape)[:100]!r} is not two integer sizes")
    rows, columns = shape
    if rows < 1 or columns < 1:
        raise InputError(path, f"empty product: grid_shape {rows} x {columns} holds no pixel")
    if rows > MAX_ROWS or columns > MAX_COLUMNS or rows * columns > MAX_PIXELS:
        raise InputError(
            path,
            f"grid_shape {rows} x {columns} exceeds an SLSTR product's 1 km grid "
            f"(at most {MAX_ROWS} rows, {MAX_COLUMNS} columns, {MAX_PIXELS} pixels)",
        )
    return rows, columns


def _plain_dataset(f, name: str, path: str | Path):
    """``f[name]`` if it is a dataset stored in ``f`` itself: links, external raw storage and virtual datasets
    would make the reader open other files."""
    import h5py

    link = f.get(name, getlink=True)
    dataset = f[name] if isinstance(link, h5py.HardLink) else None
    if not isinstance(dataset, h5py.Dataset):
        raise InputError(path, f"{name} is not a dataset stored in this file")
    if dataset.is_virtual or dataset.id.get_create_plist().get_external_count():
        raise InputError(path, f"dataset {name} keeps its data in other files")
    return dataset


def plain_value(value):
    """An HDF5 attribute value as plain Python (str, list, float, int): the one decoder of the package."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
