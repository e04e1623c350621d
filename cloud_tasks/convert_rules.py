"""The science of ``convert-hdf`` as pure functions on numpy arrays: no file is opened here.

``cloud_tasks.slstr`` reads the product's variables and attributes (checked); ``cloud_tasks.convert`` wires
the two together. Every rule below can be tested on small arrays:

- ``brightness_temperature``: ``raw * scale_factor + add_offset``, NaN at fill;
- ``scaled_values``: the same in float64 (latitude and longitude: exact to the micro-degree counts);
- ``block_mean_2x2``: the exact 0.5 km -> 1 km resampling of the radiances;
- ``interpolate_tie_points``: bilinear interpolation of the tie-point grid (solar zenith angle) to the image;
- ``sun_geometry`` and ``reflectance``: ``R = pi * L / (E0 * cos SZA)``, NaN where SZA >= 90 deg or unknown;
- ``FlagWord``, ``decode_labels``, ``degenerate_labels``: flags decoded by meaning;
- ``day_fraction`` and ``split_for``: the day/night rule;
- ``product_attributes``: the converted file's attributes (``cloud_tasks.hdf.ATTRIBUTES``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloud_tasks import __version__
from cloud_tasks.layout import DAY_SPLIT, NIGHT_SPLIT

DEFAULT_DAY_THRESHOLD = 0.5
DAY_FLAG, CLOUD_FLAG, SPARE_FLAG = "day", "summary_cloud", "spare"
CONFIDENCE_REQUIRED = (DAY_FLAG, CLOUD_FLAG)  # the confidence_in meanings the rules below use


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


@dataclass(frozen=True)
class Scaling:
    """How integer counts map to physical values: ``counts * scale + offset``; ``fill`` marks no value."""

    scale: float = 1.0
    offset: float = 0.0
    fill: int | None = None


# ---------------------------------------------------------------- channels


def brightness_temperature(raw: np.ndarray, scaling: Scaling) -> np.ndarray:
    """float32 physical values of integer counts, NaN at fill."""
    values = raw.astype(np.float32) * np.float32(scaling.scale) + np.float32(scaling.offset)
    if scaling.fill is not None:
        values[raw == scaling.fill] = np.nan
    return values


def scaled_values(raw: np.ndarray, scaling: Scaling) -> np.ndarray:
    """float64 physical values of counts (``raw * scale + offset``), NaN at fill: the scaling netCDF4 applies
    itself, so that a value equals the file's as any CF reader decodes it."""
    values = np.asarray(raw, np.float64) * scaling.scale
    if scaling.offset:
        values += scaling.offset
    if scaling.fill is not None:
        values[raw == scaling.fill] = np.nan
    return values


def holds_values(raw: np.ndarray, scaling: Scaling) -> bool:
    """Whether any count is not the fill value."""
    return scaling.fill is None or bool((raw != scaling.fill).any())


def block_mean_2x2(raw: np.ndarray, scaling: Scaling, shape: tuple[int, int]) -> np.ndarray:
    """Exact 0.5 km -> 1 km resampling: mean of the valid counts of each 2x2 block, scaled to physical
    units (float32); NaN where the block holds no valid count. ``shape`` is the 1 km grid's."""
    rows, columns = shape
    raw = raw[: 2 * rows, : 2 * columns]
    quads = (raw[0::2, 0::2], raw[0::2, 1::2], raw[1::2, 0::2], raw[1::2, 1::2])
    if scaling.fill is None or not (raw == scaling.fill).any():
        total = quads[0].astype(np.int32)
        for quad in quads[1:]:
            total += quad
        mean = total.astype(np.float32) * np.float32(0.25)
    else:
        total = np.zeros(shape, np.int32)
        valid_count = np.zeros(shape, np.int32)
        for quad in quads:
            valid = quad != scaling.fill
            total += np.where(valid, quad, 0)
            valid_count += valid
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total.astype(np.float32) / valid_count.astype(np.float32)  # 0/0 -> NaN
    return mean * np.float32(scaling.scale) + np.float32(scaling.offset)


# ---------------------------------------------------------------- sun and reflectance


def tie_point_coordinates(image: Grid, tie: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Fractional tie-point (row, column) indices of every image row and column.

    Image column c lies at tie-point column ``(c - track_offset_img) * res_across_img / res_across_tp
    + track_offset_tp``; image row r at tie-point row ``r * res_along_img / res_along_tp`` (both grids
    start at the same ``start_offset``).
    """
    if image.start_offset != tie.start_offset:
        raise ValueError(
            f"image and tie-point grids start at different start_offset ({image.start_offset} vs {tie.start_offset})"
        )
    columns = (np.arange(image.columns) - image.track_offset) * (
        image.resolution_across / tie.resolution_across
    ) + tie.track_offset
    rows = np.arange(image.rows) * (image.resolution_along / tie.resolution_along)
    return rows, columns


def interpolate_tie_points(values: np.ndarray, image: Grid, tie: Grid) -> np.ndarray:
    """Bilinear interpolation of a tie-point field to every pixel of an image grid (float64).

    Values at tie-point positions are reproduced exactly. Raises ValueError if the grids do not share
    their ``start_offset``.
    """
    rows, columns = tie_point_coordinates(image, tie)
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


@dataclass(frozen=True)
class SunGeometry:
    """The solar zenith angle as stored, where the sun shines, and ``pi / cos(SZA)`` there (NaN elsewhere)."""

    sza: np.ndarray  # float32, degrees: the value written to the converted file
    sunlit: np.ndarray  # bool
    factor: np.ndarray  # float32

    @property
    def any_sunlit(self) -> bool:
        return bool(self.sunlit.any())


def sun_geometry(sza: np.ndarray) -> SunGeometry:
    """From the interpolated SZA (float64): sunlit is decided on the stored float32 value, so that readers
    of the converted file see the same rule (NaN -> not sunlit); the factor is computed in float64."""
    stored = sza.astype(np.float32)
    with np.errstate(invalid="ignore"):
        sunlit = stored < 90.0
    factor = np.full(sza.shape, np.nan, np.float32)
    factor[sunlit] = (math.pi / np.cos(np.radians(sza[sunlit]))).astype(np.float32)
    return SunGeometry(stored, sunlit, factor)


def reflectance(radiance: np.ndarray, irradiance: float, sun: SunGeometry) -> np.ndarray:
    """``pi * L / (E0 * cos SZA)`` of a 1 km radiance (float32); NaN where there is no sunlight."""
    return radiance * (sun.factor / np.float32(irradiance))


# ---------------------------------------------------------------- flags, labels, day/night


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


def flag_bits(meanings: list[str], masks) -> dict[str, int]:
    """Meaning -> OR of its masks (a meaning such as 'spare' may appear several times)."""
    bits: dict[str, int] = {}
    for meaning, mask in zip(meanings, masks, strict=True):
        bits[meaning] = bits.get(meaning, 0) | int(mask)
    return bits


def day_fraction(confidence: FlagWord) -> float:
    """Fraction of the pixels whose ``confidence_in`` carries the ``day`` bit."""
    return float(confidence.mask(DAY_FLAG).mean())


def split_for(fraction: float, threshold: float) -> str:
    """``day`` when at least ``threshold`` of the pixels are day pixels, else ``night``."""
    return DAY_SPLIT if fraction >= threshold else NIGHT_SPLIT


def decode_labels(confidence: FlagWord, bayes: FlagWord) -> dict[str, np.ndarray]:
    """The label sources (``cloud_tasks.hdf.LABEL_SOURCES``) as uint8 0/1 arrays.

    ``bayes`` is any named (non-spare) bit of ``bayes_in``: baseline-002 products hold 255 there,
    "every bit set", which is why flag variables are read without netCDF4's auto-masking.
    """
    return {
        "bayes": bayes.mask(*(meaning for meaning in bayes.bits if meaning != SPARE_FLAG)).astype(np.uint8),
        "summary_cloud": confidence.mask(CLOUD_FLAG).astype(np.uint8),
    }


def degenerate_labels(labels: dict[str, np.ndarray]) -> list[str]:
    """The labels holding one value everywhere (unusable for training)."""
    return [label for label, values in labels.items() if values.min() == values.max()]


def product_attributes(
    name, sensing: tuple[str, str], shape: tuple[int, int], fraction: float, threshold: float, split: str, labels
) -> dict:
    """The converted file's attributes (``cloud_tasks.hdf.ATTRIBUTES``); ``name`` is a ``ProductName``,
    ``split`` the one ``split_for(fraction, threshold)`` chose, ``labels`` the degenerate label sources."""
    return {
        "product_name": name.stem,
        "mission": name.mission,
        "sensing_start": sensing[0],
        "sensing_stop": sensing[1],
        "grid_shape": np.array(shape, np.int64),
        "day_fraction": fraction,
        "day_threshold": threshold,
        "split": split,
        "baseline": name.baseline,
        "degenerate_labels": labels,
        "cloud_tasks_version": __version__,
    }
