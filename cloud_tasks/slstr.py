"""Readers for the NetCDF files of an SLSTR L1 RBT product: one small class per file type.

Grids, scale factors, fill values and flag bits are read from each file's attributes, never
assumed, and every value read is hostile until checked (the rules in ``cloud_tasks.convert_rules``
trust what they get):

- shapes: every variable's declared shape is checked against the product's own grid BEFORE its data
  is read (``NetCDFFile.variable``): the 1 km grid of ``flags_in.nc`` within ``MAX_ROWS``/``MAX_COLUMNS``/
  ``MAX_PIXELS``, the 0.5 km grid twice it, the tie-point grid no larger than the image grid, at most
  ``MAX_DETECTORS`` detectors; compressed chunks inflate to their declared size at most. Memory therefore
  stays bounded by the product's grid whatever a header declares.
- attributes: one reader per kind (``number``, ``text``, ``fill_value``, ``resolution``, ``flag_word``)
  checks type, finiteness and range (``NUMBER_RANGES``).

Every problem (missing file or variable, wrong shape or dtype, absurd attribute, unreadable file) raises
an InputError naming the file (and the attribute: ``attribute X of variable Y: ...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from isal import isal_zlib  # inflates deflate streams ~2.5x faster than zlib, same bytes

from cloud_tasks.convert_rules import FlagWord, Grid, Scaling, flag_bits, scaled_values
from cloud_tasks.errors import InputError

REFLECTANCE_BANDS = (1, 2, 3, 4, 5, 6)
BT_BANDS = (7, 8, 9)
HALF_KM = 2  # the 0.5 km (``an``) grid has twice the 1 km (``in``) grid's rows and columns

# Sane upper bounds of what a header may declare (real products: 1198-1200 x 1500 pixels, 4 detectors).
MAX_ROWS = 4800  # 1 km rows: four 3-minute frames
MAX_COLUMNS = 3000  # 1 km columns: twice the nadir swath
MAX_PIXELS = 4 * 1200 * 1500  # peak memory ~200 B per 1 km pixel (436 MB for a real product): ~1.5 GB here
MAX_DETECTORS = 64
MAX_FLAGS = 64  # flag_masks entries of one flag variable
MAX_TEXT = 4096  # characters of a text attribute
# attribute -> (lowest, highest) sane value of the numbers the conversion uses
NUMBER_RANGES = {
    "scale_factor": (1e-12, 1e6),
    "add_offset": (-1e6, 1e6),
    "track_offset": (-1e5, 1e5),  # columns
    "start_offset": (-1e7, 1e7),  # rows
    "resolution": (1.0, 1e5),  # metres
}
SOLAR_ZENITH_RANGE = (0.0, 180.0)  # degrees
COORDINATE_RANGES = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0)}  # degrees
_REQUIRED = object()


def _shown(value) -> str:
    """A value read from a file, for an error message: one line, at most 80 characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(var) -> str:
    """The numpy kind of a variable's type ('O' for netCDF types numpy has no dtype for)."""
    return getattr(var.dtype, "kind", "O")


def _fits(declared: tuple[int, ...], expected: tuple[int | range, ...]) -> bool:
    return len(declared) == len(expected) and all(
        size == want if isinstance(want, int) else size in want for size, want in zip(declared, expected, strict=False)
    )


def _expected(shape: tuple[int | range, ...]) -> str:
    sizes = [str(s) if isinstance(s, int) else f"{s.start}..{s.stop - 1}" for s in shape]
    return f"({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"


class NetCDFFile:
    """Base reader: opens one file of the product, reads its grid and checked attributes and variables."""

    def __init__(self, path: str | Path):
        import netCDF4

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "missing from the product")
        try:
            self.dataset = netCDF4.Dataset(self.path)
        except Exception as exc:  # OSError mostly; a name that is not UTF-8 raises UnicodeDecodeError
            reason = exc if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise InputError(self.path, f"not a readable NetCDF file ({reason})") from None
        # Scaling and fill handling are done explicitly (and flag variables must never be masked).
        self.dataset.set_auto_maskandscale(False)

    def close(self) -> None:
        self.dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ attributes

    def bad_attribute(self, name: str, var, problem: str) -> InputError:
        where = f"global attribute {name}" if var is None else f"attribute {name} of variable {var.name}"
        return InputError(self.path, f"{where}: {problem}")

    def attribute(self, name: str, var=None, default=_REQUIRED):
        """The raw value of a global attribute (``var`` None) or of a variable's attribute."""
        owner = self.dataset if var is None else var
        try:
            if name not in owner.ncattrs():
                if default is _REQUIRED:
                    raise self.bad_attribute(name, var, "missing")
                return default
            return owner.getncattr(name)
        except InputError:
            raise
        except Exception as exc:  # an attribute type netCDF4 cannot decode
            raise self.bad_attribute(name, var, f"cannot be read ({exc})") from None

    def number(self, name: str, var=None, default=_REQUIRED) -> float:
        """A numeric attribute, checked: one finite number within ``NUMBER_RANGES[name]``."""
        value = self.attribute(name, var, default)
        array = np.asarray(value)
        if array.dtype.kind not in "iuf" or array.size != 1:
            raise self.bad_attribute(name, var, f"{_shown(value)} is not a number")
        return self._in_range(name, var, float(array.reshape(())), NUMBER_RANGES[name])

    def _in_range(self, name: str, var, number: float, bounds: tuple[float, float]) -> float:
        low, high = bounds
        if not (math.isfinite(number) and low <= number <= high):
            raise self.bad_attribute(name, var, f"{number!r} is not within [{low:g}, {high:g}]")
        return number

    def text(self, name: str, var=None) -> str:
        """A text attribute, checked: a string of at most ``MAX_TEXT`` characters."""
        value = self.attribute(name, var)
        if not isinstance(value, str):
            raise self.bad_attribute(name, var, f"{_shown(value)} is not text")
        if len(value) > MAX_TEXT:
            raise self.bad_attribute(name, var, f"text of {len(value)} characters (at most {MAX_TEXT})")
        return value

    def resolution(self) -> tuple[float, float]:
        """The ``resolution`` global attribute, ``'[ across along ]'`` metres, each within its range."""
        value = self.attribute("resolution")
        parts = value.replace("[", " ").replace("]", " ").split() if isinstance(value, str) else None
        if parts is None or len(parts) != 2:
            raise self.bad_attribute("resolution", None, f"{_shown(value)} is not '[ across along ]'")
        try:
            across, along = (float(part) for part in parts)
        except ValueError:
            raise self.bad_attribute("resolution", None, f"{_shown(value)} holds no numbers") from None
        bounds = NUMBER_RANGES["resolution"]
        return self._in_range("resolution", None, across, bounds), self._in_range("resolution", None, along, bounds)

    def fill_value(self, var) -> int | float | None:
        """The variable's ``_FillValue`` (None without one), checked to be a value of the variable's type."""
        value = self.attribute("_FillValue", var, None)
        if value is None:
            return None
        array = np.asarray(value)
        if array.dtype.kind not in "iuf" or array.size != 1:
            raise self.bad_attribute("_FillValue", var, f"{_shown(value)} is not a number")
        number = array.reshape(()).item()
        if _kind(var) not in "iu":
            return float(number)
        if not (math.isfinite(number) and number == int(number)):
            raise self.bad_attribute("_FillValue", var, f"{number!r} is not an integer")
        info = np.iinfo(var.dtype)
        if not info.min <= int(number) <= info.max:
            raise self.bad_attribute("_FillValue", var, f"{number!r} does not fit {var.dtype}")
        return int(number)

    def scaling(self, var) -> Scaling:
        """The variable's linear packing (``scale_factor``, ``add_offset``, ``_FillValue``), checked."""
        return Scaling(self.number("scale_factor", var, 1.0), self.number("add_offset", var, 0.0), self.fill_value(var))

    @property
    def grid(self) -> Grid:
        """The file's grid: its ``rows``/``columns`` dimensions and checked grid attributes (sizes unchecked)."""
        dims = self.dataset.dimensions
        if "rows" not in dims or "columns" not in dims:
            raise InputError(self.path, "has no 'rows'/'columns' dimensions")
        across, along = self.resolution()
        return Grid(
            rows=len(dims["rows"]),
            columns=len(dims["columns"]),
            track_offset=self.number("track_offset"),
            start_offset=self.number("start_offset"),
            resolution_across=across,
            resolution_along=along,
        )

    # ------------------------------------------------------------ variables

    def variable(self, name: str, dtype: str | None = None, shape: tuple[int | range, ...] | None = None):
        """The named variable, its dtype and declared shape checked (each size an int, or a range allowed)
        before anything of its data is read."""
        if name not in self.dataset.variables:
            raise InputError(self.path, f"has no variable '{name}'")
        var = self.dataset.variables[name]
        if dtype is not None and not (isinstance(var.dtype, np.dtype) and var.dtype == np.dtype(dtype)):
            raise InputError(self.path, f"variable '{name}' has dtype {var.dtype}, expected {dtype}")
        if shape is not None and not _fits(var.shape, shape):
            raise InputError(self.path, f"variable '{name}' has shape {var.shape}, expected {_expected(shape)}")
        return var

    def read(self, var) -> np.ndarray:
        try:
            return var[...]
        except (OSError, RuntimeError) as exc:  # truncated or corrupt compressed data
            raise InputError(self.path, f"variable '{var.name}' cannot be read ({exc})") from None

    def read_packed(self, var) -> PackedArray:
        """The variable's stored bytes, to be decoded later (in any thread).

        SLSTR stores each image as one deflate(+shuffle) chunk; that chunk is read as is and
        inflated by ``PackedArray.decode``. Any other layout is read here through netCDF4.
        """
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                dset = f[var.name]
                filters = dset.id.get_create_plist().get_nfilters()
                if (
                    dset.shape == var.shape
                    and dset.chunks == dset.shape
                    and dset.compression == "gzip"
                    and filters == 1 + bool(dset.shuffle)
                    and dset.dtype.kind in "iu"
                ):
                    mask, chunk = dset.id.read_direct_chunk((0,) * dset.ndim)
                    if mask == 0:
                        return PackedArray(self.path, var.name, dset.shape, dset.dtype, chunk, bool(dset.shuffle))
        except (OSError, KeyError, RuntimeError, ValueError):
            pass  # not plain HDF5 underneath: the netCDF4 read below reports real problems
        return PackedArray(self.path, var.name, var.shape, var.dtype, array=self.read(var))


class PackedArray:
    """An integer image as stored: one deflated (and byte-shuffled) chunk, decoded on demand.

    Inflating releases the GIL, so several channels decode in parallel threads, while the HDF5 and
    netCDF libraries, which are not thread-safe, are only ever called from one thread. A chunk never
    inflates past its declared size (a deflate bomb is refused, not expanded).
    """

    def __init__(self, path, name, shape, dtype, chunk: bytes | None = None, shuffle=False, array=None):
        self.path, self.name, self.shape, self.dtype = Path(path), name, tuple(shape), np.dtype(dtype)
        self._chunk, self._shuffle, self._array = chunk, shuffle, array

    def decode(self) -> np.ndarray:
        if self._array is None:
            count, size = math.prod(self.shape), self.dtype.itemsize
            inflater = isal_zlib.decompressobj()
            try:
                data = inflater.decompress(self._chunk, count * size + 1)
            except isal_zlib.error as exc:
                raise InputError(self.path, f"variable '{self.name}' cannot be read (corrupt data: {exc})") from None
            if len(data) > count * size:
                raise InputError(self.path, f"variable '{self.name}' inflates past the {count * size} bytes declared")
            if len(data) != count * size or not inflater.eof:
                raise InputError(self.path, f"variable '{self.name}' holds {len(data)} bytes, expected {count * size}")
            values = np.frombuffer(data, np.uint8)
            if self._shuffle and size > 1:  # HDF5 shuffle stores byte k of every value together
                values = values.reshape(size, count).T.copy()
            self._array = values.view(self.dtype).reshape(self.shape).astype(self.dtype.newbyteorder("="), copy=False)
            self._chunk = None
        return self._array


@dataclass
class ScaledInts:
    """Raw integer counts (decoded on demand) with their linear scaling and fill value."""

    packed: PackedArray
    scaling: Scaling

    @property
    def path(self) -> Path:
        return self.packed.path

    @property
    def raw(self) -> np.ndarray:
        return self.packed.decode()


class RadianceFile(NetCDFFile):
    """``S{n}_radiance_an.nc``: TOA radiance of a VIS/SWIR channel on the 0.5 km grid (int16 counts)."""

    def __init__(self, product_dir: Path, band: int):
        self.band = band
        super().__init__(Path(product_dir) / f"S{band}_radiance_an.nc")

    def radiance(self, image: Grid) -> ScaledInts:
        """The radiance counts, on the 0.5 km grid nested in the 1 km ``image`` grid (checked)."""
        track_offset = self.number("track_offset")
        if track_offset != HALF_KM * image.track_offset:
            raise InputError(
                self.path,
                f"track_offset {track_offset} is not twice the 1 km grid's "
                f"({image.track_offset}): the 0.5 km grid does not nest in the 1 km grid",
            )
        var = self.variable(f"S{self.band}_radiance_an", "int16", (HALF_KM * image.rows, HALF_KM * image.columns))
        return ScaledInts(self.read_packed(var), self.scaling(var))


class QualityFile(NetCDFFile):
    """``S{n}_quality_an.nc``: calibration data, of which the solar irradiance is needed."""

    def __init__(self, product_dir: Path, band: int):
        self.band = band
        super().__init__(Path(product_dir) / f"S{band}_quality_an.nc")

    def solar_irradiance(self) -> float:
        """E0 of detector 0 (mW m-2 nm-1), as the reference used."""
        name = f"S{self.band}_solar_irradiance_an"
        var = self.variable(name, shape=(range(1, MAX_DETECTORS + 1),))
        if _kind(var) not in "iuf":
            raise InputError(self.path, f"variable '{name}' has dtype {var.dtype}, expected a number")
        values = np.asarray(self.read(var), dtype=np.float64)
        if not (np.isfinite(values[0]) and 0 < values[0] <= 1e5):
            raise InputError(self.path, f"{name} holds no valid irradiance: {_shown(values)}")
        return float(values[0])


class BrightnessTemperatureFile(NetCDFFile):
    """``S{n}_BT_in.nc``: brightness temperature of a TIR channel on the 1 km grid (int16 counts)."""

    def __init__(self, product_dir: Path, band: int):
        self.band = band
        super().__init__(Path(product_dir) / f"S{band}_BT_in.nc")

    def brightness_temperature(self, image: Grid) -> ScaledInts:
        var = self.variable(f"S{self.band}_BT_in", "int16", image.shape)
        return ScaledInts(self.read_packed(var), self.scaling(var))


class GeometryFile(NetCDFFile):
    """``geometry_tn.nc``: sun and satellite angles on the tie-point grid."""

    def __init__(self, product_dir: Path):
        super().__init__(Path(product_dir) / "geometry_tn.nc")

    def tie_grid(self, image: Grid) -> Grid:
        """The tie-point grid, checked against the 1 km ``image`` grid: at least 2 x 2 points for bilinear
        interpolation, never more rows or columns than the image, the same ``start_offset``."""
        tie = self.grid
        if not (2 <= tie.rows <= image.rows and 2 <= tie.columns <= image.columns):
            raise InputError(
                self.path,
                f"tie-point grid of {tie.rows} x {tie.columns} points: expected 2..{image.rows} rows and "
                f"2..{image.columns} columns (at most the 1 km grid's)",
            )
        if tie.start_offset != image.start_offset:
            raise InputError(
                self.path,
                f"start_offset {tie.start_offset} differs from the 1 km grid's ({image.start_offset}): "
                "the tie points do not start on the image's first row",
            )
        return tie

    def solar_zenith(self, tie: Grid) -> np.ndarray:
        """Solar zenith angles on the tie-point grid (float64 degrees, NaN at fill), within [0, 180]."""
        var = self.variable("solar_zenith_tn", shape=tie.shape)
        if _kind(var) not in "iuf":
            raise InputError(self.path, f"variable 'solar_zenith_tn' has dtype {var.dtype}, expected a number")
        fill = self.fill_value(var)
        values = np.asarray(self.read(var), dtype=np.float64)
        if fill is not None and not np.isnan(fill):
            values[values == fill] = np.nan
        low, high = SOLAR_ZENITH_RANGE
        with np.errstate(invalid="ignore"):
            outside = (values < low) | (values > high)
        if outside.any():
            raise InputError(
                self.path, f"solar_zenith_tn holds {int(outside.sum())} value(s) outside [{low:g}, {high:g}] degrees"
            )
        return values


class GeodeticFile(NetCDFFile):
    """``geodetic_in.nc``: latitude and longitude of the 1 km grid's pixel centres (scaled integers in real
    products: int32 micro-degrees)."""

    def __init__(self, product_dir: Path):
        super().__init__(Path(product_dir) / "geodetic_in.nc")

    def coordinate(self, name: str, image: Grid) -> np.ndarray:
        """``latitude`` or ``longitude`` (variable ``<name>_in``) on the 1 km ``image`` grid: float64 degrees, NaN
        at fill; its shape checked before it is read, its values within ``COORDINATE_RANGES`` and not all fill."""
        var = self.variable(f"{name}_in", shape=image.shape)
        if _kind(var) not in "iuf":
            raise InputError(self.path, f"variable '{var.name}' has dtype {var.dtype}, expected a number")
        values = scaled_values(self.read(var), self.scaling(var))
        if np.isnan(values).all():
            raise InputError(self.path, f"{var.name} holds only fill values")
        low, high = COORDINATE_RANGES[name]
        with np.errstate(invalid="ignore"):
            outside = int(((values < low) | (values > high)).sum())
        if outside:
            raise InputError(self.path, f"{var.name} holds {outside} value(s) outside [{low:g}, {high:g}] degrees")
        return values


class FlagsFile(NetCDFFile):
    """``flags_in.nc``: flag words on the 1 km grid (confidence, Bayesian cloud, cloud tests); its grid is
    the product's 1 km grid, against which every other file is checked."""

    def __init__(self, product_dir: Path):
        super().__init__(Path(product_dir) / "flags_in.nc")

    def image_grid(self) -> Grid:
        """The product's 1 km grid, within the sane bounds (``MAX_ROWS``, ``MAX_COLUMNS``, ``MAX_PIXELS``)."""
        grid = self.grid
        if not (
            1 <= grid.rows <= MAX_ROWS and 1 <= grid.columns <= MAX_COLUMNS and grid.rows * grid.columns <= MAX_PIXELS
        ):
            raise InputError(
                self.path,
                f"1 km grid of {grid.rows} x {grid.columns} pixels: expected 1..{MAX_ROWS} rows, "
                f"1..{MAX_COLUMNS} columns and at most {MAX_PIXELS} pixels",
            )
        return grid

    def sensing(self) -> tuple[str, str]:
        """The product's sensing start and stop times, as the file states them."""
        return self.text("start_time"), self.text("stop_time")

    def flag(self, name: str, dtype: str, shape: tuple[int, int], required: tuple[str, ...] = ()) -> FlagWord:
        var = self.variable(name, dtype, shape)
        attrs = var.ncattrs()
        if "flag_masks" not in attrs or "flag_meanings" not in attrs:
            raise InputError(self.path, f"flag variable '{name}' lacks flag_masks/flag_meanings")
        masks = self._flag_masks(var)
        meanings = self.text("flag_meanings", var)
        names = meanings.split()
        if len(names) != len(masks):
            raise InputError(self.path, f"'{name}' has {len(masks)} flag_masks but {len(names)} flag_meanings")
        bits = flag_bits(names, masks)
        missing = [m for m in required if m not in bits]
        if missing:
            raise InputError(self.path, f"'{name}' has no flag(s) {', '.join(missing)} in its flag_meanings")
        return FlagWord(self.read(var), bits, masks, meanings)

    def _flag_masks(self, var) -> np.ndarray:
        """``flag_masks``: 1 to ``MAX_FLAGS`` integers, each a non-zero value of the variable's type."""
        masks = np.atleast_1d(np.asarray(self.attribute("flag_masks", var)))
        if masks.dtype.kind not in "iu" or masks.ndim != 1 or not 1 <= masks.size <= MAX_FLAGS:
            raise self.bad_attribute("flag_masks", var, f"{_shown(masks)} is not a list of 1..{MAX_FLAGS} integers")
        highest = int(np.iinfo(var.dtype).max)
        bad = [int(m) for m in masks.tolist() if not 1 <= int(m) <= highest]
        if bad:
            raise self.bad_attribute("flag_masks", var, f"{bad[:5]} do not fit {var.dtype} (1..{highest})")
        return masks
