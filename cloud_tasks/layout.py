"""Where everything lives: the one module that names the pipeline's folders and files.

Data root layout (keyed by date and product, never by run id)::

    <data_root>/extracted/YYYY/MM/DD/<product>.SEN3    extracted products
    <data_root>/hdf/YYYY/MM/DD/{day,night}/<product>.h5 converted products
    <data_root>/models/YYYY/MM/DD/                     model trained on that day (ModelFiles)
    <data_root>/registry/                              model versions and the production alias (RegistryFiles)
    <data_root>/masks/YYYY/MM/DD/<product>.{nc,png,tif} CF-NetCDF mask, quicklook, GeoTIFF if asked (MaskFiles)
    <data_root>/stac/                                   static STAC catalogue (CatalogueFiles)
    <data_root>/sst/YYYY/MM/DD/                         SST comparison (SstFiles)
    <data_root>/summaries/YYYY-MM-DD.json               run summary

Archive side: ``<archive_root>/matchups/sst_matchups_YYYYMMDD.h5`` (the day's SST match-up table).

Stages, the UI page, the benchmarks and the tests take every name from here; nothing else spells one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cloud_tasks.errors import InputError

SPLITS = ("day", "night")  # converted products are filed by day/night split
DAY_SPLIT, NIGHT_SPLIT = SPLITS
HDF_SUFFIX = ".h5"
SEN3_SUFFIX = ".SEN3"
ZIP_SUFFIX = ".zip"
QUICKLOOK_SUFFIX = ".png"
NETCDF_SUFFIX = ".nc"
GEOTIFF_SUFFIX = ".tif"
JSON_SUFFIX = ".json"
SUMMARY_GLOB = "????-??-??.json"


def inside(folder: str | Path, path: str | Path) -> Path:
    """``path``, after checking that it lies inside ``folder`` (symlinks resolved): outputs never escape OUT."""
    folder, path = Path(folder), Path(path)
    resolved_folder = folder.resolve()
    resolved = path.resolve()
    if resolved != resolved_folder and resolved_folder not in resolved.parents:
        raise InputError(path, f"output would be written outside {folder}")
    return path


def converted_path(hdf_dir: str | Path, split: str, product_stem: str) -> Path:
    """Where ``convert-hdf`` writes a product's HDF5 file under its output folder."""
    return inside(hdf_dir, Path(hdf_dir) / split / f"{product_stem}{HDF_SUFFIX}")


def matchups_path(archive_root: str | Path, day: dt.date) -> Path:
    """The SST match-up table of a day, beside the archive's products."""
    return Path(archive_root) / "matchups" / f"sst_matchups_{day:%Y%m%d}.h5"


@dataclass(frozen=True)
class ModelFiles:
    """The files of a training run's output folder (``train``'s OUT)."""

    folder: Path

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def model(self) -> Path:  # written last: its presence marks a finished run
        return self.folder / "model.keras"

    @property
    def params(self) -> Path:
        return self.folder / "params.json"

    @property
    def history_csv(self) -> Path:
        return self.folder / "history.csv"

    @property
    def history_json(self) -> Path:
        return self.folder / "history.json"

    @property
    def curves(self) -> Path:
        return self.folder / "training_curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.folder / "logs"

    @property
    def lock(self) -> Path:
        return self.folder / ".lock"

    # written when a training run is registered as a model version
    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.json"

    @property
    def card(self) -> Path:
        return self.folder / "model_card.md"

    @property
    def version_info(self) -> Path:  # the version's name, key and provenance (JSON)
        return self.folder / "version.json"


@dataclass(frozen=True)
class RegistryFiles:
    """The model registry: immutable version folders, the ``production`` alias and its promotion history.

    ::

        <registry>/versions/vN/           a registered model (ModelFiles: model, params, history, metrics, card)
        <registry>/training/<key>/        a training run's working folder (resumable), copied into a version
        <registry>/production.json        the alias: which day model masks new days (replaced atomically)
        <registry>/production-thermal.json  the same for the thermal (night) model
        <registry>/promotions.jsonl       every promotion, one JSON line each (who, when, why)
    """

    folder: Path

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def versions(self) -> Path:
        return self.folder / "versions"

    def version(self, name: str) -> ModelFiles:
        return ModelFiles(inside(self.versions, self.versions / name))

    def training(self, key: str) -> ModelFiles:
        return ModelFiles(inside(self.folder / "training", self.folder / "training" / key))

    def training_list(self, key: str, kind: str) -> Path:
        """The file list of a training run's ``train`` or ``holdout`` products (converted HDF5 paths)."""
        return inside(self.folder / "training", self.folder / "training" / f"{key}.{kind}.txt")

    def production(self, kind: str = DAY_SPLIT) -> Path:
        """The production alias of a model kind (``day`` or ``thermal``)."""
        return self.folder / ("production.json" if kind == DAY_SPLIT else f"production-{kind}.json")

    @property
    def promotions(self) -> Path:
        return self.folder / "promotions.jsonl"

    @property
    def lock(self) -> Path:
        return self.folder / ".lock"


@dataclass(frozen=True)
class MaskFiles:
    """The files of an ``inference`` output folder: per product a mask (the CF-1.10 / ACDD-1.3 NetCDF-4 product
    of record, ``cloud_tasks.product.cf_mask``), a quicklook and, when asked for, a GeoTIFF."""

    folder: Path

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))

    def mask(self, product_stem: str) -> Path:
        """The mask product (NetCDF-4)."""
        return inside(self.folder, self.folder / f"{product_stem}{NETCDF_SUFFIX}")

    def quicklook(self, product_stem: str) -> Path:
        return inside(self.folder, self.folder / f"{product_stem}{QUICKLOOK_SUFFIX}")

    def netcdf(self, product_stem: str) -> Path:
        """The same file as ``mask`` (its name before the NetCDF became the mask of record)."""
        return self.mask(product_stem)

    def geotiff(self, product_stem: str) -> Path:
        """The mask as a Cloud-Optimized GeoTIFF on a latitude/longitude grid (``cloud_tasks.product.geotiff``)."""
        return inside(self.folder, self.folder / f"{product_stem}{GEOTIFF_SUFFIX}")

    def masks(self) -> list[Path]:
        """The mask files present, sorted (hidden temporaries excluded)."""
        return self._present(NETCDF_SUFFIX)

    def netcdfs(self) -> list[Path]:
        """The same files as ``masks``."""
        return self.masks()

    def quicklooks(self) -> list[Path]:
        return self._present(QUICKLOOK_SUFFIX)

    def _present(self, suffix: str) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob(f"*{suffix}") if not p.name.startswith("."))


@dataclass(frozen=True)
class SstFiles:
    """The result set of an ``sst-comp`` output folder."""

    folder: Path

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def summary(self) -> Path:
        return self.folder / "summary.json"

    @property
    def table(self) -> Path:
        return self.folder / "matchups_compared.csv"

    @property
    def histogram(self) -> Path:
        return self.folder / "sst_histogram.png"


@dataclass(frozen=True)
class CatalogueFiles:
    """The static STAC catalogue (``cloud_tasks.product.stac``), relative links throughout::

    <catalogue>/catalog.json                                  root catalogue
    <catalogue>/<collection>/collection.json                  a collection (masks, models)
    <catalogue>/<collection>/<item>/<item>.json               an item (a model version)
    <catalogue>/<collection>/YYYY/MM/DD/catalog.json          a day's catalogue (masks)
    <catalogue>/<collection>/YYYY/MM/DD/<item>/<item>.json    an item of that day (a product's mask)
    <catalogue>/<collection>/.days.json, YYYY/MM/DD/.items.json   extents kept for cheap updates
    """

    folder: Path

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def root(self) -> Path:
        return self.folder / "catalog.json"

    def collection(self, collection_id: str) -> Path:
        return inside(self.folder, self.folder / collection_id / "collection.json")

    def day_catalogue(self, collection_id: str, day: dt.date) -> Path:
        return inside(self.folder, self.folder / collection_id / f"{day:%Y/%m/%d}" / "catalog.json")

    def item(self, collection_id: str, item_id: str, day: dt.date | None = None) -> Path:
        """An item's file: under its day's catalogue when ``day`` is given, else directly in the collection."""
        folder = self.folder / collection_id / (f"{day:%Y/%m/%d}" if day else "")
        return inside(self.folder, folder / item_id / f"{item_id}{JSON_SUFFIX}")

    def day_index(self, collection_id: str, day: dt.date) -> Path:
        return inside(self.folder, self.folder / collection_id / f"{day:%Y/%m/%d}" / ".items.json")

    def days_index(self, collection_id: str) -> Path:
        return inside(self.folder, self.folder / collection_id / ".days.json")

    @property
    def lock(self) -> Path:
        return self.folder / ".lock"


@dataclass(frozen=True)
class DataRoot:
    """Where each stage of the pipeline keeps its outputs for a given day."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def _dated(self, store: str, day: dt.date) -> Path:
        return self.root / store / f"{day:%Y/%m/%d}"

    def extracted(self, day: dt.date) -> Path:
        return self._dated("extracted", day)

    def extracted_product(self, day: dt.date, product_stem: str) -> Path:
        return self.extracted(day) / f"{product_stem}{SEN3_SUFFIX}"

    def hdf(self, day: dt.date) -> Path:
        return self._dated("hdf", day)

    def hdf_split(self, day: dt.date, split: str = DAY_SPLIT) -> Path:
        return self.hdf(day) / split

    def model(self, day: dt.date) -> ModelFiles:
        return ModelFiles(self._dated("models", day))

    def masks(self, day: dt.date) -> MaskFiles:
        return MaskFiles(self._dated("masks", day))

    def mask_days(self) -> list[dt.date]:
        """The days that have a masks folder, oldest first (folders not named as a date are no day)."""
        store, days = self.root / "masks", []
        for folder in store.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]"):
            try:
                day = dt.date(*(int(part) for part in folder.relative_to(store).parts))
            except ValueError:  # 2024/02/31
                continue
            if folder.is_dir() and self.masks(day).folder == folder:
                days.append(day)
        return sorted(days)

    def sst(self, day: dt.date) -> SstFiles:
        return SstFiles(self._dated("sst", day))

    @property
    def registry(self) -> RegistryFiles:
        return RegistryFiles(self.root / "registry")

    @property
    def catalogue(self) -> CatalogueFiles:
        return CatalogueFiles(self.root / "stac")

    @property
    def summaries(self) -> Path:
        return self.root / "summaries"

    def summary(self, day: dt.date) -> Path:
        return self.summaries / f"{day:%Y-%m-%d}.json"

    def summary_files(self) -> list[Path]:
        """The run summaries present, oldest day first."""
        return sorted(self.summaries.glob(SUMMARY_GLOB))
