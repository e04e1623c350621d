"""``sst-comp``: compare SST retrievals over pixels the model and the Bayesian mask call clear.

The match-up table pairs buoy SSTs with SLSTR retrievals at one 1 km pixel of one product. After the reference's
filters (its algorithm filter widened: D2, ``sat_sst_2``, as the reference, and N3, ``sat_sst_1``, the three-channel
night algorithm the reference dropped: ``RETRIEVALS``), each match-up is looked up in the mask product of its
product (the CF-NetCDF file inference writes, ``layout.MaskFiles.mask``, found in or below MASKS_DIR, read with
``cloud_tasks.product.cf_mask.read_mask``), and the difference ``d = retrieval - (isst + 273.15)`` of the match-up's
own algorithm is summarised over the pixels each mask calls clear: count, median and robust standard deviation
(1.4826 x median absolute deviation). The model mask's clear pixels are those its ``cloud_mask`` calls clear
(decided on the model's unrounded output with the mask's own threshold); pixels without data are neither clear nor
counted in the agreement. With ``--threshold`` the decision is taken again on the stored probability, which is
rounded to 0.01.

Day and night (``DAYLIGHT_RULE``): a match-up is *day* when its pixel was masked by the day model, *night*
when by the thermal model; the statistics are reported over all match-ups and over each apart.

Outputs in OUT (``layout.SstFiles``), identical on a re-run with the same inputs: the summary, the
per-pixel table (one row per matched pixel) and the histogram. They are one result set, replaced as a
whole or not at all (``replace_result_set``).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file, output_dir
from cloud_tasks.errors import DiskFullError, InputError
from cloud_tasks.layout import MaskFiles, SstFiles
from cloud_tasks.naming import stem_from_file
from cloud_tasks.product.cf_mask import CLEAR, PROBABILITY_SCALE, MaskProduct, read_mask

log = logging.getLogger(__name__)

KELVIN = 273.15
MAD_TO_SD = 1.4826  # robust SD = 1.4826 x MAD estimates the SD of a normal distribution
BAYES_CLEAR_BELOW = 0.9  # Bayesian clear: pcloudn < 0.9 and pcloudo < 0.9
D2_ALGORITHM, N3_ALGORITHM = 4, 3  # sst_algorithm_type values
# The retrieval column of each algorithm compared: D2 (the reference's, by day) and N3 (three channels, 3.7 um
# included: at night only, where SST is retrieved best). A table without sat_sst_1 compares D2 only.
RETRIEVALS = {D2_ALGORITHM: "sat_sst_2", N3_ALGORITHM: "sat_sst_1"}
TABLE_KEY = "matchups"
# Day and night match-ups by the model that masked their pixel (cf_mask.Model.kind -> daylight).
DAYLIGHT = {"day": "day", "thermal": "night"}
UNKNOWN_DAYLIGHT = ""  # no data at the pixel, or a mask of several models that does not say which made it
DAYLIGHT_RULE = (
    "day: the pixel was masked by the day model, which needs all nine channels valid, so sunlight (reflectances "
    "exist only where the solar zenith angle is below 90 deg); night: masked by the thermal model (night, and "
    "twilight pixels without reflectance); from the mask's model_used flag, or its one model"
)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # from <fcntl.h> and <linux/fs.h>

# Only the columns the comparison needs are required (sat_sst_0, 1 and 3 are not; sat_sst_1 is used if present).
REQUIRED_COLUMNS = (
    "isst",
    "slat",
    "slon",
    "latitude_an",
    "longitude_an",
    "satzan",
    "satzao",
    "quality_level",
    "sst_algorithm_type",
    "sat_sst_2",
    "cems_path",
    "x_cems",
    "y_cems",
    "pcloudn",
    "pcloudo",
    "bayes_in",
)
NUMERIC_COLUMNS = tuple(c for c in REQUIRED_COLUMNS if c != "cems_path")

# The reference's filters, in the order they run: (name, rule as text, rows kept).
# NaN compares False everywhere, so a row with a missing value fails the filter that reads it.
FILTERS: tuple[tuple[str, str, Callable], ...] = (
    ("latitude", "|slat - latitude_an| < 0.005", lambda t: (t.slat - t.latitude_an).abs() < 0.005),
    ("longitude", "|slon - longitude_an| < 0.01", lambda t: (t.slon - t.longitude_an).abs() < 0.01),
    ("buoy_sst", "isst + 273.15 > 273.15", lambda t: t.isst + KELVIN > KELVIN),
    ("zenith", "satzan <= 55 and satzao <= 55", lambda t: (t.satzan <= 55) & (t.satzao <= 55)),
    ("quality", "quality_level == 5", lambda t: t.quality_level == 5),
    ("algorithm", "sst_algorithm_type == 4 (D2) or 3 (N3)", lambda t: t.sst_algorithm_type.isin(list(RETRIEVALS))),
)


def compare(matchups_path: str | Path, masks_dir: str | Path, out_dir: str | Path, *, model_threshold=None) -> dict:
    """Compare the model mask with the Bayesian mask on SST match-ups; write OUT's result set; return the report.

    ``model_threshold`` replaces each mask's threshold (the decision is then taken on the stored probability).
    OUT is checked before any work, and its result set is replaced as a whole (see ``replace_result_set``).
    """
    matchups_path, masks_dir = Path(matchups_path), Path(masks_dir)
    if model_threshold is not None and not 0.0 <= model_threshold <= 1.0:
        raise ValueError(f"model threshold must lie in [0, 1], not {model_threshold}")
    files = result_folder(out_dir)
    table = read_matchups(matchups_path)
    rows_read = len(table)
    table, after_filter = apply_filters(table, matchups_path)
    table["product"] = product_stems(table["cems_path"], matchups_path)

    products = sorted(set(table["product"]))
    masks = matched_masks(find_masks(masks_dir), products, masks_dir)
    table = table[table["product"].isin(list(masks))]
    rows_with_mask = len(table)
    table, mask_info = attach_model(table, masks, model_threshold)
    table = classify(table)

    report = build_report(table, mask_info, model_threshold)
    report["inputs"] = {"matchups": str(matchups_path.resolve()), "masks_dir": str(masks_dir.resolve())}
    report["counts"] = {
        "rows_read": rows_read,
        "rows_after_filter": after_filter,
        "rows_with_mask_product": rows_with_mask,
        "pixels_off_grid": rows_with_mask - len(table),
        "rows_matched": len(table),
        "products_in_table": len(products),
        "products_matched": len(masks),
    }
    replace_result_set(files, lambda staged: write_outputs(report, table, staged))
    for line in format_summary(report).splitlines():
        log.info("%s", line)
    return report


def result_folder(out_dir: str | Path) -> SstFiles:
    """OUT's result set, after checking before any work that OUT can take one.

    OUT must be a writable folder (created if missing) in a writable parent (where the new set is
    staged), not a mount point (it is renamed), holding nothing but an earlier result set: the whole
    folder is replaced, so anything else in it would be lost.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        out_dir = out_dir.resolve()  # replace the folder the link points to, not the link
    output_dir(out_dir.parent)
    files = SstFiles(output_dir(out_dir))
    if os.path.ismount(out_dir):
        raise InputError(out_dir, "output folder is a mount point; give a folder below it (its result set is renamed)")
    ours = {path.name for path in result_paths(files)}
    for entry in sorted(out_dir.iterdir()):
        if entry.name not in ours and not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            raise InputError(
                out_dir,
                f"holds {entry.name!r}, which is no part of an sst-comp result set; each run replaces the whole "
                "folder, so give an empty folder or one of an earlier sst-comp",
            )
    return files


def result_paths(files: SstFiles) -> tuple[Path, Path, Path]:
    """The files of a result set (the per-pixel table, the histogram, the summary)."""
    return files.table, files.histogram, files.summary


def replace_result_set(files: SstFiles, write: Callable[[SstFiles], None]) -> None:
    """Write a new result set with ``write`` into a hidden folder beside OUT, then swap it in whole.

    Crash safety: the new set is complete before OUT changes at all. The swap is one atomic
    ``renameat2(RENAME_EXCHANGE)`` where the kernel and file system offer it: at every instant OUT
    names either the whole old set or the whole new one. Elsewhere it is two renames (OUT aside, the
    new set in): a crash between them leaves no OUT (a reader sees no result, never a mixed one)
    and the old set intact in a hidden ``.<OUT>.*.tmp`` folder. A failure while writing (a full disk)
    removes the staged folder and leaves OUT untouched; a crash can leave only hidden ``.tmp`` folders.
    """
    out = files.folder
    try:
        staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(out, os.strerror(exc.errno).lower()) from None
        raise
    old = None
    try:
        try:
            write(SstFiles(staged))
        except DiskFullError as exc:  # name the output as the user knows it, not the staged copy
            raise DiskFullError(out / exc.path.name, exc.reason) from None
        os.chmod(staged, 0o755)
        old = _swap(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _swap(new: Path, out: Path) -> Path:
    """Put folder ``new`` in place of folder ``out``; return where the old one now is (to be removed)."""
    if _rename_exchange(new, out):
        return new
    aside = new.with_name(new.name.removesuffix(".tmp") + ".old.tmp")  # unique as ``new`` is; nothing to allocate
    os.rename(out, aside)
    try:
        os.rename(new, out)
    except OSError:
        os.rename(aside, out)
        raise
    return aside


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with Linux's ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28, or not Linux
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # the kernel or file system lacks it
        return False
    raise OSError(code, os.strerror(code), str(b))


def read_matchups(path: Path):
    """Read the match-up table (HDF, CSV or Parquet) with lower-cased, checked, numeric columns."""
    import pandas as pd

    if not path.is_file():
        raise InputError(path, "no such match-up table")
    suffix = path.suffix.lower()
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise InputError(path, "reading a Parquet match-up table needs pyarrow, which is not installed; use CSV or HDF")
    readers = {
        ".h5": _read_hdf,
        ".hdf": _read_hdf,
        ".hdf5": _read_hdf,
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
    }
    if suffix not in readers:
        raise InputError(path, f"unknown match-up table format {suffix!r} (expected .h5, .csv or .parquet)")
    try:
        table = readers[suffix](path)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        # Parsers raise many exception types for a corrupt file (PyTables' errors are RuntimeErrors).
        raise InputError(path, f"cannot be read as a match-up table: {type(exc).__name__}: {exc}") from None
    if not isinstance(table, pd.DataFrame):
        raise InputError(path, "does not hold a table")
    table.columns = [str(c).lower() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, f"match-up table lacks required column(s): {', '.join(missing)}")
    for column in NUMERIC_COLUMNS:
        try:
            table[column] = pd.to_numeric(table[column])
        except (ValueError, TypeError):
            raise InputError(path, f"column {column!r} holds non-numeric values") from None
    return table.reset_index(drop=True)


def _read_hdf(path: Path):
    """Read the ``matchups`` key of a pandas HDF file, or its only key."""
    import pandas as pd

    with pd.HDFStore(path, mode="r") as store:
        keys = [key.lstrip("/") for key in store]
        if TABLE_KEY in keys:
            key = TABLE_KEY
        elif len(keys) == 1:
            key = keys[0]
        else:
            found = ", ".join(keys) or "none"
            raise InputError(path, f"no {TABLE_KEY!r} key and not exactly one table (keys: {found})")
        return store[key]


def apply_filters(table, path: Path):
    """Apply FILTERS in order; return the kept rows and the row count after each filter."""
    if table.empty:
        raise InputError(path, "match-up table holds no rows")
    after: dict[str, int] = {}
    for name, rule, keep in FILTERS:
        before = len(table)
        table = table[keep(table).to_numpy(dtype=bool)]
        after[name] = len(table)
        if table.empty:
            raise InputError(path, f"no match-up left after filter {name!r} ({rule}), which removed the last {before}")
    return table.copy(), after


def product_stems(cems_paths, table_path: Path) -> list[str]:
    """The checked product stem of each match-up's ``cems_path`` (``.../<stem>.SEN3``, maybe with a trailing '/').

    A cell is file content: only its last component is used, and only if it is a valid product name.
    Errors name the table's row (counted from 0, header excluded).
    """
    stems: dict = {}
    for row, cell in cems_paths.items():
        if cell not in stems:
            stems[cell] = product_stem(cell, table_path, row)
    return [stems[cell] for cell in cems_paths]


def product_stem(cell, table_path: Path, row: int = 0) -> str:
    """The product stem named by one ``cems_path`` cell; InputError naming the table and row otherwise."""
    text = cell.decode(errors="replace") if isinstance(cell, bytes) else cell
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        raise InputError(table_path, f"row {row}: empty cems_path (expected .../<product>.SEN3)")
    text = str(text).strip()
    name = Path(text).name  # Path drops a trailing slash
    return stem_from_file(name, table_path, f"row {row}: cems_path {text[:200]!r}: last component")


def find_masks(masks_dir: Path) -> dict[str, Path]:
    """Map product stem -> mask file for every mask file (``layout.MaskFiles``) in or below ``masks_dir``."""
    if not masks_dir.is_dir():
        raise InputError(masks_dir, "no such masks folder")
    folders = [masks_dir, *sorted(p for p in masks_dir.rglob("*") if p.is_dir())]
    masks: dict[str, Path] = {}
    for path in (mask for folder in folders for mask in MaskFiles(folder).masks()):
        if path.stem in masks:
            log.warning("%s: second mask for product %s; using %s", path, path.stem, masks[path.stem])
            continue
        masks[path.stem] = path
    return masks


def matched_masks(masks: dict[str, Path], products: list[str], masks_dir: Path) -> dict[str, Path]:
    """The mask file of each match-up product that has one; InputError if none has."""
    matched = {product: masks[product] for product in products if product in masks}
    if not matched:
        examples = ", ".join(products[:3]) + (", ..." if len(products) > 3 else "")
        expected = MaskFiles(masks_dir).mask(products[0]).name
        raise InputError(
            masks_dir,
            f"holds no mask for any of the {len(products)} match-up product(s) looked for ({examples}); "
            f"expected mask files such as {expected} below it",
        )
    return matched


def read_product_mask(path: Path, product: str) -> MaskProduct:
    """Read and check a mask product (``cf_mask.read_mask``); check that it is the named product's."""
    mask = read_mask(path)
    if mask.product_name != product:
        # A renamed file would silently pair match-ups with another product's clouds.
        raise InputError(path, f"holds the mask of product {mask.product_name}, not of {product} as its name says")
    return mask


def attach_model(table, masks: dict[str, Path], model_threshold):
    """Add what each row's mask says at its pixel, dropping rows whose pixel is off its mask's grid.

    Columns (``mask_at``): ``model_probability``, ``model_known``, ``model_clear``, ``daylight``. Returns the
    kept rows and, per product, the mask's threshold and models.
    """
    n = len(table)
    columns = {
        "model_probability": np.full(n, np.nan),
        "model_known": np.zeros(n, dtype=bool),
        "model_clear": np.zeros(n, dtype=bool),
        "daylight": np.full(n, UNKNOWN_DAYLIGHT, dtype=object),
    }
    on_grid = np.zeros(n, dtype=bool)
    xs = table["x_cems"].to_numpy(dtype=np.float64)
    ys = table["y_cems"].to_numpy(dtype=np.float64)
    info: dict[str, dict] = {}
    # Each mask file is read once; its match-ups are looked up with one fancy index.
    for product, rows in sorted(table.groupby("product").indices.items()):
        mask = read_product_mask(masks[product], product)
        x, y = xs[rows], ys[rows]
        # A valid pixel index is a whole number inside the grid (NaN fails every test).
        ok = (x == np.round(x)) & (y == np.round(y)) & (x >= 0) & (y >= 0)
        ok &= (x < mask.cloud_mask.shape[1]) & (y < mask.cloud_mask.shape[0])
        at = mask_at(mask, y[ok].astype(np.intp), x[ok].astype(np.intp), model_threshold)
        for name, values in at.items():
            columns[name][rows[ok]] = values
        on_grid[rows[ok]] = True
        info[product] = {"threshold": mask.threshold, "models": mask.models}
        if not ok.all():
            log.warning(
                "%s: %d match-up pixel(s) off the %dx%d grid dropped", product, (~ok).sum(), *mask.cloud_mask.shape
            )
    return table.assign(**columns)[on_grid], info


def mask_at(mask: MaskProduct, y: np.ndarray, x: np.ndarray, model_threshold: float | None) -> dict[str, np.ndarray]:
    """What the mask says at pixels (y, x).

    ``model_probability``: the stored probability (to 0.01; NaN = no data); ``model_known``: the pixel holds
    data; ``model_clear``: ``cloud_mask`` says clear (decided on the model's unrounded output with the mask's
    threshold), or, with ``model_threshold``, the stored probability is below that threshold; ``daylight``:
    ``daylight_at``.
    """
    known = mask.valid[y, x]
    probability = mask.probability[y, x].astype(np.float64)
    if model_threshold is None:
        clear = mask.cloud_mask[y, x] == CLEAR
    else:
        # Compare in stored steps of 0.01, so that a stored 0.70 is not clear at a threshold of 0.7.
        steps = np.rint(probability / PROBABILITY_SCALE)
        with np.errstate(invalid="ignore"):
            clear = known & (steps < model_threshold / PROBABILITY_SCALE - 1e-6)
    return {
        "model_probability": probability,
        "model_known": known,
        "model_clear": clear,
        "daylight": daylight_at(mask, y, x),
    }


def daylight_at(mask: MaskProduct, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``day`` or ``night`` at pixels (y, x) by the model that made them (``DAYLIGHT``); UNKNOWN_DAYLIGHT where
    the pixel holds no data, or the mask records several models but not which made the pixel."""
    names = np.array([DAYLIGHT[model.kind] for model in mask.models] + [UNKNOWN_DAYLIGHT], dtype=object)
    unknown = len(mask.models)
    if mask.model_used is not None:
        used = mask.model_used[y, x].astype(np.intp)
    else:
        used = np.full(len(y), 0 if len(mask.models) == 1 else unknown, dtype=np.intp)
    used[~mask.valid[y, x] | (used > unknown)] = unknown
    return names[used]


def classify(table):
    """Add the difference ``d`` (the row's algorithm's retrieval - buoy; NaN for N3 without ``sat_sst_1``) and the
    Bayesian mask's clear and cloudy flags to the matched rows."""
    import pandas as pd

    # sat_sst_1 is optional, hence not checked on reading: a value that is not a number is no retrieval
    n3 = pd.to_numeric(table["sat_sst_1"], errors="coerce") if "sat_sst_1" in table.columns else np.nan
    retrieval = np.where(table["sst_algorithm_type"] == N3_ALGORITHM, n3, table["sat_sst_2"]).astype(np.float64)
    return table.assign(
        d=retrieval - (table["isst"] + KELVIN).to_numpy(),
        bayes_clear=(table["pcloudn"] < BAYES_CLEAR_BELOW) & (table["pcloudo"] < BAYES_CLEAR_BELOW),
        bayes_cloudy=table["bayes_in"] > 0,
    )


def build_report(table, mask_info: dict[str, dict], model_threshold) -> dict:
    """The statistics of d over each mask's clear pixels and the masks' agreement: over all match-ups, and over
    day and night match-ups apart (``DAYLIGHT``)."""
    if model_threshold is not None:
        threshold, source = float(model_threshold), "argument"
    else:
        values = {info["threshold"] for info in mask_info.values()}
        threshold = values.pop() if len(values) == 1 else {k: v["threshold"] for k, v in mask_info.items()}
        source = "mask files"
    models = {model for info in mask_info.values() for model in info["models"]}
    daylight = table["daylight"].to_numpy(dtype=object)
    return {
        "algorithm": "D2 (sat_sst_2) or N3 (sat_sst_1), the match-up's own",
        "difference": "retrieval - (isst + 273.15), K",
        "filters": {name: rule for name, rule, _ in FILTERS},
        "threshold": threshold,
        "threshold_source": source,
        "model_sha256": sorted({model.sha256 for model in models}),
        "model_version": sorted({model.version for model in models}),
        **mask_statistics(table),
        "by_daylight": {
            "rule": DAYLIGHT_RULE,
            **{light: mask_statistics(table[daylight == light], matchups=True) for light in ("day", "night")},
            "unknown": int((daylight == UNKNOWN_DAYLIGHT).sum()),
        },
    }


def mask_statistics(table, *, matchups: bool = False) -> dict:
    """Each mask's clear statistics and their agreement over the rows of ``table`` (with their count if asked)."""
    d = table["d"].to_numpy(dtype=np.float64)
    model_clear = table["model_clear"].to_numpy(dtype=bool)
    known = table["model_known"].to_numpy(dtype=bool)
    bayes_cloudy = table["bayes_cloudy"].to_numpy(dtype=bool)
    agreement = float(np.mean((~model_clear[known]) == bayes_cloudy[known])) if known.any() else None
    return {
        **({"matchups": len(table)} if matchups else {}),
        "bayesian": clear_stats(d[table["bayes_clear"].to_numpy(dtype=bool)]),
        "model": clear_stats(d[model_clear]),
        "model_unknown_pixels": int((~known).sum()),
        "agreement": agreement,
        "agreement_pixels": int(known.sum()),
    }


def clear_stats(d: np.ndarray) -> dict:
    """Count, median and robust SD (1.4826 x MAD) of the finite differences in ``d``."""
    d = d[np.isfinite(d)]  # a missing retrieval gives no difference to summarise
    if d.size == 0:
        return {"clear": 0, "median": None, "robust_sd": None}
    median = float(np.median(d))
    mad = float(np.median(np.abs(d - median)))
    return {"clear": int(d.size), "median": median, "robust_sd": MAD_TO_SD * mad}


def write_outputs(report: dict, table, files: SstFiles) -> None:
    """Write the result set: the per-pixel table, the histogram and the summary."""
    columns = {
        "product": "product",
        "x_cems": "x",
        "y_cems": "y",
        "d": "d",
        "model_probability": "model_probability",
        "model_clear": "model_clear",
        "bayes_clear": "bayes_clear",
        "bayes_in": "bayes_in",
        "daylight": "daylight",
    }
    pixels = table[list(columns)].rename(columns=columns)
    with atomic_file(files.table) as tmp:
        pixels.to_csv(tmp, index=False)
    with atomic_file(files.histogram) as tmp:
        plot_histogram(table, report, tmp)
    with atomic_file(files.summary) as tmp:
        tmp.write_text(summary_json(report))


def summary_json(report: dict) -> str:
    """The report as JSON: keys sorted, except the filter counts and rules, which keep filter order."""

    def ordered(value, keep_order=False):
        if isinstance(value, dict):
            keys = list(value) if keep_order else sorted(value)
            return {k: ordered(value[k], k in ("rows_after_filter", "filters")) for k in keys}
        return value

    return json.dumps(ordered(report), indent=2) + "\n"


def plot_histogram(table, report: dict, path: Path) -> None:
    """Histograms of d over each mask's clear pixels, median and robust SD in the legend."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    series = {
        "Bayesian": (table["d"][table["bayes_clear"]], report["bayesian"]),
        "model": (table["d"][table["model_clear"]], report["model"]),
    }
    finite = [s[np.isfinite(s)] for s, _ in series.values()]
    values = np.concatenate(finite)
    bins = np.histogram_bin_edges(values, bins=40) if values.size else np.linspace(-1, 1, 41)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for (name, (_, stats)), d in zip(series.items(), finite, strict=True):
        if stats["clear"]:
            label = (
                f"{name} clear (n={stats['clear']}): median {stats['median']:+.3f} K, RSD {stats['robust_sd']:.3f} K"
            )
        else:
            label = f"{name}: no clear match-up"
        ax.hist(d, bins=bins, histtype="step", linewidth=1.5, label=label)
    ax.set_xlabel("retrieval (D2 or N3) - buoy SST (K)")
    ax.set_ylabel("match-ups")
    ax.set_title("SLSTR D2 SST minus buoy SST over clear pixels")
    ax.legend(fontsize="small")
    fig.tight_layout()
    # The temporary name has no .png suffix, so name the format; no metadata keeps re-runs byte-identical.
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def format_summary(report: dict) -> str:
    """A few human-readable lines summarising the report."""
    counts = report["counts"]

    def stats_line(name: str, s: dict) -> str:
        if not s["clear"]:
            return f"{name:9s} clear: 0"
        return f"{name:9s} clear: {s['clear']:6d}  median {s['median']:+.3f} K  robust SD {s['robust_sd']:.3f} K"

    def agreement_line(name: str, s: dict) -> str:
        agreement = "n/a" if s["agreement"] is None else f"{s['agreement']:.3f}"
        return f"{name}model/Bayesian agreement: {agreement} over {s['agreement_pixels']} pixels"

    filtered = ", ".join(f"{name} {n}" for name, n in counts["rows_after_filter"].items())
    lines = [
        f"match-ups: {counts['rows_read']} read; after filters: {filtered}",
        f"matched: {counts['rows_matched']} pixels in {counts['products_matched']} of "
        f"{counts['products_in_table']} products ({counts['pixels_off_grid']} off grid)",
        stats_line("Bayesian", report["bayesian"]),
        stats_line("model", report["model"]),
        agreement_line("", report),
    ]
    by_daylight = report["by_daylight"]
    for light in ("day", "night"):
        split = by_daylight[light]
        lines.append(f"{light} match-ups: {split['matchups']}")
        if split["matchups"]:
            lines += [
                "  " + stats_line("Bayesian", split["bayesian"]),
                "  " + stats_line("model", split["model"]),
                agreement_line("  ", split),
            ]
    if by_daylight["unknown"]:
        lines.append(f"neither day nor night (no mask data at the pixel): {by_daylight['unknown']}")
    return "\n".join(lines)


def _threshold(text: str) -> float:
    """argparse type: a probability threshold in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold must lie in [0, 1], not {text}")
    return value


def run_cli(args: argparse.Namespace) -> None:
    """``sst-comp`` sub-command."""
    report = compare(args.matchups, args.masks_dir, args.out, model_threshold=args.threshold)
    print(format_summary(report))
    print(f"wrote {', '.join(path.name for path in result_paths(SstFiles(args.out)))} to {args.out}")


def register(subparsers) -> None:
    """Add the ``sst-comp`` sub-command."""
    parser = subparsers.add_parser(
        "sst-comp",
        help="compare SST match-up statistics over model-clear and Bayesian-clear pixels",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("matchups", metavar="MATCHUPS", help="match-up table (.h5 pandas HDF, .csv or .parquet)")
    parser.add_argument(
        "masks_dir", metavar="MASKS_DIR", help="folder searched recursively for the mask products inference writes"
    )
    parser.add_argument("out", metavar="OUT", help="output folder")
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="model cloud-probability threshold, applied to the stored probability (0.01 steps) "
        "(default: each mask's own decision, cloud_mask, made with its threshold)",
    )
    parser.set_defaults(func=run_cli)
