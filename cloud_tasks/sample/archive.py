"""A sample archive: zipped products in the CEDA layout (``ProductName.archive_path``) and the day's match-ups.

``make_sample_archive(OUT, date, N)`` writes ``OUT/sentinel3a/data/SLSTR/L1_RBT/YYYY/MM/DD/<name>.zip`` per
product and ``layout.matchups_path(OUT, date)``. Deterministic for a seed: byte-identical zips.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
import zipfile
from pathlib import Path

from cloud_tasks.atomic import atomic_file, output_dir
from cloud_tasks.layout import matchups_path
from cloud_tasks.naming import MISSIONS, ProductName
from cloud_tasks.sample.matchups import matchups_for_scene, write_matchups
from cloud_tasks.sample.product import PRODUCT_FILES, write_product
from cloud_tasks.sample.scene import Scene, make_scene
from cloud_tasks.sample.specs import product_specs

log = logging.getLogger(__name__)


def _expected_members(name: ProductName) -> list[str]:
    return [f"{name.sen3}/"] + [f"{name.sen3}/{f}" for f in PRODUCT_FILES]


def _is_complete_zip(path: Path, name: ProductName) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return sorted(zf.namelist()) == _expected_members(name)
    except (OSError, zipfile.BadZipFile):
        return False


def _zip_folder(folder: Path, zip_path: Path, name: ProductName, when: dt.datetime) -> None:
    """Zip a product folder deterministically: sorted members, fixed dates, NetCDF stored (already compressed)."""
    date_time = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    with atomic_file(zip_path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        top = zipfile.ZipInfo(f"{name.sen3}/", date_time)
        top.external_attr = (0o40755 << 16) | 0x10
        zf.writestr(top, b"")
        for path in sorted(folder.iterdir()):
            info = zipfile.ZipInfo(f"{name.sen3}/{path.name}", date_time)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED if path.suffix == ".xml" else zipfile.ZIP_STORED
            zf.writestr(info, path.read_bytes(), compresslevel=6)


def write_product_zip(scene: Scene, zip_path: str | Path) -> Path:
    """Write a generated product as a CEDA-style zip holding one ``<name>.SEN3/`` folder."""
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=zip_path.parent) as staging:
        folder = Path(staging) / scene.spec.name.sen3
        folder.mkdir()
        write_product(scene, folder)
        _zip_folder(folder, zip_path, scene.spec.name, scene.spec.name.start)
    return zip_path


def make_sample_archive(
    out: str | Path,
    date: dt.date | str,
    n_products: int,
    missions=MISSIONS,
    grid: str = "small",
    seed: int = 0,
) -> list[Path]:
    """Write ``n_products`` synthetic zipped products under ``out`` (CEDA layout) and the day's match-up table.

    Deterministic for a seed (byte-identical zips); an existing complete zip is kept as it is.
    Returns the zip paths, sorted.
    """
    import pandas as pd

    date = dt.date.fromisoformat(date) if isinstance(date, str) else date
    specs = product_specs(date, n_products, tuple(missions), grid, seed)
    out = output_dir(out)
    zips, tables = [], []
    for spec in specs:
        began = time.perf_counter()
        scene = make_scene(spec)
        zip_path = spec.name.archive_path(out)
        if _is_complete_zip(zip_path, spec.name):
            log.info("%s exists, kept", zip_path.name)
        else:
            write_product_zip(scene, zip_path)
            log.info(
                "wrote %s (%s, cloud %.0f %%, %.1f s)",
                zip_path.name,
                spec.kind,
                100 * scene.cloud_fraction,
                time.perf_counter() - began,
            )
        zips.append(zip_path)
        tables.append(matchups_for_scene(scene))
    table = pd.concat(tables, ignore_index=True)
    write_matchups(matchups_path(out, date), table)
    return sorted(zips)
