"""``convert-hdf``: one SLSTR product folder (``.SEN3``) in, one HDF5 file out (layout in ``cloud_tasks.hdf``).

What the conversion does, per product:

- brightness temperatures S7-S9: ``raw * scale_factor + add_offset`` on the 1 km grid;
- reflectances S1-S6: the 0.5 km radiances averaged over exact 2x2 blocks onto the 1 km grid
  (mean of the valid pixels of a block), then ``R = pi * L / (E0 * cos(SZA))`` with E0 the
  channel's solar irradiance (detector 0) and SZA bilinearly interpolated from the tie points;
- fill values become NaN (see ``cloud_tasks.hdf``); a reflectance is NaN where SZA >= 90 deg;
- labels decoded by flag meaning: ``bayes`` (any named bit of ``bayes_in``) and ``summary_cloud``
  (``confidence_in``); a label that holds one value everywhere is listed in the
  ``degenerate_labels`` attribute and logged as a warning (baseline-002 products have
  ``bayes_in`` = 255 everywhere);
- day/night rule: the product goes to ``day/`` when the fraction of its pixels with the
  ``confidence_in`` ``day`` bit is at least the day threshold (default 0.5), else to ``night/``.

Outputs are written atomically and a product already converted is skipped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks import __version__
from cloud_tasks.atomic import atomic_file
from cloud_tasks.errors import BatchFailures, CloudTasksError, DiskFullError, InputError
from cloud_tasks.hdf import BT_CHANNELS, REFLECTANCE_CHANNELS
from cloud_tasks.layout import SPLITS, converted_path
from cloud_tasks.naming import ProductName
from cloud_tasks.paths import expand_inputs
from cloud_tasks.slstr import (
    BT_BANDS,
    REFLECTANCE_BANDS,
    BrightnessTemperatureFile,
    FlagsFile,
    GeometryFile,
    QualityFile,
    RadianceFile,
    block_mean_2x2,
    interpolate_tie_points,
)

log = logging.getLogger(__name__)

DEFAULT_DAY_THRESHOLD = 0.5
DECODE_THREADS = min(4, os.cpu_count() or 1)
FLAG_VARIABLES = {"confidence_in": "uint16", "bayes_in": "uint8", "cloud_in": "uint16"}


@dataclass
class ConvertedArrays:
    """Everything one product contributes to its HDF5 file."""

    refs: np.ndarray
    bts: np.ndarray
    sza: np.ndarray
    labels: dict[str, np.ndarray]
    flags: dict  # name -> FlagWord
    attrs: dict


def existing_output(out_dir: str | Path, stem: str) -> Path | None:
    """The product's converted file if it exists in either split."""
    for split in SPLITS:
        path = converted_path(out_dir, split, stem)
        if path.exists():
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
    arrays = read_product(product_dir, name, day_threshold=day_threshold)
    final = converted_path(out_dir, arrays.attrs["split"], name.stem)
    with atomic_file(final) as tmp:
        write_hdf(tmp, arrays)
    if existing is not None and existing != final:
        existing.unlink(missing_ok=True)
    log.info("converted %s -> %s", name.stem, final)
    return final


def read_product(product_dir: Path, name: ProductName, *, day_threshold: float) -> ConvertedArrays:
    """Read and derive every output array of a product (no output written)."""
    with FlagsFile(product_dir) as flags_file:
        grid = flags_file.grid
        shape = grid.shape
        flags = {
            var: flags_file.flag(var, dtype, shape, required=("day", "summary_cloud") if var == "confidence_in" else ())
            for var, dtype in FLAG_VARIABLES.items()
        }
        sensing = (str(flags_file.attribute("start_time")), str(flags_file.attribute("stop_time")))

    day_fraction = float(flags["confidence_in"].mask("day").mean())
    split = "day" if day_fraction >= day_threshold else "night"

    with GeometryFile(product_dir) as geometry:
        try:
            sza = interpolate_tie_points(geometry.solar_zenith(), grid, geometry.grid)
        except ValueError as exc:
            raise InputError(geometry.path, str(exc)) from None
    sza_stored = sza.astype(np.float32)
    with np.errstate(invalid="ignore"):
        sunlit = sza_stored < 90.0  # decided on the stored value, so file readers see the same rule; NaN -> False
    # pi / cos(SZA) once for all channels; NaN where there is no sunlight to reflect.
    sun_factor = np.full(shape, np.nan, np.float32)
    sun_factor[sunlit] = (math.pi / np.cos(np.radians(sza[sunlit]))).astype(np.float32)

    # Read every channel's stored bytes here (the NetCDF/HDF5 libraries are not thread-safe), then
    # inflate and compute the channels in threads: zlib and numpy release the GIL.
    bt_counts = []
    for band in BT_BANDS:
        with BrightnessTemperatureFile(product_dir, band) as bt_file:
            bt_counts.append((bt_file.path, band, bt_file.brightness_temperature(shape)))
    radiances = []
    half_km_shape = (2 * grid.rows, 2 * grid.columns)
    for band in REFLECTANCE_BANDS:
        with QualityFile(product_dir, band) as quality:
            irradiance = quality.solar_irradiance()
        with RadianceFile(product_dir, band) as radiance_file:
            if radiance_file.grid.track_offset != 2 * grid.track_offset:
                raise InputError(
                    radiance_file.path,
                    f"track_offset {radiance_file.grid.track_offset} is not twice the 1 km grid's "
                    f"({grid.track_offset}): the 0.5 km grid does not nest in the 1 km grid",
                )
            radiances.append((radiance_file.path, band, radiance_file.radiance(half_km_shape), irradiance))

    def brightness_temperature(path, band, counts):
        if not counts.valid.any():
            raise InputError(path, f"S{band}_BT_in holds only fill values")
        return counts.physical()

    def reflectance(path, band, counts, irradiance):
        if split == "day" and not counts.valid.any():
            raise InputError(path, f"S{band}_radiance_an holds only fill values in a day product")
        return block_mean_2x2(counts, shape) * (sun_factor / np.float32(irradiance))

    bts = np.empty((*shape, len(BT_BANDS)), np.float32)
    refs = np.full((*shape, len(REFLECTANCE_BANDS)), np.nan, np.float32)
    with concurrent.futures.ThreadPoolExecutor(DECODE_THREADS) as pool:
        bt_jobs = [pool.submit(brightness_temperature, *job) for job in bt_counts]
        # without any sunlit pixel (night) every reflectance is NaN: the radiances need no decoding
        ref_jobs = [pool.submit(reflectance, *job) for job in radiances] if sunlit.any() else []
        for i, job in enumerate(bt_jobs):
            bts[..., i] = job.result()
        for i, job in enumerate(ref_jobs):
            refs[..., i] = job.result()

    bayes = flags["bayes_in"]
    labels = {
        "bayes": bayes.mask(*(meaning for meaning in bayes.bits if meaning != "spare")).astype(np.uint8),
        "summary_cloud": flags["confidence_in"].mask("summary_cloud").astype(np.uint8),
    }
    degenerate = [label for label, values in labels.items() if values.min() == values.max()]
    if degenerate:
        log.warning(
            "%s: label(s) %s hold one value everywhere; the product is marked as unusable for training with them",
            name.stem,
            ", ".join(degenerate),
        )
    attrs = {
        "product_name": name.stem,
        "mission": name.mission,
        "sensing_start": sensing[0],
        "sensing_stop": sensing[1],
        "grid_shape": np.array(shape, np.int64),
        "day_fraction": day_fraction,
        "day_threshold": day_threshold,
        "split": split,
        "baseline": name.baseline,
        "degenerate_labels": degenerate,
        "cloud_tasks_version": __version__,
    }
    return ConvertedArrays(refs=refs, bts=bts, sza=sza_stored, labels=labels, flags=flags, attrs=attrs)


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


def _convert_one(product_dir: Path, out_dir: Path, day_threshold: float, force: bool) -> Path:
    return convert_product(product_dir, out_dir, day_threshold=day_threshold, force=force)


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

    With ``keep_going`` every product is tried and one error listing all failures is raised at
    the end, so good products are converted even when some are bad.
    """
    out_dir = Path(out_dir)
    done: list[Path] = []
    failures: list[CloudTasksError] = []

    def record(product: Path, outcome) -> None:
        if isinstance(outcome, BaseException):
            # a full disk fails every product that follows: stop at the first one
            if not isinstance(outcome, CloudTasksError) or isinstance(outcome, DiskFullError) or not keep_going:
                raise outcome
            log.error("%s", outcome)
            failures.append(outcome)
        else:
            done.append(outcome)
        finished = len(done) + len(failures)
        if finished % max(1, len(products) // 20) == 0 or finished == len(products):
            log.info("converted %d/%d products (%d failed)", finished, len(products), len(failures))

    if workers <= 1:
        for product in products:
            try:
                outcome = _convert_one(product, out_dir, day_threshold, force)
            except CloudTasksError as exc:
                outcome = exc
            record(product, outcome)
    else:
        # forkserver: workers must not inherit open HDF5/NetCDF handles from the parent.
        context = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(_convert_one, p, out_dir, day_threshold, force): p for p in products}
            try:
                for future in concurrent.futures.as_completed(futures):
                    record(futures[future], future.exception() or future.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)  # do not start the products still queued
                raise
    if failures:
        raise BatchFailures("convert", failures, sorted(done), len(products))
    return sorted(done)


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
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    if not 0.0 <= args.day_threshold <= 1.0:
        raise CloudTasksError(f"--day-threshold must lie in [0, 1], got {args.day_threshold}")
    products = expand_inputs(args.inputs, ".SEN3")
    for path in convert_products(
        products,
        args.out,
        day_threshold=args.day_threshold,
        workers=args.workers,
        keep_going=args.keep_going,
        force=args.force,
    ):
        print(path)
