"""Pipeline results in a data root, as the DAG leaves them, for the "Cloud masks" page's tests.

Per day: converted-product files, mask products (CF-NetCDF, written by ``cf_mask.write_mask`` as inference
writes them, with a no-data band on every other product), quicklook PNGs, a GeoTIFF on the first day, the STAC
catalogue (``stac.add_mask_item``, ``stac.add_model_items``), and the SST comparison and run summary written by
the pipeline's own code (``cloud_tasks.sst.compare`` on a match-up table, then ``cloud_tasks.pipeline.summarise_day``),
so the JSON files are exactly the pipeline's. The masks are made by model versions registered in the data
root's registry (``ModelRegistry.register``: a stand-in model file, its ``history.json`` and
``training_curves.png``). What is made here (probabilities, quicklooks, curves) stands for the TensorFlow
steps, which take minutes.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cloud_tasks.atomic import write_json
from cloud_tasks.hdf import BT_CHANNELS, INPUT_CHANNELS
from cloud_tasks.layout import DataRoot, ModelFiles, converted_path, matchups_path
from cloud_tasks.ml.inference import sha256
from cloud_tasks.naming import ProductName, format_product_name
from cloud_tasks.pipeline import DayRun, summarise_day
from cloud_tasks.product import cf_mask, geotiff, stac
from cloud_tasks.registry import ModelRegistry
from cloud_tasks.sst import compare

GRID = (48, 64)  # rows, columns of a (tiny) product grid
NO_DATA_COLUMNS = 8  # every other product has no valid input in its last columns (a twilight edge)
MATCHUPS_PER_PRODUCT = 40
THRESHOLD = 0.5
# The days of the tests' data root (fixture ``results``), by what is special about them.
DAYS = {
    "plain": dt.date(2024, 6, 1),  # a GeoTIFF beside its first mask
    "failed": dt.date(2024, 6, 2),  # one product failed to convert
    "no_sst": dt.date(2024, 6, 4),  # no match-up table that day
    "many": dt.date(2024, 6, 5),  # more products than a gallery page holds; day and thermal models
    "new_model": dt.date(2024, 6, 6),  # masks made by a newer model version
}
# The registered model versions (registry order) and their kinds; the versions that masked each day.
VERSIONS = {"v1": "day", "v2": "day", "v3": "thermal"}
DAY_VERSIONS = {DAYS["many"]: ("v1", "v3"), DAYS["new_model"]: ("v2",)}
REGISTERED_AT = "2024-05-31T12:00:00+00:00"


def product_names(day: dt.date, count: int) -> list[str]:
    """ESA names of ``count`` products sensed on ``day``, 3 minutes each."""
    names = []
    for i in range(count):
        start = dt.datetime.combine(day, dt.time(9, 0)) + dt.timedelta(minutes=3 * i)
        names.append(
            format_product_name(
                "S3A" if i % 2 == 0 else "S3B",
                start,
                start + dt.timedelta(minutes=3),
                start + dt.timedelta(hours=20),
                duration_s=180,
                cycle=90,
                relative_orbit=100 + i,
                frame=1080 + 180 * i,
            )
        )
    return names


def write_png(path: Path, panels: list[tuple[np.ndarray, str]], title: str) -> None:
    """A small figure of image panels (a quicklook's false colour, model and Bayesian masks)."""
    fig = Figure(figsize=(2.2 * len(panels), 2.2), dpi=60, layout="constrained")
    fig.suptitle(title, fontsize=7)
    for ax, (image, name) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=7)
        ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def write_training(files: ModelFiles, rng: np.random.Generator, name: str, epochs: int = 5) -> None:
    """A finished training run: a stand-in model file, ``history.json`` and ``training_curves.png``."""
    loss = np.sort(rng.uniform(0.2, 0.7, epochs))[::-1]
    history = {
        "epoch": list(range(epochs)),
        "loss": loss.tolist(),
        "val_loss": (loss + 0.05).tolist(),
        "accuracy": (1 - loss / 2).tolist(),
        "val_accuracy": (1 - loss / 2 - 0.02).tolist(),
    }
    files.folder.mkdir(parents=True, exist_ok=True)
    files.model.write_bytes(f"stand-in model {name}".encode())
    files.history_json.write_text(json.dumps(history))
    fig = Figure(figsize=(6, 2.4), dpi=60, layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        ax.plot(history["epoch"], history[metric], marker="o", label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", label="test")
        ax.set(title=f"{name} {metric}", xlabel="epoch")
        ax.legend()
    fig.savefig(files.curves, format="png")


def register_models(root: Path) -> dict[str, cf_mask.Model]:
    """Register VERSIONS in the data root's registry (once) and catalogue them; return them as mask models."""
    registry = ModelRegistry(root)
    models = {}
    for n, (name, kind) in enumerate(VERSIONS.items()):
        training = registry.files.training(f"ui-{name}")
        if not training.model.is_file():
            write_training(training, np.random.default_rng(n), name)
        info = {
            "model_sha256": sha256(training.model),
            "kind": kind,
            "label": "bayes",
            "input_channels": list(BT_CHANNELS if kind == "thermal" else INPUT_CHANNELS),
            "registered_at": REGISTERED_AT,
        }
        version = registry.register(training, key=f"ui-{name}", info=info, write_extras=lambda folder: None)
        assert version.name == name, f"registered as {version.name}, not {name}"
        models[name] = cf_mask.Model(name, version.sha256, kind)
    stac.add_model_items(root)
    return models


def write_mask(path: Path, product: str, models: list, cloud: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mask product as inference writes it: cloud probabilities near the truth, no data in the last columns of
    every other product; a second model (thermal) made the right half. Returns its ``cloud_mask`` values."""
    name = ProductName.parse(product)
    probability = np.clip(cloud * 0.8 + rng.uniform(0, 0.6, cloud.shape), 0, 1).astype(np.float32)
    valid = np.ones(GRID, dtype=bool)
    if name.relative_orbit % 2:
        valid[:, -NO_DATA_COLUMNS:] = False
    used = None
    if len(models) > 1:
        used = np.zeros(GRID, dtype=np.uint8)
        used[:, GRID[1] // 2 :] = 1
    rows, columns = np.mgrid[0 : GRID[0], 0 : GRID[1]]
    latitude, longitude = 40 + 0.01 * rows + 0.3 * name.relative_orbit % 7, 10 + 0.012 * columns
    attrs = {"product_name": product, "sensing_start": name.start.isoformat(), "sensing_stop": name.stop.isoformat()}
    path.parent.mkdir(parents=True, exist_ok=True)
    cf_mask.write_mask(
        path, probability, latitude, longitude, product=attrs, models=models, threshold=THRESHOLD, valid=valid,
        model_used=used,
    )  # fmt: skip
    return cf_mask.read_mask(path).cloud_mask


def matchups(product: str, cloud: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Buoy match-ups of a product that pass the reference's filters; cloudy pixels read too cold."""
    n = MATCHUPS_PER_PRODUCT
    y, x = rng.integers(0, GRID[0], n), rng.integers(0, GRID[1], n)
    cloudy = cloud[y, x] > 0.5
    isst = rng.uniform(12, 24, n)
    lat, lon = rng.uniform(-50, 50, n), rng.uniform(-120, 120, n)
    return pd.DataFrame(
        {
            "isst": isst,
            "sat_sst_2": isst + 273.15 + rng.normal(-0.15, 0.3, n) - 2.0 * cloudy,
            "slat": lat,
            "slon": lon,
            "latitude_an": lat + 0.001,
            "longitude_an": lon + 0.002,
            "satzan": 20.0,
            "satzao": 30.0,
            "quality_level": 5,
            "sst_algorithm_type": 4,
            "cems_path": f"/neodc/sentinel3a/data/SLSTR/L1_RBT/{product}.SEN3",
            "x_cems": x,
            "y_cems": y,
            "pcloudn": np.where(cloudy, 0.97, 0.05),
            "pcloudo": np.where(cloudy, 0.95, 0.04),
            "bayes_in": cloudy.astype(int),
        }
    )


def write_day(
    root: Path, day: dt.date, *, products: int = 4, night: int = 1, failed: int = 0, sst: bool = True
) -> dict:
    """One processed day in ``root``: ``products`` products of which ``night`` went to night/ (not masked)
    and ``failed`` did not convert; its masks come from the versions DAY_VERSIONS names (default v1), and its
    first mask has a GeoTIFF on the first day. Returns the run summary the pipeline wrote."""
    data, rng = DataRoot(root), np.random.default_rng(day.toordinal())
    models = register_models(root)
    used = [models[name] for name in DAY_VERSIONS.get(day, ("v1",))]
    names = product_names(day, products)
    tables, sst_report = [], None
    for i, name in enumerate(names):
        if i < failed:
            continue  # no converted file: summarise_day lists the product as failed
        split = "night" if i < failed + night else "day"
        # summarise_day counts converted products by their files; the page never reads them
        converted = converted_path(data.hdf(day), split, name)
        converted.parent.mkdir(parents=True, exist_ok=True)
        converted.touch()
        if split == "night":
            continue  # inference masks day products only
        masks = data.masks(day)
        cloud = (rng.uniform(size=GRID) < rng.uniform(0.2, 0.7)).astype(float)
        values = write_mask(masks.mask(name), name, used, cloud, rng)
        if day == DAYS["plain"] and i == failed + night:
            geotiff.write_geotiff(masks.geotiff(name), cf_mask.read_mask(masks.mask(name)))
        false_colour = np.clip(cloud[..., None] * 0.7 + rng.uniform(0, 0.3, (*GRID, 3)), 0, 1)
        panels = [(false_colour, "false colour"), (values == cf_mask.CLOUDY, "model mask"), (cloud, "Bayesian mask")]
        write_png(masks.quicklook(name), panels, name)
        stac.add_mask_item(root, masks.mask(name), source_hdf=converted)
        tables.append(matchups(name, cloud, rng))
    # the match-up table lives in the archive, outside the data root
    matchup_table = matchups_path(root.with_name(f"{root.name}-archive"), day).with_suffix(".csv")
    if sst and tables:
        matchup_table.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(tables).to_csv(matchup_table, index=False)
        sst_report = compare(matchup_table, data.masks(day).folder, data.sst(day).folder)
    models = [{"kind": model.kind, "version": model.version, "sha256": model.sha256} for model in used]
    return summarise_day(names, DayRun(day, data), models=models, sst=sst_report)


def write_summaries(root: Path, first: dt.date, days: int, template_day: dt.date | None = None) -> None:
    """``days`` run summaries from ``first`` on, fast (no PNG, no mask): each a copy of one real day's
    summary (written by ``write_day``) with its date and figures varied, for timing the page on a year."""
    template_day = template_day or first
    template = write_day(root, template_day)
    rng = np.random.default_rng(0)
    for i in range(days):
        day = first + dt.timedelta(days=i)
        if day == template_day:
            continue
        summary = json.loads(json.dumps(template))
        summary["date"] = day.isoformat()
        summary["masked"] = int(rng.integers(50, 300))
        summary["converted"] = {"day": summary["masked"], "night": int(rng.integers(50, 300))}
        summary["products"] = summary["masked"] + summary["converted"]["night"]
        for mask, bias in (("bayesian", -0.2), ("model", -0.3)):
            summary["sst"][mask].update(median=bias + rng.normal(0, 0.05), robust_sd=0.3 + rng.uniform(0, 0.1))
        summary["sst"]["agreement"] = rng.uniform(0.8, 0.95)
        write_json(DataRoot(root).summary(day), summary)
