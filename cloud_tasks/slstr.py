"""Readers for the NetCDF files of an SLSTR L1 RBT product: one small class per file type.

Grids, scale factors, fill values and flag bits are read from each file's attributes, never
assumed. Every problem (missing file or variable, wrong shape or dtype, unreadable file) raises
an InputError naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from isal import isal_zlib  # inflates deflate streams ~2.5x faster than zlib, same bytes

from cloud_tasks.errors import InputError

REFLECTANCE_BANDS = (1, 2, 3, 4, 5, 6)
BT_BANDS = (7, 8, 9)


@dataclass(frozen=True)
class Grid:
    """A product grid as its files describe it (``rows``/``columns`` dimensions and global attributes)."""

    rows: int
    columns: int
    track_offset: float
    start_offset: float
    resolution_across: float  # metres per column
    resolution_along: float  # metres per row

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.columns


class NetCDFFile:
    """Base reader: opens one file of the product, reads its grid, checks variables."""

    def __init__(self, path: str | Path):
        import netCDF4

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "missing from the product")
        try:
            self.dataset = netCDF4.Dataset(self.path)
        except OSError as exc:
            raise InputError(self.path, f"not a readable NetCDF file ({exc})") from None
        # Scaling and fill handling are done explicitly (and flag variables must never be masked).
        self.dataset.set_auto_maskandscale(False)

    def close(self) -> None:
        self.dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def attribute(self, name: str):
        try:
            return self.dataset.getncattr(name)
        except AttributeError:
            raise InputError(self.path, f"has no global attribute '{name}'") from None

    @property
    def grid(self) -> Grid:
        dims = self.dataset.dimensions
        if "rows" not in dims or "columns" not in dims:
            raise InputError(self.path, "has no 'rows'/'columns' dimensions")
        # resolution is a bracketed string, '[ across along ]'
        parts = str(self.attribute("resolution")).replace("[", " ").replace("]", " ").split()
        if len(parts) != 2:
            raise InputError(
                self.path, f"resolution attribute {self.attribute('resolution')!r} is not '[ across along ]'"
            )
        return Grid(
            rows=len(dims["rows"]),
            columns=len(dims["columns"]),
            track_offset=float(self.attribute("track_offset")),
            start_offset=float(self.attribute("start_offset")),
            resolution_across=float(parts[0]),
            resolution_along=float(parts[1]),
        )

    def variable(self, name: str, dtype: str | None = None, shape: tuple[int, ...] | None = None):
        """The named variable, checked for presence, dtype and shape."""
        if name not in self.dataset.variables:
            raise InputError(self.path, f"has no variable '{name}'")
        var = self.dataset.variables[name]
        if dtype is not None and var.dtype != np.dtype(dtype):
            raise InputError(self.path, f"variable '{name}' has dtype {var.dtype}, expected {dtype}")
        if shape is not None and var.shape != shape:
            raise InputError(self.path, f"variable '{name}' has shape {var.shape}, expected {shape}")
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
                    dset.chunks == dset.shape
                    and dset.compression == "gzip"
                    and filters == 1 + bool(dset.shuffle)
                    and dset.dtype.kind in "iu"
                ):
                    mask, chunk = dset.id.read_direct_chunk((0,) * dset.ndim)
                    if mask == 0:
                        return PackedArray(self.path, var.name, dset.shape, dset.dtype, chunk, bool(dset.shuffle))
        except (OSError, KeyError):
            pass  # not plain HDF5 underneath: the netCDF4 read below reports real problems
        return PackedArray(self.path, var.name, var.shape, var.dtype, array=self.read(var))

    def scale_offset_fill(self, var) -> tuple[float, float, int | None]:
        attrs = var.ncattrs()
        scale = float(var.getncattr("scale_factor")) if "scale_factor" in attrs else 1.0
        offset = float(var.getncattr("add_offset")) if "add_offset" in attrs else 0.0
        fill = var.getncattr("_FillValue").item() if "_FillValue" in attrs else None
        return scale, offset, fill


class PackedArray:
    """An integer image as stored: one deflated (and byte-shuffled) chunk, decoded on demand.

    Inflating releases the GIL, so several channels decode in parallel threads, while the HDF5 and
    netCDF libraries, which are not thread-safe, are only ever called from one thread.
    """

    def __init__(self, path, name, shape, dtype, chunk: bytes | None = None, shuffle=False, array=None):
        self.path, self.name, self.shape, self.dtype = Path(path), name, tuple(shape), np.dtype(dtype)
        self._chunk, self._shuffle, self._array = chunk, shuffle, array

    def decode(self) -> np.ndarray:
        if self._array is None:
            try:
                data = isal_zlib.decompress(self._chunk)
            except isal_zlib.error as exc:
                raise InputError(self.path, f"variable '{self.name}' cannot be read (corrupt data: {exc})") from None
            count, size = math.prod(self.shape), self.dtype.itemsize
            if len(data) != count * size:
                raise InputError(self.path, f"variable '{self.name}' holds {len(data)} bytes, expected {count * size}")
            values = np.frombuffer(data, np.uint8)
            if self._shuffle and size > 1:  # HDF5 shuffle stores byte k of every value together
                values = values.reshape(size, count).T.copy()
            self._array = values.view(self.dtype).reshape(self.shape).astype(self.dtype.newbyteorder("="), copy=False)
            self._chunk = None
        return self._array


@dataclass
class ScaledInts:
    """Raw integer counts with their linear scaling and fill value."""

    packed: PackedArray
    scale: float
    offset: float
    fill: int | None

    @property
    def raw(self) -> np.ndarray:
        return self.packed.decode()

    @property
    def valid(self) -> np.ndarray:
        return np.ones(self.raw.shape, bool) if self.fill is None else self.raw != self.fill

    def physical(self) -> np.ndarray:
        """float32 physical values, NaN at fill."""
        values = self.raw.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        if self.fill is not None:
            values[self.raw == self.fill] = np.nan
        return values


class RadianceFile(NetCDFFile):
    """``S{n}_radiance_an.nc``: TOA radiance of a VIS/SWIR channel on the 0.5 km grid (int16 counts)."""

    def __init__(self, product_dir: Path, band: int):
        self.band = band
        super().__init__(Path(product_dir) / f"S{band}_radiance_an.nc")

    def radiance(self, shape: tuple[int, int]) -> ScaledInts:
        var = self.variable(f"S{self.band}_radiance_an", "int16", shape)
        return ScaledInts(self.read_packed(var), *self.scale_offset_fill(var))


class QualityFile(NetCDFFile):
    """``S{n}_quality_an.nc``: calibration data, of which the solar irradiance is needed."""

    def __init__(self, product_dir: Path, band: int):
        self.band = band
        super().__init__(Path(product_dir) / f"S{band}_quality_an.nc")

    def solar_irradiance(self) -> float:
        """E0 of detector 0 (mW m-2 nm-1), as the reference used."""
        values = np.asarray(self.read(self.variable(f"S{self.band}_solar_irradiance_an")), dtype=np.float64)
        if values.size == 0 or not np.isfinite(values.flat[0]) or values.flat[0] <= 0:
            raise InputError(self.path, f"S{self.band}_solar_irradiance_an holds no valid irradiance: {values}")
        return float(values.flat[0])


class BrightnessTemperatureFile(NetCDFFile):
    """``S{n}_BT_in.nc``: brightness temperature of a TIR channel on the 1 km grid (int16 counts)."""

    def __init__(self, product_dir: Path, band: int):
        self.band = band
        super().__init__(Path(product_dir) / f"S{band}_BT_in.nc")

    def brightness_temperature(self, shape: tuple[int, int]) -> ScaledInts:
        var = self.variable(f"S{self.band}_BT_in", "int16", shape)
        return ScaledInts(self.read_packed(var), *self.scale_offset_fill(var))


class GeometryFile(NetCDFFile):
    """``geometry_tn.nc``: sun and satellite angles on the tie-point grid."""

    def __init__(self, product_dir: Path):
        super().__init__(Path(product_dir) / "geometry_tn.nc")

    def solar_zenith(self) -> np.ndarray:
        grid = self.grid
        var = self.variable("solar_zenith_tn", shape=grid.shape)
        values = np.asarray(self.read(var), dtype=np.float64)
        _, _, fill = self.scale_offset_fill(var)
        if fill is not None and not np.isnan(fill):
            values[values == fill] = np.nan
        return values


@dataclass
class FlagWord:
    """A flag variable's raw values and its bits by meaning (from ``flag_masks``/``flag_meanings``)."""

    raw: np.ndarray
    bits: dict[str, int]  # meaning -> OR of the masks carrying that meaning ('spare' may repeat)
    masks: np.ndarray
    meanings: str

    def mask(self, *meanings: str) -> np.ndarray:
        """True where any of the named bits is set."""
        bits = 0
        for meaning in meanings:
            bits |= self.bits[meaning]
        return (self.raw & self.raw.dtype.type(bits)) != 0


class FlagsFile(NetCDFFile):
    """``flags_in.nc``: flag words on the 1 km grid (confidence, Bayesian cloud, cloud tests)."""

    def __init__(self, product_dir: Path):
        super().__init__(Path(product_dir) / "flags_in.nc")

    def flag(self, name: str, dtype: str, shape: tuple[int, int], required: tuple[str, ...] = ()) -> FlagWord:
        var = self.variable(name, dtype, shape)
        attrs = var.ncattrs()
        if "flag_masks" not in attrs or "flag_meanings" not in attrs:
            raise InputError(self.path, f"flag variable '{name}' lacks flag_masks/flag_meanings")
        masks = np.atleast_1d(var.getncattr("flag_masks"))
        meanings = str(var.getncattr("flag_meanings"))
        names = meanings.split()
        if len(names) != len(masks):
            raise InputError(self.path, f"'{name}' has {len(masks)} flag_masks but {len(names)} flag_meanings")
        bits: dict[str, int] = {}
        for meaning, mask in zip(names, masks, strict=True):
            bits[meaning] = bits.get(meaning, 0) | int(mask)
        missing = [m for m in required if m not in bits]
        if missing:
            raise InputError(self.path, f"'{name}' has no flag(s) {', '.join(missing)} in its flag_meanings")
        return FlagWord(self.read(var), bits, masks, meanings)


def interpolate_tie_points(values: np.ndarray, image: Grid, tie: Grid) -> np.ndarray:
    """Bilinear interpolation of a tie-point field to every pixel of an image grid.

    Image column c lies at tie-point column ``(c - track_offset_img) * res_across_img / res_across_tp
    + track_offset_tp``; image row r at tie-point row ``r * res_along_img / res_along_tp`` (both grids
    start at the same ``start_offset``). Values at tie-point positions are reproduced exactly.
    """
    if image.start_offset != tie.start_offset:
        raise ValueError(
            f"image and tie-point grids start at different start_offset ({image.start_offset} vs {tie.start_offset})"
        )
    columns = (np.arange(image.columns) - image.track_offset) * (
        image.resolution_across / tie.resolution_across
    ) + tie.track_offset
    rows = np.arange(image.rows) * (image.resolution_along / tie.resolution_along)
    across = _interpolate_axis(values, columns, axis=1)
    return _interpolate_axis(across, rows, axis=0)


def _interpolate_axis(values: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` at fractional indices ``coords`` along ``axis``."""
    n = values.shape[axis]
    lower = np.clip(np.floor(coords).astype(np.intp), 0, max(n - 2, 0))
    upper = np.minimum(lower + 1, n - 1)
    weight = coords - lower
    shape = [1, 1]
    shape[axis] = len(coords)
    weight = weight.reshape(shape)
    v0 = np.take(values, lower, axis=axis)
    v1 = np.take(values, upper, axis=axis)
    # Where the weight is exactly 0 or 1 take the neighbour itself, so that a NaN beyond the
    # last valid tie point cannot leak into a pixel sitting on a valid one.
    with np.errstate(invalid="ignore"):
        mixed = v0 + weight * (v1 - v0)
    return np.where(weight == 0, v0, np.where(weight == 1, v1, mixed))


def block_mean_2x2(counts: ScaledInts, shape: tuple[int, int]) -> np.ndarray:
    """Exact 0.5 km -> 1 km resampling: mean of the valid pixels of each 2x2 block, scaled to
    physical units (float32); NaN where the block holds no valid pixel."""
    rows, columns = shape
    raw = counts.raw[: 2 * rows, : 2 * columns]
    quads = (raw[0::2, 0::2], raw[0::2, 1::2], raw[1::2, 0::2], raw[1::2, 1::2])
    if counts.fill is None or not (raw == counts.fill).any():
        total = quads[0].astype(np.int32)
        for quad in quads[1:]:
            total += quad
        mean = total.astype(np.float32) * np.float32(0.25)
    else:
        total = np.zeros(shape, np.int32)
        valid_count = np.zeros(shape, np.int32)
        for quad in quads:
            valid = quad != counts.fill
            total += np.where(valid, quad, 0)
            valid_count += valid
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total.astype(np.float32) / valid_count.astype(np.float32)  # 0/0 -> NaN
    return mean * np.float32(counts.scale) + np.float32(counts.offset)
