"""``convert-hdf``: one SLSTR product folder (``.SEN3``) in, one HDF5 file out (layout in ``cloud_tasks.hdf``).

What the conversion does, per product:

- brightness temperatures S7-S9: ``raw * scale_factor + add_offset`` on the 1 km grid;
- reflectances S1-S6: the 0.5 km radiances averaged over exact 2x2 blocks onto the 1 km grid
  (mean of the valid pixels of a block), then ``R = pi * L / (E0 * cos(SZA))`` with E0 the
  channel's solar irradiance (detector 0) and SZA bilinearly interpolated from the tie points;
- fill values become NaN (see ``cloud_tasks.hdf``); a reflectance is NaN where SZA >= 90 deg;
- latitude and longitude of the 1 km grid from ``geodetic_in.nc`` (float64 degrees, NaN at fill): a product
  without that file is refused, naming it;
- labels decoded by flag meaning: ``bayes`` (any named bit of ``bayes_in``) and ``summary_cloud``
  (``confidence_in``); a label that holds one value everywhere is listed in the
  ``degenerate_labels`` attribute and logged as a warning (baseline-002 products have
  ``bayes_in`` = 255 everywhere);
- day/night rule: the product goes to ``day/`` when the fraction of its pixels with the
  ``confidence_in`` ``day`` bit is at least the day threshold (default 0.5), else to ``night/``.

The rules are pure functions in ``cloud_tasks.convert_rules``; the readers in ``cloud_tasks.slstr`` check
every value read (declared shapes against the product's own grid before any data is read, attributes by
type and range), so that a hostile product is one ``error: <file>: <problem>``. Outputs are written
atomically into exactly one split (``write_in_one_split``) and a product already converted is skipped;
with ``--keep-going`` any failure stays its product's (a full disk still stops the batch); ``--workers``
processes die with the command (``cloud_tasks.convert_workers``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file, output_dir
from cloud_tasks.convert_rules import (
    CONFIDENCE_REQUIRED,
    DEFAULT_DAY_THRESHOLD,
    FlagWord,
    Grid,
    SunGeometry,
    block_mean_2x2,
    brightness_temperature,
    day_fraction,
    decode_labels,
    degenerate_labels,
    holds_values,
    interpolate_tie_points,
    product_attributes,
    reflectance,
    split_for,
    sun_geometry,
)
from cloud_tasks.convert_workers import worker_pool
from cloud_tasks.errors import BatchFailures, CloudTasksError, DiskFullError, InputError, product_failure
from cloud_tasks.hdf import BT_CHANNELS, GEOLOCATION, GEOLOCATION_UNITS, REFLECTANCE_CHANNELS
from cloud_tasks.layout import DAY_SPLIT, SPLITS, converted_path
from cloud_tasks.naming import ProductName
from cloud_tasks.paths import expand_inputs
from cloud_tasks.slstr import (
    BT_BANDS,
    REFLECTANCE_BANDS,
    BrightnessTemperatureFile,
    FlagsFile,
    GeodeticFile,
    GeometryFile,
    QualityFile,
    RadianceFile,
    ScaledInts,
)

log = logging.getLogger(__name__)

DECODE_THREADS = min(4, os.cpu_count() or 1)
FLAG_VARIABLES = {"confidence_in": "uint16", "bayes_in": "uint8", "cloud_in": "uint16"}


@dataclass
class ProductInputs:
    """Everything the conversion reads from a product's files, checked; the channels still compressed."""

    grid: Grid  # the 1 km grid (of flags_in.nc)
    flags: dict[str, FlagWord]
    sensing: tuple[str, str]
    geolocation: dict[str, np.ndarray]  # latitude, longitude: float64 degrees on the 1 km grid
    tie_grid: Grid
    tie_sza: np.ndarray  # solar zenith angle on the tie points, degrees
    bts: list[ScaledInts]  # S7..S9
    radiances: list[tuple[ScaledInts, float]]  # S1..S6 counts with their solar irradiance E0


@dataclass
class ConvertedArrays:
    """Everything one product contributes to its HDF5 file."""

    refs: np.ndarray
    bts: np.ndarray
    sza: np.ndarray
    labels: dict[str, np.ndarray]
    flags: dict[str, FlagWord]
    geolocation: dict[str, np.ndarray]
    attrs: dict


def existing_output(out_dir: str | Path, stem: str) -> Path | None:
    """The product's converted file if it exists in either split (a folder of that name is none)."""
    for split in SPLITS:
        path = converted_path(out_dir, split, stem)
        if path.is_file():
            return path
    return None


def convert_product(
    product_dir: str | Path, out_dir: str | Path, *, day_threshold: float = DEFAULT_DAY_THRESHOLD, force: bool = False
) -> Path:
    """Convert one ``.SEN3`` folder; return the HDF5 path (the existing one if already converted)."""
    product_dir = Path(product_dir)
    name = ProductName.parse(product_dir)
    existing = existing_output(out_dir, name.stem)
    if existing is not None and not force:
        log.info("%s already converted: %s", name.stem, existing)
        return existing
    if not product_dir.is_dir():
        raise InputError(product_dir, "product folder does not exist")
    final = write_in_one_split(out_dir, name.stem, read_product(product_dir, name, day_threshold=day_threshold))
    log.info("converted %s -> %s", name.stem, final)
    return final


def read_product(product_dir: Path, name: ProductName, *, day_threshold: float) -> ConvertedArrays:
    """Read and derive every output array of a product (no output written).

    Two phases: ``read_inputs`` calls the NetCDF/HDF5 libraries (not thread-safe) from this thread only;
    ``derive_arrays`` applies the rules of ``cloud_tasks.convert_rules``, inflating channels in threads.
    """
    return derive_arrays(read_inputs(product_dir), name, day_threshold)


def read_inputs(product_dir: Path) -> ProductInputs:
    """Read (and check) what the conversion needs; the 1 km grid of flags_in.nc first: every other file
    is checked against it before its data is read."""
    with FlagsFile(product_dir) as flags_file:
        grid = flags_file.image_grid()
        flags = {
            var: flags_file.flag(var, dtype, grid.shape, required=CONFIDENCE_REQUIRED if var == "confidence_in" else ())
            for var, dtype in FLAG_VARIABLES.items()
        }
        sensing = flags_file.sensing()
    with GeodeticFile(product_dir) as geodetic:
        geolocation = {name: geodetic.coordinate(name, grid) for name in GEOLOCATION}
    with GeometryFile(product_dir) as geometry:
        tie_grid = geometry.tie_grid(grid)
        tie_sza = geometry.solar_zenith(tie_grid)
    bts = []
    for band in BT_BANDS:
        with BrightnessTemperatureFile(product_dir, band) as bt_file:
            bts.append(bt_file.brightness_temperature(grid))
    radiances = []
    for band in REFLECTANCE_BANDS:
        with QualityFile(product_dir, band) as quality:
            irradiance = quality.solar_irradiance()
        with RadianceFile(product_dir, band) as radiance_file:
            radiances.append((radiance_file.radiance(grid), irradiance))
    return ProductInputs(grid, flags, sensing, geolocation, tie_grid, tie_sza, bts, radiances)


def derive_arrays(inputs: ProductInputs, name: ProductName, day_threshold: float) -> ConvertedArrays:
    """The converted arrays and attributes of a product from its inputs (no file is opened here)."""
    confidence = inputs.flags["confidence_in"]
    fraction = day_fraction(confidence)
    split = split_for(fraction, day_threshold)  # decided before the channels: a day product must hold radiances
    sun = sun_geometry(interpolate_tie_points(inputs.tie_sza, inputs.grid, inputs.tie_grid))
    bts, refs = decode_channels(inputs, sun, split)
    labels = decode_labels(confidence, inputs.flags["bayes_in"])
    degenerate = degenerate_labels(labels)
    if degenerate:
        log.warning(
            "%s: label(s) %s hold one value everywhere; the product is marked as unusable for training with them",
            name.stem,
            ", ".join(degenerate),
        )
    attrs = product_attributes(name, inputs.sensing, inputs.grid.shape, fraction, day_threshold, split, degenerate)
    return ConvertedArrays(refs, bts, sun.sza, labels, inputs.flags, inputs.geolocation, attrs)


def decode_channels(inputs: ProductInputs, sun: SunGeometry, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Brightness temperatures and reflectances on the 1 km grid, each channel inflated and computed in a
    thread (zlib and numpy release the GIL); their stored bytes were read before, in ``read_inputs``."""
    shape = inputs.grid.shape
    bts = np.empty((*shape, len(inputs.bts)), np.float32)
    refs = np.full((*shape, len(inputs.radiances)), np.nan, np.float32)
    with concurrent.futures.ThreadPoolExecutor(DECODE_THREADS) as pool:
        bt_jobs = [pool.submit(_brightness_temperature, counts) for counts in inputs.bts]
        # without any sunlit pixel (night) every reflectance is NaN: the radiances need no decoding
        ref_jobs = [
            pool.submit(_reflectance, counts, irradiance, sun, split == DAY_SPLIT, shape)
            for counts, irradiance in (inputs.radiances if sun.any_sunlit else [])
        ]
        for i, job in enumerate(bt_jobs):
            bts[..., i] = job.result()
        for i, job in enumerate(ref_jobs):
            refs[..., i] = job.result()
    return bts, refs


def _brightness_temperature(counts: ScaledInts) -> np.ndarray:
    raw = counts.raw
    if not holds_values(raw, counts.scaling):
        raise InputError(counts.path, f"{counts.packed.name} holds only fill values")
    return brightness_temperature(raw, counts.scaling)


def _reflectance(counts: ScaledInts, irradiance: float, sun: SunGeometry, day: bool, shape) -> np.ndarray:
    raw = counts.raw
    if day and not holds_values(raw, counts.scaling):
        raise InputError(counts.path, f"{counts.packed.name} holds only fill values in a day product")
    return reflectance(block_mean_2x2(raw, counts.scaling, shape), irradiance, sun)


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """An exclusive ``flock`` on the folder itself (no lock file), released when the block ends."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_in_one_split(out_dir: str | Path, stem: str, arrays: ConvertedArrays) -> Path:
    """Write a product's file into its split (``arrays.attrs['split']``) and remove it from the other split.

    A product has one split, even under concurrent runs (two ``--force`` runs with different day
    thresholds, or workers of two runs converting the same product): the file is written under a
    temporary name; then, holding an exclusive lock on OUT, it is renamed into its split and the
    product's file in any other split is removed. Rename and removal being one critical section, the
    run that commits last leaves its split only: never both splits, never neither. The lock covers the
    rename and the unlink only (no conversion waits on another), and it is a ``flock`` on the OUT folder
    itself, so that no lock file is ever left among the outputs.
    """
    split = arrays.attrs["split"]
    final = converted_path(out_dir, split, stem)
    others = [converted_path(out_dir, other, stem) for other in SPLITS if other != split]
    with contextlib.ExitStack() as committing:
        with atomic_file(final) as tmp:  # renames tmp to final when its block ends
            write_hdf(tmp, arrays)
            committing.enter_context(_folder_lock(Path(out_dir)))
        for other in others:
            other.unlink(missing_ok=True)
    return final


def write_hdf(path: Path, arrays: ConvertedArrays) -> None:
    """Write the converted arrays in the ``cloud_tasks.hdf`` layout."""
    import h5py

    with h5py.File(path, "w") as f:
        refs = f.create_dataset("refs", data=arrays.refs)
        refs.attrs["channels"] = list(REFLECTANCE_CHANNELS)
        refs.attrs["units"] = "1"
        bts = f.create_dataset("bts", data=arrays.bts)
        bts.attrs["channels"] = list(BT_CHANNELS)
        bts.attrs["units"] = "K"
        f.create_dataset("sza", data=arrays.sza).attrs["units"] = "degrees"
        for name, values in arrays.geolocation.items():  # uncompressed, as the channels: gzip costs 20 % more time
            f.create_dataset(name, data=values).attrs["units"] = GEOLOCATION_UNITS[name]
        for label, values in arrays.labels.items():
            f.create_dataset(label, data=values, compression="gzip", compression_opts=1, shuffle=True)
        for flag_name, flag in arrays.flags.items():
            dset = f.create_dataset(
                f"flags/{flag_name}", data=flag.raw, compression="gzip", compression_opts=1, shuffle=True
            )
            dset.attrs["flag_masks"] = flag.masks
            dset.attrs["flag_meanings"] = flag.meanings
        for key, value in arrays.attrs.items():
            if isinstance(value, list):  # lists of names, possibly empty
                f.attrs.create(key, value, shape=(len(value),), dtype=h5py.string_dtype())
            else:
                f.attrs[key] = value


def _convert_one(product_dir: Path, out_dir: Path, day_threshold: float, force: bool) -> Path | CloudTasksError:
    """One product's outcome: its HDF5 path, or its failure, whatever the exception (one product never stops
    a batch by itself)."""
    try:
        return convert_product(product_dir, out_dir, day_threshold=day_threshold, force=force)
    except Exception as exc:
        return product_failure(product_dir, exc)


class _Batch:
    """The outcomes of a batch: products done, failures kept (``keep_going``) or raised at once."""

    def __init__(self, total: int, keep_going: bool):
        self.total, self.keep_going = total, keep_going
        self.done: list[Path] = []
        self.failures: list[CloudTasksError] = []

    def record(self, outcome: Path | CloudTasksError) -> None:
        if isinstance(outcome, CloudTasksError):
            # a full disk fails every product that follows: stop at the first one
            if isinstance(outcome, DiskFullError) or not self.keep_going:
                raise outcome
            log.error("%s", outcome)
            self.failures.append(outcome)
        else:
            self.done.append(outcome)
        finished = len(self.done) + len(self.failures)
        if finished % max(1, self.total // 20) == 0 or finished == self.total:
            log.info("converted %d/%d products (%d failed)", finished, self.total, len(self.failures))

    def result(self) -> list[Path]:
        if self.failures:
            raise BatchFailures("convert", self.failures, sorted(self.done), self.total)
        return sorted(self.done)


def convert_products(
    products: list[Path],
    out_dir: str | Path,
    *,
    day_threshold: float = DEFAULT_DAY_THRESHOLD,
    workers: int = 1,
    keep_going: bool = False,
    force: bool = False,
) -> list[Path]:
    """Convert many products, in ``workers`` processes; return the HDF5 paths.

    With ``keep_going`` every product is tried and one error listing all failures is raised at the end,
    so good products are converted even when some are bad (any exception on a product is that product's
    failure); a full disk still stops the batch. Without it, the first failure stops the batch.
    """
    out_dir = output_dir(out_dir)
    batch = _Batch(len(products), keep_going)
    if workers <= 1:
        for product in products:
            batch.record(_convert_one(product, out_dir, day_threshold, force))
        return batch.result()
    with worker_pool(workers) as pool:
        futures = {pool.submit(_convert_one, p, out_dir, day_threshold, force): p for p in products}
        try:
            for future in concurrent.futures.as_completed(futures):
                error = future.exception()  # the worker itself died (BrokenProcessPool), not the product
                batch.record(future.result() if error is None else product_failure(futures[future], error))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # do not start the products still queued
            raise
    return batch.result()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-hdf",
        help="convert extracted .SEN3 products to one HDF5 file each",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="IN", help=".SEN3 folders, folders holding them, globs or .txt lists"
    )
    parser.add_argument("out", metavar="OUT", help="output folder (day/ and night/ are made inside)")
    parser.add_argument("--day-threshold", type=float, default=DEFAULT_DAY_THRESHOLD, help="min day-flag fraction")
    parser.add_argument("--workers", type=int, default=1, help="processes converting in parallel")
    parser.add_argument("--keep-going", action="store_true", help="convert the good products when some are bad")
    parser.add_argument("--force", action="store_true", help="convert again even if an output exists")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> None:
    if not 0.0 <= args.day_threshold <= 1.0:
        raise CloudTasksError(f"--day-threshold must lie in [0, 1], got {args.day_threshold}")
    out = output_dir(args.out)  # a bad OUT is one clear error before any work
    products = expand_inputs(args.inputs, ".SEN3")
    for path in convert_products(
        products,
        out,
        day_threshold=args.day_threshold,
        workers=args.workers,
        keep_going=args.keep_going,
        force=args.force,
    ):
        print(path)
