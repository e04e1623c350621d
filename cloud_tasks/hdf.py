"""The converted-product HDF5 layout: the contract between ``convert-hdf`` and the ML stages.

One file per product, ``<out>/{day,night}/<product stem>.h5`` (``layout.converted_path``), holding on the product's own
1 km (``in``) grid of ``rows x columns`` pixels:

| dataset | dtype | shape | content |
|---|---|---|---|
| ``refs`` | float32 | rows, columns, 6 | reflectance S1..S6 (0.5 km radiances block-averaged 2x2) |
| ``bts`` | float32 | rows, columns, 3 | brightness temperature S7..S9, K |
| ``sza`` | float32 | rows, columns | solar zenith angle, degrees, interpolated from the tie points |
| ``bayes`` | uint8 | rows, columns | 1 where ``bayes_in`` has any of its named cloud bits set |
| ``summary_cloud`` | uint8 | rows, columns | 1 where ``confidence_in`` has the ``summary_cloud`` bit |
| ``flags/<name>`` | uint8/16 | rows, columns | raw ``bayes_in``, ``confidence_in``, ``cloud_in`` + flag attributes |

NaN marks "no valid value": a fill in the source, a 2x2 block with no valid 0.5 km pixel, and for
reflectances also a solar zenith angle >= 90 degrees or unknown (night: no sunlight to reflect).
File attributes: see ``ATTRIBUTES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.errors import InputError

REFLECTANCE_CHANNELS = ("S1", "S2", "S3", "S4", "S5", "S6")
BT_CHANNELS = ("S7", "S8", "S9")
INPUT_CHANNELS = REFLECTANCE_CHANNELS + BT_CHANNELS  # the U-Net's input, in this order
N_CHANNELS = len(INPUT_CHANNELS)
LABEL_SOURCES = ("bayes", "summary_cloud")

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

    @property
    def product_name(self) -> str:
        return str(self.attrs["product_name"])


def read_converted(path: str | Path, *, labels: tuple[str, ...] = LABEL_SOURCES) -> ConvertedProduct:
    """Read a converted product; raise InputError naming the file if it is not one."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [name for name in ("refs", "bts", *labels) if name not in f]
            if missing:
                raise InputError(path, f"not a converted product: missing dataset(s) {', '.join(missing)}")
            attrs = {key: plain_value(value) for key, value in f.attrs.items()}
            return ConvertedProduct(
                path=path,
                refs=f["refs"][()],
                bts=f["bts"][()],
                labels={name: f[name][()] for name in labels},
                attrs=attrs,
            )
    except OSError as exc:
        raise InputError(path, f"cannot be read as HDF5: {exc}") from None


def plain_value(value):
    """An HDF5 attribute value as plain Python (str, list, float, int): the one decoder of the package."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
