"""Synthetic converted products in the ``cloud_tasks.hdf`` layout, learnable by the U-Net.

A smooth random cloud field drives the image: clouds raise the reflectances and lower the
brightness temperatures, and the labels are the field thresholded, so a model can learn them.
Each product lies on a swath of 1 km pixels (``test_product_footprint.swath``) north of the previous one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np

from cloud_tasks import __version__
from cloud_tasks.hdf import GEOLOCATION, LABEL_SOURCES
from cloud_tasks.layout import converted_path

from test_product_footprint import swath  # isort: skip (a test module beside this one)

# Reflectance gain of a cloud per channel S1..S6 and BT drop per channel S7..S9 (K).
CLOUD_REFLECTANCE = np.array([0.55, 0.5, 0.45, 0.1, 0.3, 0.25], np.float32)
CLOUD_BT_DROP = np.array([35.0, 40.0, 42.0], np.float32)


def product_name(index: int) -> str:
    """A valid SLSTR L1 RBT product name, distinct for each index."""
    start = dt.datetime(2020, 6, 1, 10, 0) + dt.timedelta(minutes=3 * index)
    stamp = [t.strftime("%Y%m%dT%H%M%S") for t in (start, start + dt.timedelta(minutes=3), start)]
    return f"S3A_SL_1_RBT____{stamp[0]}_{stamp[1]}_{stamp[2]}_0179_064_{index % 1000:03d}_1440_LN2_O_NT_004"


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, scale: float = 12.0) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with features ~``scale`` pixels wide (FFT low-pass)."""
    rows, cols = shape
    ky = np.fft.fftfreq(rows)[:, None]
    kx = np.fft.rfftfreq(cols)[None, :]
    spectrum = np.fft.rfft2(rng.standard_normal(shape)) * np.exp(-((ky**2 + kx**2) * (2 * np.pi * scale) ** 2) / 2)
    field = np.fft.irfft2(spectrum, s=shape)
    return ((field - field.mean()) / field.std()).astype(np.float32)


def write_product(
    out_dir: str | Path,
    index: int = 0,
    *,
    shape: tuple[int, int] = (128, 128),
    split: str = "day",
    cloud_fraction: float = 0.5,
    nan_fraction: float = 0.002,
    nodata_rows: int = 0,
    label: int | None = None,
) -> Path:
    """Write product ``index`` to ``out_dir/<split>/<name>.h5`` and return its path.

    About ``nan_fraction`` of the pixels get a NaN in one channel, ``nodata_rows`` top rows are NaN in
    every channel, and ``label`` (0 or 1) makes both label sources that value everywhere (degenerate).
    """
    rng = np.random.default_rng(index)
    field = smooth_field(shape, rng)
    threshold = np.quantile(field, 1.0 - cloud_fraction)
    opacity = 1.0 / (1.0 + np.exp(-4.0 * (field - threshold)))  # smooth cloud edge around the label boundary
    surface = smooth_field(shape, rng, scale=30.0)[..., None]  # varying ground, broader than clouds
    refs = 0.08 + 0.03 * surface + opacity[..., None] * CLOUD_REFLECTANCE + 0.01 * rng.standard_normal((*shape, 6))
    bts = 290.0 + 3.0 * surface - opacity[..., None] * CLOUD_BT_DROP + 0.3 * rng.standard_normal((*shape, 3))
    cloud = (field > threshold).astype(np.uint8)
    bayes = cloud if label is None else np.full(shape, label, np.uint8)
    summary = bayes.copy()

    channels = np.concatenate([refs, bts], axis=-1).astype(np.float32)
    n_nan = int(nan_fraction * cloud.size)
    channels[rng.integers(0, shape[0], n_nan), rng.integers(0, shape[1], n_nan), rng.integers(0, 9, n_nan)] = np.nan
    channels[:nodata_rows] = np.nan
    refs, bts = channels[..., :6], channels[..., 6:]
    if split == "night":
        refs[:] = np.nan

    path = _product_path(out_dir, index, split)
    degenerate = [n for n, a in (("bayes", bayes), ("summary_cloud", summary)) if a.min() == a.max()]
    with h5py.File(path, "w") as f:
        f["refs"], f["bts"] = refs, bts
        f["sza"] = np.full(shape, 40.0 if split == "day" else 120.0, np.float32)
        f["latitude"], f["longitude"] = swath(40.0 + 2.0 * index, 10.0, 192.0, shape)
        f["bayes"], f["summary_cloud"] = bayes, summary
        f["flags/bayes_in"] = bayes
        f["flags/bayes_in"].attrs.update(
            flag_masks=np.array([1, 2, 4, 8], np.uint8),
            flag_meanings="single_low single_moderate dual_low dual_moderate",
        )
        _write_attributes(f, index, shape, split, degenerate)
    return path


def write_declared_product(
    out_dir: str | Path, index: int = 0, *, shape: tuple[int, int], grid_shape: tuple[int, int] | None = None
) -> Path:
    """A day product whose datasets are declared ``shape`` (chunked, no chunk ever written): a file of a few KB
    that would take ``rows x columns x 13`` values and more once read. ``grid_shape`` (default ``shape``) is what
    its attribute claims."""
    path = _product_path(out_dir, index, "day")
    datasets = {"refs": (6,), "bts": (3,), "sza": (), "bayes": (), "summary_cloud": (), "latitude": (), "longitude": ()}
    with h5py.File(path, "w") as f:
        for name, channels in datasets.items():
            dtype = np.uint8 if name in LABEL_SOURCES else np.float64 if name in GEOLOCATION else np.float32
            f.create_dataset(name, shape=(*shape, *channels), dtype=dtype)  # storage allocated at the first write
        _write_attributes(f, index, grid_shape or shape, "day", [])
    return path


def _product_path(out_dir: str | Path, index: int, split: str) -> Path:
    path = converted_path(out_dir, split, product_name(index))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_attributes(f: h5py.File, index: int, shape: tuple[int, int], split: str, degenerate: list[str]) -> None:
    """The file attributes of the layout (``hdf.ATTRIBUTES``)."""
    start = dt.datetime(2020, 6, 1, 10, 0) + dt.timedelta(minutes=3 * index)
    f.attrs.update(
        product_name=product_name(index),
        mission="S3A",
        sensing_start=start.isoformat() + "Z",
        sensing_stop=(start + dt.timedelta(minutes=3)).isoformat() + "Z",
        grid_shape=np.array(shape, np.int64),
        day_fraction=1.0 if split == "day" else 0.0,
        split=split,
        baseline="004",
        degenerate_labels=np.array(degenerate, dtype=h5py.string_dtype()),
        cloud_tasks_version=__version__,
    )


def write_products(out_dir: str | Path, n: int, **kwargs) -> list[Path]:
    """Write products 0..n-1 (see ``write_product``)."""
    return [write_product(out_dir, i, **kwargs) for i in range(n)]
