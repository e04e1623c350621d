"""Tests of ``cloud_tasks.sst``: hand-made match-up tables and mask files, checked against numpy."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pandas as pd
import pytest

from cloud_tasks import sst
from cloud_tasks.errors import InputError
from cloud_tasks.layout import MaskFiles, SstFiles
from cloud_tasks.naming import ProductName
from cloud_tasks.product import cf_mask

PRODUCT_A = "S3A_SL_1_RBT____20200601T101010_20200601T101310_20200601T120000_0179_059_008_1980_SVL_O_NT_004"
PRODUCT_B = "S3B_SL_1_RBT____20200601T111010_20200601T111310_20200601T130000_0179_039_108_2160_SVL_O_NT_004"
PRODUCT_C = "S3A_SL_1_RBT____20200602T101010_20200602T101310_20200602T120000_0179_059_022_1980_SVL_O_NT_004"
THRESHOLDS = {PRODUCT_A: 0.5, PRODUCT_B: 0.4}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_masks() -> dict[str, np.ndarray]:
    """Two small masks of cloud probabilities; A has a NaN (no data) pixel at row 2, column 3."""
    rng = np.random.default_rng(7)
    mask_a = rng.random((10, 12)).astype(np.float32)
    mask_a[2, 3] = np.nan
    mask_b = rng.random((8, 9)).astype(np.float32)
    return {PRODUCT_A: mask_a, PRODUCT_B: mask_b}


DAY_MODEL = cf_mask.Model("v1", "ab" * 32, "day")
THERMAL_MODEL = cf_mask.Model("v2", "cd" * 32, "thermal")
NIGHT_FROM_COLUMN = 5  # product B's pixels from this column on were masked by the thermal model


def mask_models(product: str, shape: tuple[int, int]) -> dict:
    """Product A: the day model alone (no per-pixel flag); B: both models, ``model_used`` by column."""
    if product == PRODUCT_A:
        return {"models": [DAY_MODEL]}
    used = np.zeros(shape, np.uint8)
    used[:, NIGHT_FROM_COLUMN:] = 1
    return {"models": [DAY_MODEL, THERMAL_MODEL], "model_used": used}


def write_netcdf_mask(path, product: str, probability: np.ndarray, **options) -> None:
    """A mask product as inference writes it (``cf_mask.write_mask``), on a small made-up swath."""
    name = ProductName.parse(product)
    rows, columns = np.mgrid[0 : probability.shape[0], 0 : probability.shape[1]]
    attrs = {"product_name": product, "sensing_start": name.start.isoformat(), "sensing_stop": name.stop.isoformat()}
    settings = {"threshold": THRESHOLDS[product], **mask_models(product, probability.shape), **options}
    path.parent.mkdir(parents=True, exist_ok=True)
    cf_mask.write_mask(path, probability, -30 + 0.01 * rows, 100 + 0.01 * columns, product=attrs, **settings)


def write_hdf5_mask(path, product: str, probability: np.ndarray) -> None:
    """A mask as inference wrote it before the NetCDF product: dataset ``mask``, attributes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("mask", data=probability)
        f.attrs["product_name"] = product
        f.attrs["model_sha256"] = DAY_MODEL.sha256
        f.attrs["threshold"] = THRESHOLDS[product]


# Match-ups that pass every filter: (product, x, y); the last two are dropped later
# (off A's 12-column grid; product C has no mask).
GOOD_PIXELS = [
    (PRODUCT_A, 0, 0),
    (PRODUCT_A, 3, 2),  # NaN in the mask
    (PRODUCT_A, 11, 9),
    (PRODUCT_A, 5, 5),
    (PRODUCT_A, 7, 1),
    (PRODUCT_A, 2, 8),
    (PRODUCT_A, 9, 4),
    (PRODUCT_B, 0, 7),
    (PRODUCT_B, 8, 0),
    (PRODUCT_B, 4, 4),
    (PRODUCT_B, 1, 3),
    (PRODUCT_B, 6, 6),
    (PRODUCT_A, 12, 0),  # off grid
    (PRODUCT_C, 1, 1),  # no mask
]
N_MATCHED = 12


def good_row(rng, product: str, x: int, y: int, i: int) -> dict:
    """A match-up row that passes every filter (some at the filters' edges)."""
    isst = 15 + 10 * rng.random()
    lat, lon = -30 + i, 100 + i
    trailing = "/" if i % 2 else ""  # cems_path with and without a trailing slash
    return {
        "isst": isst,
        "slat": lat + 0.004,
        "slon": lon - 0.009,
        "latitude_an": lat,
        "longitude_an": lon,
        "satzan": 55.0 if i == 0 else 30 * rng.random(),
        "satzao": 55.0 if i == 1 else 50 * rng.random(),
        "quality_level": 5,
        "sst_algorithm_type": 4,
        "sat_sst_0": np.nan,
        "sat_sst_1": np.nan,
        "sat_sst_2": isst + 273.15 + rng.normal(-0.2, 0.4),
        "sat_sst_3": np.nan,
        "cems_path": f"/neodc/sst/{product}.SEN3{trailing}",
        "x_cems": x,
        "y_cems": y,
        # Some Bayesian-cloudy pixels by either probability, and one at the 0.9 edge (cloudy).
        "pcloudn": 0.95 if i % 4 == 3 else 0.9 if i == 5 else 0.8 * rng.random(),
        "pcloudo": 0.92 if i % 5 == 4 else 0.8 * rng.random(),
        "bayes_in": int(rng.integers(0, 3)),
    }


def make_table() -> pd.DataFrame:
    """14 good rows, then 8 rows each failing one filter (in filter order)."""
    rng = np.random.default_rng(11)
    rows = [good_row(rng, *pixel, i) for i, pixel in enumerate(GOOD_PIXELS)]
    lat, lon = -30, 100  # the position of good_row(..., i=0)
    breaks = [
        {"slat": lat + 0.006},  # latitude
        {"slat": np.nan},  # latitude (missing)
        {"slon": lon - 0.011},  # longitude
        {"isst": 0.0},  # buoy_sst (must be above 0 deg C)
        {"satzan": 55.5},  # zenith
        {"satzao": 56.0},  # zenith
        {"quality_level": 4},  # quality
        {"sst_algorithm_type": 1},  # algorithm (N2: neither D2 nor N3)
    ]
    rows += [{**good_row(rng, PRODUCT_A, 1, 1, 0), **change} for change in breaks]
    table = pd.DataFrame(rows)
    # Upper-case some names: the reader lower-cases them.
    return table.rename(columns={"isst": "ISST", "slat": "Slat", "pcloudn": "PCLOUDN"})


EXPECTED_AFTER_FILTER = {"latitude": 20, "longitude": 19, "buoy_sst": 18, "zenith": 16, "quality": 15, "algorithm": 14}


MASK_FOLDERS = {PRODUCT_A: "day", PRODUCT_B: "night/deeper"}  # nested: the search is recursive


def mask_path(masks_dir: Path, product: str) -> Path:
    """Where a product's mask lies in the tests' masks folder, named as inference names it."""
    return MaskFiles(masks_dir / MASK_FOLDERS[product]).mask(product)


def write_masks(masks_dir: Path, masks=None, writer=write_netcdf_mask) -> None:
    """Write the masks (default: ``make_masks``) with ``writer``."""
    for product, mask in (make_masks() if masks is None else masks).items():
        writer(mask_path(masks_dir, product), product, mask)


def stored(probability: np.ndarray) -> np.ndarray:
    """The probability as the NetCDF mask stores it: in steps of 0.01."""
    return np.rint(probability.astype(np.float64) / 0.01) * 0.01


def stats(v: np.ndarray) -> dict:
    median = np.median(v)
    return {"clear": len(v), "median": median, "robust_sd": 1.4826 * np.median(np.abs(v - median))}


def expected_stats(table: pd.DataFrame, threshold: float | None = None, rows: list[int] | None = None) -> dict:
    """The report's statistics computed independently, one match-up at a time (of ``rows`` of the matched)."""
    masks = make_masks()
    rows = list(range(N_MATCHED)) if rows is None else rows
    matched = table.iloc[rows]
    pixels = [GOOD_PIXELS[row] for row in rows]
    d = (matched["sat_sst_2"] - (matched["ISST"] + 273.15)).to_numpy()
    p = np.array([masks[prod][y, x] for prod, x, y in pixels], dtype=np.float64)
    thr = np.array([threshold or THRESHOLDS[prod] for prod, _, _ in pixels])
    if threshold is not None:  # an override is applied to the stored probability, in its steps of 0.01
        p, thr = stored(p), thr - 1e-9
    with np.errstate(invalid="ignore"):
        model_clear = p < thr
        model_cloudy = p >= thr
    bayes_clear = (matched["PCLOUDN"].to_numpy() < 0.9) & (matched["pcloudo"].to_numpy() < 0.9)
    known = ~np.isnan(p)
    agreement = np.mean(model_cloudy[known] == (matched["bayes_in"].to_numpy()[known] > 0))
    return {"bayesian": stats(d[bayes_clear]), "model": stats(d[model_clear]), "agreement": agreement}


@pytest.fixture
def inputs(tmp_path):
    """A CSV match-up table and a masks folder."""
    table = make_table()
    csv = tmp_path / "matchups.csv"
    table.to_csv(csv, index=False)
    masks_dir = tmp_path / "masks"
    write_masks(masks_dir)
    return table, csv, masks_dir


def without_inputs(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "inputs"}


def test_statistics_match_numpy(inputs, tmp_path, caplog):
    table, csv, masks_dir = inputs
    with caplog.at_level(logging.WARNING):
        report = sst.compare(csv, masks_dir, tmp_path / "out")
    expected = expected_stats(table)
    for mask in ("bayesian", "model"):
        assert report[mask]["clear"] == expected[mask]["clear"] >= 3
        assert report[mask]["median"] == pytest.approx(expected[mask]["median"], abs=1e-12)
        assert report[mask]["robust_sd"] == pytest.approx(expected[mask]["robust_sd"], abs=1e-12)
    assert report["bayesian"]["clear"] != report["model"]["clear"]
    assert report["agreement"] == pytest.approx(expected["agreement"])
    assert report["agreement_pixels"] == N_MATCHED - 1  # the NaN pixel is unknown
    assert report["model_unknown_pixels"] == 1
    assert report["counts"] == {
        "rows_read": 22,
        "rows_after_filter": EXPECTED_AFTER_FILTER,
        "rows_with_mask_product": 13,
        "pixels_off_grid": 1,
        "rows_matched": N_MATCHED,
        "products_in_table": 3,
        "products_matched": 2,
    }
    assert list(report["counts"]["rows_after_filter"]) == list(EXPECTED_AFTER_FILTER)  # filter order
    assert report["threshold"] == THRESHOLDS  # one per mask file, as they differ
    assert report["threshold_source"] == "mask files"
    assert report["model_sha256"] == [DAY_MODEL.sha256, THERMAL_MODEL.sha256]
    assert report["model_version"] == ["v1", "v2"]
    assert "off the 10x12 grid" in caplog.text


def edge_probabilities(product: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Random probabilities with many at the product's threshold, a float32 step below it, within 0.005 of it
    (where the probability stored to 0.01 falls on the other side), and some NaN (no data)."""
    threshold = np.float32(THRESHOLDS[product])
    p = rng.random(shape, dtype=np.float32)
    edges = [threshold, np.nextafter(threshold, np.float32(0)), threshold - np.float32(0.004), threshold + 0.004]
    flat = p.reshape(-1)
    picked = rng.choice(flat.size, 40 * len(edges) + 40, replace=False)
    for i, value in enumerate([*edges, np.float32(np.nan)]):
        flat[picked[40 * i : 40 * (i + 1)]] = value
    return p


def hdf5_statistics(csv: Path, masks_dir: Path) -> tuple[dict, np.ndarray]:
    """The statistics and model-clear flags as sst-comp computed them from the HDF5 masks, before the NetCDF
    product: dataset ``mask`` read with h5py, clear where ``mask < threshold``, NaN = unknown."""
    table, _ = sst.apply_filters(sst.read_matchups(csv), csv)
    probability, threshold = [], []
    for cell, x, y in zip(table["cems_path"], table["x_cems"], table["y_cems"], strict=True):
        product = ProductName.parse(Path(cell).name).stem
        with h5py.File(mask_path(masks_dir, product), "r") as f:
            probability.append(f["mask"][y, x])
            threshold.append(f.attrs["threshold"])
    p = np.array(probability, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        clear = p < np.array(threshold)
    known = ~np.isnan(p)
    d = (table["sat_sst_2"] - (table["isst"] + 273.15)).to_numpy()
    bayes_clear = ((table["pcloudn"] < 0.9) & (table["pcloudo"] < 0.9)).to_numpy()
    report = {
        "bayesian": stats(d[bayes_clear]),
        "model": stats(d[clear]),
        "agreement": np.mean(~clear[known] == (table["bayes_in"].to_numpy()[known] > 0)),
        "agreement_pixels": int(known.sum()),
        "model_unknown_pixels": int((~known).sum()),
    }
    return report, clear


def test_statistics_equal_those_of_the_hdf5_masks(tmp_path):
    """The same probabilities as the former HDF5 masks and as NetCDF masks give the same statistics, to the bit:
    the NetCDF's clear pixels come from its cloud_mask, not from the probability it stores rounded to 0.01."""
    rng = np.random.default_rng(5)
    masks = {product: edge_probabilities(product, (40, 50), rng) for product in (PRODUCT_A, PRODUCT_B)}
    pixels = [(product, x, y) for product in masks for y in range(40) for x in range(50) if rng.random() < 0.5]
    csv = tmp_path / "matchups.csv"
    pd.DataFrame([good_row(rng, *pixel, i) for i, pixel in enumerate(pixels)]).to_csv(csv, index=False)
    write_masks(tmp_path / "hdf5", masks, writer=write_hdf5_mask)
    write_masks(tmp_path / "netcdf", masks)

    before, clear_before = hdf5_statistics(csv, tmp_path / "hdf5")
    sst.compare(csv, tmp_path / "netcdf", tmp_path / "out")
    after = json.loads(SstFiles(tmp_path / "out").summary.read_text())  # as written
    assert {key: after[key] for key in before} == before
    assert after["counts"]["rows_matched"] == len(pixels) and after["model"]["clear"] > 100
    compared = pd.read_csv(SstFiles(tmp_path / "out").table)
    assert compared["model_clear"].tolist() == clear_before.tolist()  # pixel by pixel
    # Deciding on the stored probability would not have given the same pixels.
    with np.errstate(invalid="ignore"):
        by_stored = compared["model_probability"].to_numpy() < compared["product"].map(THRESHOLDS).to_numpy()
    assert (by_stored != clear_before).sum() > 10


# The matched rows by the model that made their pixel: A has the day model alone; B the thermal model from
# column NIGHT_FROM_COLUMN on; row 1 is A's no-data pixel.
DAY_ROWS, NIGHT_ROWS, NO_DATA_ROWS = [0, 2, 3, 4, 5, 6, 7, 9, 10], [8, 11], [1]


def test_day_and_night_matchups_are_reported_apart(inputs, tmp_path):
    table, csv, masks_dir = inputs
    report = sst.compare(csv, masks_dir, tmp_path / "out")
    by_daylight = report["by_daylight"]
    assert by_daylight["unknown"] == len(NO_DATA_ROWS) and "solar zenith" in by_daylight["rule"]
    for light, rows in (("day", DAY_ROWS), ("night", NIGHT_ROWS)):
        split, expected = by_daylight[light], expected_stats(table, rows=rows)
        assert split["matchups"] == len(rows) == split["agreement_pixels"] and split["model_unknown_pixels"] == 0
        for mask in ("bayesian", "model"):
            assert split[mask]["clear"] == expected[mask]["clear"]
            assert split[mask]["median"] == pytest.approx(expected[mask]["median"], abs=1e-12)
            assert split[mask]["robust_sd"] == pytest.approx(expected[mask]["robust_sd"], abs=1e-12)
        assert split["agreement"] == pytest.approx(expected["agreement"])
    assert by_daylight["night"]["model"]["clear"] > 0 and by_daylight["day"]["bayesian"]["clear"] > 0
    pixels = pd.read_csv(SstFiles(tmp_path / "out").table, keep_default_na=False)
    assert [pixels["daylight"].tolist().count(light) for light in ("day", "night", "")] == [9, 2, 1]


def test_night_matchups_compare_the_n3_retrieval(inputs, tmp_path):
    """At night SLSTR retrieves SST with N3 (sat_sst_1, three channels); the reference's D2-only filter dropped
    those match-ups. The same differences given as N3 retrievals at the night pixels give the same report."""
    table, csv, masks_dir = inputs
    as_d2 = sst.compare(csv, masks_dir, tmp_path / "d2")
    at_night = table.index[NIGHT_ROWS]
    table.loc[at_night, "sat_sst_1"] = table.loc[at_night, "sat_sst_2"]
    table.loc[at_night, ["sat_sst_2", "sst_algorithm_type"]] = [np.nan, 3]
    table.to_csv(csv, index=False)
    assert without_inputs(sst.compare(csv, masks_dir, tmp_path / "n3")) == without_inputs(as_d2)

    table.drop(columns="sat_sst_1").to_csv(csv, index=False)  # a table without N3 retrievals: D2 only
    night = sst.compare(csv, masks_dir, tmp_path / "no-n3")["by_daylight"]["night"]
    assert night["matchups"] == len(NIGHT_ROWS) and night["model"]["clear"] == night["bayesian"]["clear"] == 0


def test_outputs(inputs, tmp_path):
    _, csv, masks_dir = inputs
    out = tmp_path / "out"
    files = SstFiles(out)
    report = sst.compare(csv, masks_dir, out)
    assert sorted(out.iterdir()) == sorted([files.histogram, files.table, files.summary])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staged set left beside OUT

    summary = json.loads(files.summary.read_text())
    assert summary == json.loads(json.dumps(report))
    assert list(summary["counts"]["rows_after_filter"]) == list(EXPECTED_AFTER_FILTER)
    assert summary["inputs"]["matchups"] == str(csv.resolve())

    pixels = pd.read_csv(files.table)
    assert list(pixels.columns) == [
        "product",
        "x",
        "y",
        "d",
        "model_probability",
        "model_clear",
        "bayes_clear",
        "bayes_in",
        "daylight",
    ]
    assert len(pixels) == N_MATCHED
    assert pixels["model_clear"].sum() == report["model"]["clear"]
    assert pixels["bayes_clear"].sum() == report["bayesian"]["clear"]
    masks = make_masks()
    for row in pixels.itertuples():  # the probability as the mask stores it, to 0.01
        assert row.model_probability == pytest.approx(stored(masks[row.product][row.y, row.x]), nan_ok=True)

    png = files.histogram.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    import matplotlib.image

    assert matplotlib.image.imread(files.histogram).ndim == 3


def test_rerun_is_byte_identical(inputs, tmp_path):
    _, csv, masks_dir = inputs
    out = tmp_path / "out"
    sst.compare(csv, masks_dir, out)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    sst.compare(csv, masks_dir, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_threshold_argument_overrides_mask_attribute(inputs, tmp_path):
    table, csv, masks_dir = inputs
    report = sst.compare(csv, masks_dir, tmp_path / "out", model_threshold=0.7)
    expected = expected_stats(table, threshold=0.7)
    assert report["threshold"] == 0.7
    assert report["threshold_source"] == "argument"
    assert report["model"]["clear"] == expected["model"]["clear"]
    assert report["model"]["median"] == pytest.approx(expected["model"]["median"])
    assert report["agreement"] == pytest.approx(expected["agreement"])


def test_csv_and_hdf_give_the_same_summary(inputs, tmp_path):
    table, csv, masks_dir = inputs
    from_csv = sst.compare(csv, masks_dir, tmp_path / "out_csv")
    h5 = tmp_path / "matchups.h5"
    table.to_hdf(h5, key="matchups")
    assert without_inputs(sst.compare(h5, masks_dir, tmp_path / "out_h5")) == without_inputs(from_csv)
    only_key = tmp_path / "other.h5"
    table.to_hdf(only_key, key="anything")
    assert without_inputs(sst.compare(only_key, masks_dir, tmp_path / "out_key")) == without_inputs(from_csv)


def test_parquet(inputs, tmp_path):
    table, csv, masks_dir = inputs
    path = tmp_path / "matchups.parquet"
    if importlib.util.find_spec("pyarrow") is None:
        path.write_bytes(b"PAR1")
        with pytest.raises(InputError, match="pyarrow"):
            sst.compare(path, masks_dir, tmp_path / "out")
        return
    table.to_parquet(path)
    from_csv = sst.compare(csv, masks_dir, tmp_path / "out_csv")
    assert without_inputs(sst.compare(path, masks_dir, tmp_path / "out")) == without_inputs(from_csv)


def test_missing_columns_are_all_named(inputs, tmp_path):
    table, _, masks_dir = inputs
    path = tmp_path / "bad.csv"
    table.drop(columns=["ISST", "pcloudo", "x_cems"]).to_csv(path, index=False)
    with pytest.raises(InputError, match="isst, x_cems, pcloudo") as info:
        sst.compare(path, masks_dir, tmp_path / "out")
    assert info.value.path == path


def test_everything_filtered_names_the_filter(inputs, tmp_path):
    table, _, masks_dir = inputs
    path = tmp_path / "low_quality.csv"
    table.assign(quality_level=3).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"after filter 'quality' \(quality_level == 5\)"):
        sst.compare(path, masks_dir, tmp_path / "out")


def test_no_masks_for_any_product(inputs, tmp_path):
    _, csv, _ = inputs
    empty = tmp_path / "no_masks"
    empty.mkdir()
    MaskFiles(empty).mask("unrelated").write_bytes(b"")
    expected = MaskFiles(empty).mask(PRODUCT_A).name
    with pytest.raises(InputError, match=f"any of the 3 match-up product.*{PRODUCT_A}.*such as {expected}") as info:
        sst.compare(csv, empty, tmp_path / "out")
    assert info.value.path == empty
    assert list((tmp_path / "out").iterdir()) == []  # OUT was checked (made) before any work; nothing written


def test_mask_without_cloud_mask_variable(inputs, tmp_path):
    _, csv, masks_dir = inputs
    bad = mask_path(masks_dir, PRODUCT_A)
    with netCDF4.Dataset(bad, "a") as ds:
        ds.renameVariable("cloud_mask", "mask")
    with pytest.raises(InputError, match="has no variable 'cloud_mask'") as info:
        sst.compare(csv, masks_dir, tmp_path / "out")
    assert info.value.path == bad


def test_mask_that_is_not_netcdf(inputs, tmp_path):
    _, csv, masks_dir = inputs
    bad = mask_path(masks_dir, PRODUCT_B)
    bad.write_bytes(b"not a NetCDF file")
    with pytest.raises(InputError, match="cannot be read as NetCDF") as info:
        sst.compare(csv, masks_dir, tmp_path / "out")
    assert info.value.path == bad


def test_mask_of_another_product(inputs, tmp_path):
    _, csv, masks_dir = inputs
    with netCDF4.Dataset(mask_path(masks_dir, PRODUCT_A), "a") as ds:
        ds.product_name = PRODUCT_C
    with pytest.raises(InputError, match=f"mask of product {PRODUCT_C}, not of {PRODUCT_A}"):
        sst.compare(csv, masks_dir, tmp_path / "out")


@pytest.mark.parametrize(("name", "content"), [("garbage.h5", b"not hdf5 at all"), ("empty.csv", b"")])
def test_unreadable_table(inputs, tmp_path, name, content):
    _, _, masks_dir = inputs
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match="cannot be read as a match-up table") as info:
        sst.compare(path, masks_dir, tmp_path / "out")
    assert info.value.path == path


def test_missing_table_and_unknown_format(inputs, tmp_path):
    _, _, masks_dir = inputs
    with pytest.raises(InputError, match="no such match-up table"):
        sst.compare(tmp_path / "absent.csv", masks_dir, tmp_path / "out")
    other = tmp_path / "table.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown match-up table format"):
        sst.compare(other, masks_dir, tmp_path / "out")


def test_product_stem(tmp_path):
    table = tmp_path / "t.csv"
    assert sst.product_stem(f"/a/b/{PRODUCT_A}.SEN3/", table) == PRODUCT_A
    assert sst.product_stem(f"{PRODUCT_A}.SEN3", table) == PRODUCT_A
    assert sst.product_stem(f" /a/{PRODUCT_A}.SEN3".encode(), table) == PRODUCT_A
    # A cell is file content: anything but a product name at its end is refused, naming table and row.
    for cell in ("/x/renamed_product.SEN3", "../../etc", "/", f"{PRODUCT_A}.SEN3/.."):
        with pytest.raises(InputError, match=r"row 4: cems_path .*: last component .* not an SLSTR") as info:
            sst.product_stem(cell, table, 4)
        assert info.value.path == table
    for cell in ("", "  ", np.nan, None):
        with pytest.raises(InputError, match="row 4: empty cems_path"):
            sst.product_stem(cell, table, 4)


def test_cli(inputs, tmp_path, capsys):
    table, csv, masks_dir = inputs
    parser = argparse.ArgumentParser()
    sst.register(parser.add_subparsers())
    out = tmp_path / "cli_out"
    args = parser.parse_args(["sst-comp", str(csv), str(masks_dir), str(out), "--threshold", "0.7"])
    args.func(args)
    printed = capsys.readouterr().out
    assert "agreement" in printed
    assert "Bayesian" in printed
    summary = json.loads(SstFiles(out).summary.read_text())
    assert summary["threshold"] == 0.7
    assert summary["model"]["clear"] == expected_stats(table, threshold=0.7)["model"]["clear"]
    with pytest.raises(SystemExit):
        parser.parse_args(["sst-comp", str(csv), str(masks_dir), str(out), "--threshold", "1.5"])


def result_set(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


class WriteFailed(Exception):
    pass


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2 exchange", "two renames"])
def test_result_set_is_replaced_whole_or_not_at_all(inputs, tmp_path, monkeypatch, exchange):
    _, csv, masks_dir = inputs
    out = tmp_path / "out"
    sst.compare(csv, masks_dir, out)
    earlier = result_set(out)
    if not exchange:  # the fallback for kernels and file systems without RENAME_EXCHANGE
        monkeypatch.setattr(sst, "_rename_exchange", lambda a, b: False)

    def half_written(files):
        files.table.write_text("new table")
        raise WriteFailed

    with pytest.raises(WriteFailed):
        sst.replace_result_set(SstFiles(out), half_written)
    assert result_set(out) == earlier  # no new table beside the old summary
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    sst.compare(csv, masks_dir, out, model_threshold=0.7)
    replaced = result_set(out)
    assert replaced.keys() == earlier.keys() and replaced != earlier
    assert json.loads(SstFiles(out).summary.read_text())["threshold"] == 0.7
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_out_holding_other_files_is_refused_before_any_work(inputs, tmp_path):
    _, csv, masks_dir = inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"holds 'notes.txt', which is no part of an sst-comp result set") as info:
        sst.compare(csv, masks_dir, out)
    assert info.value.path == out
    assert result_set(out) == {"notes.txt": b"mine"}


def test_symlinked_out_replaces_the_folder_it_points_to(inputs, tmp_path):
    _, csv, masks_dir = inputs
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    sst.compare(csv, masks_dir, link)
    sst.compare(csv, masks_dir, link)
    assert link.is_symlink() and sorted(result_set(real)) == sorted(p.name for p in sst.result_paths(SstFiles(real)))
