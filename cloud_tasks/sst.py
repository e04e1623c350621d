"""``sst-comp``: compare SST retrievals over pixels the model and the Bayesian mask call clear.

The match-up table pairs buoy SSTs with SLSTR D2 retrievals (``sat_sst_2``) at one 1 km pixel of
one product. After the reference's filters, each match-up is looked up in the model mask of its
product (``<product stem>.h5`` below MASKS_DIR, written by inference) and the difference
``d = sat_sst_2 - (isst + 273.15)`` is summarised over the pixels each mask calls clear: count,
median and robust standard deviation (1.4826 x median absolute deviation).

Outputs in OUT, each written atomically and identical on a re-run with the same inputs:
``summary.json``, ``matchups_compared.csv`` (one row per matched pixel) and ``sst_histogram.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file
from cloud_tasks.errors import InputError
from cloud_tasks.naming import ProductName

log = logging.getLogger(__name__)

KELVIN = 273.15
MAD_TO_SD = 1.4826  # robust SD = 1.4826 x MAD estimates the SD of a normal distribution
DEFAULT_THRESHOLD = 0.5  # the reference's "mask < 0.5"; used when a mask file has no threshold attribute
BAYES_CLEAR_BELOW = 0.9  # Bayesian clear: pcloudn < 0.9 and pcloudo < 0.9
D2_ALGORITHM = 4  # sst_algorithm_type of D2, whose retrieval is sat_sst_2
TABLE_KEY = "matchups"

SUMMARY_NAME = "summary.json"
TABLE_NAME = "matchups_compared.csv"
HISTOGRAM_NAME = "sst_histogram.png"

# Only the columns the comparison uses are required (sat_sst_0, 1 and 3 are not).
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
    ("algorithm", "sst_algorithm_type == 4 (D2)", lambda t: t.sst_algorithm_type == D2_ALGORITHM),
)


def compare(matchups_path: str | Path, masks_dir: str | Path, out_dir: str | Path, *, model_threshold=None) -> dict:
    """Compare the model mask with the Bayesian mask on SST match-ups; write OUT's files; return the report.

    ``model_threshold`` overrides the ``threshold`` attribute of each mask file.
    """
    matchups_path, masks_dir, out_dir = Path(matchups_path), Path(masks_dir), Path(out_dir)
    if model_threshold is not None and not 0.0 <= model_threshold <= 1.0:
        raise ValueError(f"model threshold must lie in [0, 1], not {model_threshold}")
    table = read_matchups(matchups_path)
    rows_read = len(table)
    table, after_filter = apply_filters(table, matchups_path)
    table["product"] = [product_stem(path) for path in table["cems_path"]]

    masks = find_masks(masks_dir)
    products = sorted(set(table["product"]))
    matched_products = [p for p in products if p in masks]
    if not matched_products:
        examples = ", ".join(products[:3]) + (", ..." if len(products) > 3 else "")
        raise InputError(
            masks_dir,
            f"holds no mask for any of the {len(products)} match-up product(s) looked for ({examples}); "
            "expected <product stem>.h5 files below it",
        )
    table = table[table["product"].isin(matched_products)]
    rows_with_mask = len(table)
    table, mask_info = attach_model(table, {p: masks[p] for p in matched_products}, model_threshold)
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
        "products_matched": len(matched_products),
    }
    write_outputs(report, table, out_dir)
    text = format_summary(report)
    for line in text.splitlines():
        log.info("%s", line)
    return report


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
    table["cems_path"] = table["cems_path"].astype(str)
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


def product_stem(cems_path: str) -> str:
    """The product stem named by a match-up's ``cems_path`` (``.../<stem>.SEN3``, maybe with a trailing '/')."""
    name = Path(cems_path.strip()).name  # Path drops a trailing slash
    try:
        return ProductName.parse(name).stem
    except InputError:
        # Not an ESA name (e.g. a renamed test product): match the mask by the bare name instead.
        return name.removesuffix(".zip").removesuffix(".SEN3")


def find_masks(masks_dir: Path) -> dict[str, Path]:
    """Map product stem -> mask file for every ``<stem>.h5`` below ``masks_dir``."""
    if not masks_dir.is_dir():
        raise InputError(masks_dir, "no such masks folder")
    masks: dict[str, Path] = {}
    # Hidden names are temporary files of a writer still at work (see atomic_file).
    for path in sorted(p for p in masks_dir.rglob("*.h5") if not p.name.startswith(".")):
        if path.stem in masks:
            log.warning("%s: second mask for product %s; using %s", path, path.stem, masks[path.stem])
            continue
        masks[path.stem] = path
    return masks


def read_mask(path: Path, product: str) -> tuple[np.ndarray, dict]:
    """Read a mask file's ``mask`` (rows, columns) and its attributes; check it is the product's."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "mask" not in f or not isinstance(f["mask"], h5py.Dataset):
                raise InputError(path, "mask file has no 'mask' dataset")
            mask = f["mask"][()]
            attrs = {key: _plain(value) for key, value in f.attrs.items()}
    except OSError as exc:
        raise InputError(path, f"cannot be read as HDF5: {exc}") from None
    if mask.ndim != 2:
        raise InputError(path, f"'mask' must be 2-D (rows, columns), not of shape {mask.shape}")
    named = attrs.get("product_name")
    if named is not None and str(named).removesuffix(".SEN3") != product:
        # A renamed file would silently pair match-ups with another product's clouds.
        raise InputError(path, f"holds the mask of product {named}, not of {product} as its name says")
    return mask.astype(np.float32, copy=False), attrs


def attach_model(table, masks: dict[str, Path], model_threshold):
    """Add each row's model probability and threshold, dropping rows whose pixel is off its mask's grid.

    Returns the kept rows and per product the mask's ``threshold`` and ``model_sha256`` attributes.
    """
    probability = np.full(len(table), np.nan)
    threshold = np.full(len(table), np.nan)
    on_grid = np.zeros(len(table), dtype=bool)
    xs = table["x_cems"].to_numpy(dtype=np.float64)
    ys = table["y_cems"].to_numpy(dtype=np.float64)
    info: dict[str, dict] = {}
    # Each mask file is opened once; its match-ups are looked up with one fancy index.
    for product, rows in sorted(table.groupby("product").indices.items()):
        mask, attrs = read_mask(masks[product], product)
        x, y = xs[rows], ys[rows]
        # A valid pixel index is a whole number inside the grid (NaN fails every test).
        ok = (x == np.round(x)) & (y == np.round(y)) & (x >= 0) & (y >= 0)
        ok &= (x < mask.shape[1]) & (y < mask.shape[0])
        kept = rows[ok]
        probability[kept] = mask[y[ok].astype(np.intp), x[ok].astype(np.intp)]
        file_threshold = float(attrs.get("threshold", DEFAULT_THRESHOLD))
        threshold[kept] = file_threshold if model_threshold is None else model_threshold
        on_grid[kept] = True
        info[product] = {"threshold": file_threshold, "model_sha256": attrs.get("model_sha256")}
        if not ok.all():
            log.warning("%s: %d match-up pixel(s) off the %dx%d grid dropped", product, (~ok).sum(), *mask.shape)
    table = table.assign(model_probability=probability, model_threshold=threshold)
    return table[on_grid], info


def classify(table):
    """Add the difference ``d`` and the per-mask clear flags to the matched rows."""
    p = table["model_probability"]
    return table.assign(
        d=table["sat_sst_2"] - (table["isst"] + KELVIN),
        # NaN in the mask (the model gave no probability) compares False: not clear.
        model_clear=p < table["model_threshold"],
        model_known=p.notna(),
        bayes_clear=(table["pcloudn"] < BAYES_CLEAR_BELOW) & (table["pcloudo"] < BAYES_CLEAR_BELOW),
        bayes_cloudy=table["bayes_in"] > 0,
    )


def build_report(table, mask_info: dict[str, dict], model_threshold) -> dict:
    """The statistics of d over each mask's clear pixels, and the model/Bayesian agreement."""
    d = table["d"].to_numpy(dtype=np.float64)
    model_clear = table["model_clear"].to_numpy(dtype=bool)
    known = table["model_known"].to_numpy(dtype=bool)
    bayes_cloudy = table["bayes_cloudy"].to_numpy(dtype=bool)
    bayes_clear = table["bayes_clear"].to_numpy(dtype=bool)

    if model_threshold is not None:
        threshold, source = float(model_threshold), "argument"
    else:
        values = {info["threshold"] for info in mask_info.values()}
        threshold = values.pop() if len(values) == 1 else {k: v["threshold"] for k, v in mask_info.items()}
        source = "mask files"
    agreement = float(np.mean((~model_clear[known]) == bayes_cloudy[known])) if known.any() else None
    return {
        "algorithm": "D2 (sat_sst_2)",
        "difference": "sat_sst_2 - (isst + 273.15), K",
        "filters": {name: rule for name, rule, _ in FILTERS},
        "threshold": threshold,
        "threshold_source": source,
        "model_sha256": sorted({str(i["model_sha256"]) for i in mask_info.values() if i["model_sha256"]}),
        "bayesian": clear_stats(d[bayes_clear]),
        "model": clear_stats(d[model_clear]),
        "model_unknown_pixels": int((~known).sum()),
        "agreement": agreement,
        "agreement_pixels": int(known.sum()),
    }


def clear_stats(d: np.ndarray) -> dict:
    """Count, median and robust SD (1.4826 x MAD) of the finite differences in ``d``."""
    d = d[np.isfinite(d)]  # a missing sat_sst_2 gives no difference to summarise
    if d.size == 0:
        return {"clear": 0, "median": None, "robust_sd": None}
    median = float(np.median(d))
    mad = float(np.median(np.abs(d - median)))
    return {"clear": int(d.size), "median": median, "robust_sd": MAD_TO_SD * mad}


def write_outputs(report: dict, table, out_dir: Path) -> None:
    """Write summary.json, matchups_compared.csv and sst_histogram.png atomically into ``out_dir``."""
    columns = {
        "product": "product",
        "x_cems": "x",
        "y_cems": "y",
        "d": "d",
        "model_probability": "model_probability",
        "model_clear": "model_clear",
        "bayes_clear": "bayes_clear",
        "bayes_in": "bayes_in",
    }
    pixels = table[list(columns)].rename(columns=columns)
    with atomic_file(out_dir / TABLE_NAME) as tmp:
        pixels.to_csv(tmp, index=False)
    with atomic_file(out_dir / HISTOGRAM_NAME) as tmp:
        plot_histogram(table, report, tmp)
    with atomic_file(out_dir / SUMMARY_NAME) as tmp:
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
    ax.set_xlabel("sat_sst_2 - buoy SST (K)")
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

    agreement = "n/a" if report["agreement"] is None else f"{report['agreement']:.3f}"
    filtered = ", ".join(f"{name} {n}" for name, n in counts["rows_after_filter"].items())
    return "\n".join(
        [
            f"match-ups: {counts['rows_read']} read; after filters: {filtered}",
            f"matched: {counts['rows_matched']} pixels in {counts['products_matched']} of "
            f"{counts['products_in_table']} products ({counts['pixels_off_grid']} off grid)",
            stats_line("Bayesian", report["bayesian"]),
            stats_line("model", report["model"]),
            f"model/Bayesian agreement: {agreement} over {report['agreement_pixels']} pixels",
        ]
    )


def _plain(value):
    """HDF5 attribute values as plain Python values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _threshold(text: str) -> float:
    """argparse type: a probability threshold in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold must lie in [0, 1], not {text}")
    return value


def _run(args: argparse.Namespace) -> None:
    report = compare(args.matchups, args.masks_dir, args.out, model_threshold=args.threshold)
    print(format_summary(report))
    print(f"wrote {SUMMARY_NAME}, {TABLE_NAME} and {HISTOGRAM_NAME} to {args.out}")


def register(subparsers) -> None:
    """Add the ``sst-comp`` sub-command."""
    parser = subparsers.add_parser(
        "sst-comp",
        help="compare SST match-up statistics over model-clear and Bayesian-clear pixels",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("matchups", metavar="MATCHUPS", help="match-up table (.h5 pandas HDF, .csv or .parquet)")
    parser.add_argument("masks_dir", metavar="MASKS_DIR", help="folder searched recursively for <product>.h5 masks")
    parser.add_argument("out", metavar="OUT", help="output folder")
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="model cloud-probability threshold (default: each mask file's 'threshold' attribute)",
    )
    parser.set_defaults(func=_run)
