"""Training data: which products are usable, the split by product, and the ``tf.data`` patch pipeline.

A training example is one ``patch_size`` square of a product's 1 km grid:

- ``x``: (patch, patch, 9) float32, reflectances S1..S6 then brightness temperatures S7..S9,
  normalised as the reference (``refl - 0.5``, ``(bt - 270) / 22``), NaN replaced by 0;
- ``y``: (patch, patch, 2) float32, channel 0 the label (0 clear, 1 cloud), channel 1 the pixel's
  weight: 0 where any input channel was NaN, else 1.

The weight travels inside ``y`` so that the loss and metric (``model.py``) can drop those pixels
and average over the remaining ones only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.errors import CloudTasksError
from cloud_tasks.hdf import LABEL_SOURCES, N_CHANNELS, attributes, check_converted, open_converted, read_converted
from cloud_tasks.naming import stem_from_file

log = logging.getLogger(__name__)

BT_OFFSET, BT_SCALE = 270.0, 22.0
REFLECTANCE_OFFSET = 0.5
# Without a memory cache the shuffle buffer holds real patches: bound it.
STREAM_SHUFFLE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Product:
    """A converted product usable for training."""

    path: Path
    name: str
    n_patches: int


def normalise(refs: np.ndarray, bts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs from reflectances (rows, columns, 6) and BTs (rows, columns, 3).

    Returns ``x`` (rows, columns, 9) float32 with NaN set to 0 after normalisation, and the number
    of finite channels per pixel (uint8): 9 is a fully valid pixel, 0 a pixel with no data at all.
    """
    x = np.concatenate([refs - REFLECTANCE_OFFSET, (bts - BT_OFFSET) / BT_SCALE], axis=-1).astype(np.float32)
    finite = np.isfinite(x)
    x[~finite] = 0.0
    return x, finite.sum(axis=-1, dtype=np.uint8)


def tile_origins(shape: tuple[int, int], patch_size: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping patches tiling the centre crop of an image (as the seed)."""
    rows, cols = shape
    n_rows, n_cols = rows // patch_size, cols // patch_size
    top, left = (rows - n_rows * patch_size) // 2, (cols - n_cols * patch_size) // 2
    return [(top + i * patch_size, left + j * patch_size) for i in range(n_rows) for j in range(n_cols)]


def product_patches(path: str | Path, label: str, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All patches of one product: ``x`` (n, patch, patch, 9) and ``y`` (n, patch, patch, 2), float32."""
    product = read_converted(path, labels=(label,))
    x, n_finite = normalise(product.refs, product.bts)
    y = np.stack([product.labels[label] > 0, n_finite == N_CHANNELS], axis=-1).astype(np.float32)
    corners = tile_origins(x.shape[:2], patch_size)

    def cut(image: np.ndarray) -> np.ndarray:
        patches = [image[r : r + patch_size, c : c + patch_size] for r, c in corners]
        return np.stack(patches) if patches else np.zeros((0, patch_size, patch_size, image.shape[-1]), np.float32)

    return cut(x), cut(y)


def select_products(paths: Sequence[Path], label: str, patch_size: int) -> list[Product]:
    """The day products whose ``label`` is usable; raise CloudTasksError if none is.

    Night products (no reflectances) are skipped and counted; a product whose label holds one value
    everywhere (listed in its ``degenerate_labels`` attribute, or found so) or that is smaller than a
    patch is excluded with a warning.
    """
    if label not in LABEL_SOURCES:
        raise CloudTasksError(f"unknown label source {label!r}; choose one of {', '.join(LABEL_SOURCES)}")
    usable, n_night = [], 0
    for path in paths:
        attrs, shape, labels = _inspect(path, label)
        if attrs.get("split") != "day":
            n_night += 1
            continue
        if label in _names(attrs.get("degenerate_labels")) or labels.min() == labels.max():
            log.warning("%s: label %r holds one value everywhere: product excluded from training", path, label)
            continue
        n_patches = len(tile_origins(shape, patch_size))
        if n_patches == 0:
            log.warning("%s: grid %dx%d is smaller than one %d px patch: product excluded", path, *shape, patch_size)
            continue
        name = stem_from_file(attrs.get("product_name", Path(path).stem), path)
        usable.append(Product(path=Path(path), name=name, n_patches=n_patches))
    if n_night:
        log.info("skipped %d night product(s): no reflectances to train on", n_night)
    if not usable:
        raise CloudTasksError(
            f"no usable training product among {len(paths)} input(s): training needs day products with a "
            f"{label!r} label that is not one value everywhere and a grid of at least {patch_size} px each way"
        )
    return usable


def split_products(products: Sequence[Product], train_split: float, seed: int) -> tuple[list[Product], list[Product]]:
    """Split by product (patches of one product never straddle train and test), reproducibly from ``seed``.

    With two or more products the test set holds at least one and the training set keeps at least one;
    a single product is used for both, with a warning (its test accuracy is then a training accuracy).
    """
    if len(products) == 1:
        log.warning("only one usable product (%s): it is used for both training and testing", products[0].name)
        return list(products), list(products)
    order = np.random.default_rng(seed).permutation(len(products))
    n_test = min(len(products) - 1, max(1, round(len(products) * (1.0 - train_split))))
    test = sorted(order[:n_test])
    train = sorted(order[n_test:])
    return [products[i] for i in train], [products[i] for i in test]


def majority_rate(products: Sequence[Product], label: str, patch_size: int, clip_offset: int) -> float:
    """Share of the majority class among the pixels the metric scores (valid, inside the clipped border)."""
    cloud = total = 0.0
    for product in products:
        _, y = product_patches(product.path, label, patch_size)
        inner = y[:, clip_offset : patch_size - clip_offset, clip_offset : patch_size - clip_offset]
        cloud += float((inner[..., 0] * inner[..., 1]).sum())
        total += float(inner[..., 1].sum())
    fraction = cloud / total if total else 0.0
    return max(fraction, 1.0 - fraction)


def make_dataset(
    products: Sequence[Product],
    *,
    label: str,
    patch_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    cache_bytes: int | None = None,
):
    """A batched ``tf.data.Dataset`` of ``(x, y)`` patches of ``products``.

    Products are read in parallel (``interleave`` over file paths, each read by ``numpy_function``),
    so that only a few products are in memory at once. If all patches fit in ``cache_bytes``
    (default: a quarter of the physical memory) they are cached in memory during the first epoch,
    as the seed did; otherwise they are streamed from the HDF5 files every epoch, product order
    reshuffled, with a bounded shuffle buffer.
    """
    import tensorflow as tf

    n_patches = sum(p.n_patches for p in products)
    patch_bytes = patch_size * patch_size * (N_CHANNELS + 2) * 4
    if cache_bytes is None:
        cache_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    in_memory = n_patches * patch_bytes <= cache_bytes
    if not in_memory:
        log.info(
            "%d patches (%.1f GB) exceed the cache budget: streaming them from HDF5 each epoch",
            n_patches,
            n_patches * patch_bytes / 1e9,
        )

    def read(path: bytes) -> tuple[np.ndarray, np.ndarray]:
        return product_patches(path.decode(), label, patch_size)

    def patches_of(path):
        x, y = tf.numpy_function(read, [path], (tf.float32, tf.float32), stateful=False)
        x = tf.ensure_shape(x, (None, patch_size, patch_size, N_CHANNELS))
        y = tf.ensure_shape(y, (None, patch_size, patch_size, 2))
        return tf.data.Dataset.from_tensor_slices((x, y))

    paths = tf.data.Dataset.from_tensor_slices([str(p.path) for p in products])
    if shuffle and not in_memory:
        paths = paths.shuffle(len(products), seed=seed, reshuffle_each_iteration=True)
    ds = paths.interleave(
        patches_of, cycle_length=min(4, len(products)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    # A known length lets Keras count the steps of an epoch (the file reads hide it from tf.data).
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_patches))
    if in_memory:
        ds = ds.cache()
    if shuffle:
        # Cached patches are shared, not copied, by the shuffle buffer: it can span the whole set
        # (the first epoch's first step then waits for all files to be read, once).
        buffer = n_patches if in_memory else max(1, min(n_patches, STREAM_SHUFFLE_BYTES // patch_bytes))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _inspect(path: Path, label: str) -> tuple[dict, tuple[int, int], np.ndarray]:
    """Attributes, grid shape and label of a converted product, after checking the datasets training reads."""
    with open_converted(path) as f:
        shape = check_converted(f, path, (label,))
        return attributes(f), shape, f[label][()]


def _names(value) -> list[str]:
    """An attribute holding one name or a list of them (decoded by ``hdf.plain_value``) as a list of names."""
    if value is None:
        return []
    return [str(item) for item in (value if isinstance(value, list) else [value])]
