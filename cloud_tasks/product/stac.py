"""The static STAC catalogue on the data root (``DataRoot.catalogue``): an Item per mask product and per model.

Usage (each stage adds what it made, when it has finished)::

    from cloud_tasks.product import stac

    stac.add_mask_item(data_root, masks.mask(stem), source_hdf=hdf_path)  # after the mask, GeoTIFF, quicklook
    stac.add_model_items(data_root)  # after a model version is registered (every version of the registry)

Layout (``layout.CatalogueFiles``; relative links throughout, so the data root can move)::

    stac/catalog.json                                  root: children cloud-masks, cloud-mask-models
    stac/cloud-masks/collection.json                   extent of all masks; children: one catalogue per day
    stac/cloud-masks/YYYY/MM/DD/catalog.json           the day's items
    stac/cloud-masks/YYYY/MM/DD/<product>/<product>.json
    stac/cloud-mask-models/collection.json
    stac/cloud-mask-models/<version>/<version>.json

A mask Item: id = product name; geometry = the swath footprint (``footprint.swath_footprint``: simplified,
split at the antimeridian, closed over a pole); bbox; ``datetime`` = ``start_datetime`` (sensing start),
``end_datetime``; ``eo:cloud_cover`` (% of the valid pixels; absent when none is valid); platform,
constellation, instruments; ``cloud_tasks:models`` (version, sha256, kind) and ``cloud_tasks:threshold``;
assets ``data`` (the NetCDF mask), ``geotiff`` and ``overview`` (the quicklook) when those files exist beside
it (``layout.MaskFiles``), ``source`` (the converted HDF5) when given. A model Item (MLM extension): its kind
(``cloud_tasks:kind``), inputs (the kind's bands: S1..S9 by day; S7..S9 and the derived S8-S9, S7-S8 for the
thermal kind; value scaling from the version's recorded inputs), output (cloud probability, classes
clear/cloudy), architecture U-Net, hyperparameters = training options; assets ``model`` (``mlm:model``),
``metrics``, ``card``.

Every file is written atomically and only when its content changes: a re-run leaves the catalogue
byte-identical, and an Item added again replaces itself (no duplicates). Hidden index files (``.items.json``
per day, ``.days.json``) keep the extents, so adding an Item reads one day's index, not every Item; the
collection's bbox is the union of the days' (it holds every Item, though not always in the smallest box). One
writer at a time (a lock file), as masks of one day are made in parallel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

from cloud_tasks.atomic import write_json
from cloud_tasks.errors import InputError
from cloud_tasks.hdf import BT_CHANNELS, REFLECTANCE_CHANNELS
from cloud_tasks.layout import CatalogueFiles, DataRoot, MaskFiles
from cloud_tasks.ml.registration import channel_expression
from cloud_tasks.naming import ProductName
from cloud_tasks.product.cf_mask import MASK_MEANINGS, MaskProduct, read_mask
from cloud_tasks.product.footprint import json_ready, swath_footprint, union_bbox

MASKS, MODELS = "cloud-masks", "cloud-mask-models"  # collection ids
CATALOGUE_ID = "cloud-tasks"
JSON_TYPE = "application/json"
MEDIA_TYPES = {
    "data": "application/netcdf",
    "geotiff": "image/tiff; application=geotiff; profile=cloud-optimized",
    "overview": "image/png",
    "source": "application/x-hdf5",
    "model": "application/octet-stream; framework=keras",
    "metrics": JSON_TYPE,
    "card": "text/markdown",
}
ASSET_ROLES = {
    "data": ["data"],
    "geotiff": ["data"],
    "overview": ["overview", "visual"],
    "source": ["source"],
    "model": ["mlm:model"],
    "metrics": ["metadata"],
    "card": ["metadata"],
}
ASSET_TITLES = {
    "data": "Cloud mask, CF-1.10 / ACDD-1.3 NetCDF-4 (product of record)",
    "geotiff": "Cloud mask on a latitude/longitude grid, Cloud-Optimized GeoTIFF",
    "overview": "Quicklook: false colour, model mask, Bayesian mask",
    "source": "Converted SLSTR L1 RBT product (HDF5 input of the model)",
    "model": "Keras model",
    "metrics": "Held-out scores",
    "card": "Model card",
}
WHOLE_EARTH = [-180.0, -90.0, 180.0, 90.0]
_KIND_INPUTS = {
    "day": "reflectances and brightness temperatures",
    "thermal": "brightness temperatures",
}  # registry.KINDS


def add_mask_item(data_root: str | Path, mask_path: str | Path, *, source_hdf: str | Path | None = None) -> Path:
    """Add (or refresh) the Item of a mask product and the catalogues above it; return the Item's path."""
    mask = read_mask(mask_path)
    name = ProductName.parse(mask.product_name)
    files = DataRoot(data_root).catalogue
    day = name.start.date()
    item_path = files.item(MASKS, name.stem, day)
    assets = _mask_assets(Path(mask_path), name.stem, source_hdf)
    item = mask_item(mask, item_path, assets, files)
    with _locked(files):
        _store(item_path, item)
        entry = {"bbox": item["bbox"], "start": item["properties"]["start_datetime"]}
        entries = _update_index(files.day_index(MASKS, day), name.stem, entry | {"end": _end(item)})
        _store(files.day_catalogue(MASKS, day), _day_catalogue(files, day, sorted(entries)))
        days = _update_index(files.days_index(MASKS), day.isoformat(), _extent_of(entries.values()))
        _store(files.collection(MASKS), _masks_collection(files, days))
        _store(files.root, _root_catalogue(files))
    return item_path


def add_model_items(data_root: str | Path) -> list[Path]:
    """Add (or refresh) an Item per registered model version, and the models collection; return the Items' paths."""
    from cloud_tasks.registry import ModelRegistry

    files = DataRoot(data_root).catalogue
    items = {
        version.name: model_item(version, files.item(MODELS, version.name), files)
        for version in ModelRegistry(data_root).versions()
    }
    if not items:
        return []
    with _locked(files):
        for name, item in items.items():
            _store(files.item(MODELS, name), item)
        _store(files.collection(MODELS), _models_collection(files, items))
        _store(files.root, _root_catalogue(files))
    return [files.item(MODELS, name) for name in items]


# --- items --------------------------------------------------------------------------------------------------


def mask_item(mask: MaskProduct, item_path: Path, assets: dict[str, Path], files: CatalogueFiles) -> dict:
    """The STAC Item (a JSON-ready dict) of a mask product whose Item file is ``item_path``."""
    import pystac
    from pystac.extensions.eo import EOExtension

    name = ProductName.parse(mask.product_name)
    footprint = swath_footprint(mask.latitude, mask.longitude)
    start, stop = mask.sensing
    properties = {
        "title": f"Cloud mask of {name.stem}",
        "platform": f"sentinel-{name.mission[1:].lower()}",
        "constellation": "sentinel-3",
        "instruments": ["slstr"],
        "created": _text_time(mask.attrs.get("date_created")),
        "cloud_tasks:models": [{"version": m.version, "sha256": m.sha256, "kind": m.kind} for m in mask.models],
        "cloud_tasks:threshold": mask.threshold,
        "cloud_tasks:valid_fraction": round(float(mask.valid.mean()), 6),
        "cloud_tasks:software_version": _text(mask.attrs.get("software_version")),
    }
    item = pystac.Item(
        id=name.stem,
        geometry=footprint.geojson(),
        bbox=list(footprint.bbox),
        datetime=start,
        properties={key: value for key, value in properties.items() if value is not None},
        start_datetime=start,
        end_datetime=stop,
    )
    if mask.cloud_fraction is not None:  # over the valid pixels only
        EOExtension.ext(item, add_if_missing=True).cloud_cover = round(100 * mask.cloud_fraction, 3)
    _add_assets(item, item_path, assets)
    return _finish(item, item_path, files, MASKS, files.day_catalogue(MASKS, name.start.date()))


def model_item(version, item_path: Path, files: CatalogueFiles) -> dict:
    """The STAC Item (MLM extension) of a registered model version (``registry.Version``)."""
    import pystac
    from pystac.extensions.mlm import MLMExtension

    info = version.info
    if version.kind not in _KIND_INPUTS:
        raise InputError(version.files.version_info, f"kind must be one of {', '.join(_KIND_INPUTS)}")
    inputs = _model_inputs(info, version.files.version_info)
    properties = {
        "title": f"Cloud-mask U-Net {version.name} ({version.kind} model)",
        "description": f"U-Net predicting a per-pixel cloud probability from SLSTR {_KIND_INPUTS[version.kind]}, "
        f"trained against the {info.get('label')!s} label"
        + (f", for the pixels with {info['domain']}." if _text(info.get("domain")) else "."),
        "bands": [_band(item) for item in inputs],
        "mlm:name": f"cloud-tasks-unet-{version.name}",
        "mlm:architecture": "U-Net",
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "Keras",
        "mlm:pretrained": False,
        "mlm:input": [_model_input(version.kind, inputs, info.get("normalisation"))],
        "mlm:output": [_model_output()],
        "mlm:hyperparameters": info.get("options") if isinstance(info.get("options"), dict) else None,
        "cloud_tasks:model_sha256": version.sha256,
        "cloud_tasks:kind": version.kind,
        "cloud_tasks:label": info.get("label"),
        "cloud_tasks:period": info.get("period") or {},
        "cloud_tasks:normalisation": info.get("normalisation"),
    }
    item = pystac.Item(id=version.name, geometry=None, bbox=None, datetime=_registered_at(version), properties={})
    # absent, not empty: MLM refuses an empty mlm:hyperparameters
    item.properties.update({key: value for key, value in properties.items() if value not in (None, {})})
    MLMExtension.ext(item, add_if_missing=True)
    files_of = version.files
    assets = {"model": files_of.model, "metrics": files_of.metrics, "card": files_of.card}
    _add_assets(item, item_path, {key: path for key, path in assets.items() if path.is_file()})
    if "model" in item.assets:
        item.assets["model"].extra_fields["mlm:artifact_type"] = "keras.Model.save"
    return _finish(item, item_path, files, MODELS, files.collection(MODELS))


def _mask_assets(mask_path: Path, stem: str, source_hdf) -> dict[str, Path]:
    """The files an Item lists, those present: the mask, its GeoTIFF and quicklook (beside it), the source."""
    beside = MaskFiles(mask_path.parent)
    assets = {"data": mask_path, "geotiff": beside.geotiff(stem), "overview": beside.quicklook(stem)}
    if source_hdf is not None:
        assets["source"] = Path(source_hdf)
    return {key: path for key, path in assets.items() if path.is_file()}


def _add_assets(item, item_path: Path, assets: dict[str, Path]) -> None:
    import pystac

    for key, path in assets.items():
        href = _relative(path, item_path)
        asset = pystac.Asset(href=href, media_type=MEDIA_TYPES[key], roles=ASSET_ROLES[key], title=ASSET_TITLES[key])
        item.add_asset(key, asset)


def _finish(item, item_path: Path, files: CatalogueFiles, collection_id: str, parent: Path) -> dict:
    """The Item as a dict with its collection and relative root/parent/collection links."""
    value = item.to_dict(include_self_link=False, transform_hrefs=False)
    value["collection"] = collection_id
    value["links"] = [
        _link("root", files.root, item_path),
        _link("parent", parent, item_path),
        _link("collection", files.collection(collection_id), item_path),
    ]
    return json_ready(value)


def _relative(path: Path, document: Path) -> str:
    """``path`` relative to the folder of the JSON document that links to it (POSIX separators)."""
    return Path(os.path.relpath(Path(path).absolute(), Path(document).absolute().parent)).as_posix()


def _link(rel: str, target: Path, document: Path, title: str | None = None) -> dict:
    link = {"rel": rel, "href": _relative(target, document), "type": JSON_TYPE}
    return link | ({"title": title} if title else {})


def _text(value) -> str | None:
    """A text attribute read from a file, or None (absent or not text)."""
    return value if isinstance(value, str) and value.isprintable() else None


def _text_time(value) -> str | None:
    """An ISO 8601 time attribute read from a file, or None when it is not one."""
    try:
        return value if _text(value) and dt.datetime.fromisoformat(value.replace("Z", "+00:00")) else None
    except ValueError:
        return None


def _end(item: dict) -> str:
    return item["properties"].get("end_datetime") or item["properties"]["datetime"]


def _band(item: dict) -> dict:
    """A model input as a STAC band: an SLSTR channel, or a combination of them (``S8-S9``)."""
    (channel, *more) = item["terms"]
    if not more and item["terms"][channel] == 1:
        kind = "reflectance" if channel in REFLECTANCE_CHANNELS else "brightness temperature (K)"
        return {"name": item["name"], "description": f"SLSTR {channel} {kind}, 1 km nadir grid"}
    kind = "brightness temperatures (K)" if set(item["terms"]) <= set(BT_CHANNELS) else "channels"
    return {"name": item["name"], "description": f"SLSTR {channel_expression(item['terms'])}, of {kind}, 1 km grid"}


def _mlm_band(item: dict) -> str | dict:
    """A model input as an MLM band: its name, and how it is derived when it is not a channel."""
    if item["terms"] == {item["name"]: 1}:
        return item["name"]
    return {"name": item["name"], "format": "python", "expression": channel_expression(item["terms"])}


_OFFSET_RE = re.compile(r"^\s*r\s*-\s*([-+0-9.eE]+)\s*$")
_ZSCORE_RE = re.compile(r"^\s*\(\s*T\s*-\s*([-+0-9.eE]+)\s*\)\s*/\s*([-+0-9.eE]+)\s*$")


def _scaling(offset: float, scale: float) -> dict:
    """MLM value scaling of ``(value - offset) / scale``."""
    if scale == 1:
        return {"type": "offset", "value": offset}
    return {"type": "scale", "value": scale} if offset == 0 else {"type": "z-score", "mean": offset, "stddev": scale}


def _value_scaling(inputs: list[dict], normalisation) -> list[dict] | None:
    """MLM value scaling per band: from the recorded inputs (``normalisation.inputs``, checked), or from a version
    registered before them, its ``r - a`` and ``(T - m) / s``; None if unreadable."""
    if not isinstance(normalisation, dict):
        return None
    if normalisation.get("inputs") is not None:
        return [_scaling(item["offset"], item["scale"]) for item in inputs]
    offset = _OFFSET_RE.match(str(normalisation.get("reflectance", "")))
    zscore = _ZSCORE_RE.match(str(normalisation.get("brightness_temperature", "")))
    if offset is None or zscore is None:
        return None
    try:
        reflectance, mean, stddev = float(offset[1]), float(zscore[1]), float(zscore[2])
    except ValueError:
        return None
    return [
        _scaling(reflectance, 1) if item["name"] in REFLECTANCE_CHANNELS else _scaling(mean, stddev) for item in inputs
    ]


def _model_input(kind: str, inputs: list[dict], normalisation) -> dict:
    value = {
        "name": f"SLSTR {_KIND_INPUTS[kind]}",
        "bands": [_mlm_band(item) for item in inputs],
        "input": {
            "shape": [-1, -1, -1, len(inputs)],
            "dim_order": ["batch", "height", "width", "channel"],
            "data_type": "float32",
        },
        "description": "1 km nadir grid, any size that is a multiple of 8; missing values 0 after scaling",
    }
    scaling = _value_scaling(inputs, normalisation)
    return value | ({"value_scaling": scaling} if scaling else {})


def _model_output() -> dict:
    clear, cloudy = MASK_MEANINGS.split()
    return {
        "name": "cloud_probability",
        "tasks": ["semantic-segmentation"],
        "result": {
            "shape": [-1, -1, -1, 1],
            "dim_order": ["batch", "height", "width", "channel"],
            "data_type": "float32",
        },
        "description": "probability that the pixel is cloudy; cloudy where it reaches the mask's threshold",
        "classification:classes": [
            {"value": 0, "name": clear, "description": "probability below the threshold"},
            {"value": 1, "name": cloudy, "description": "probability at or above the threshold"},
        ],
    }


def _model_inputs(info: dict, source: Path) -> list[dict]:
    """The version's inputs (``data.input_spec``'s items: name, terms, offset, scale), checked (values read from a
    file): those its ``normalisation`` records, else (a version registered before them) its ``input_channels``,
    each a channel as it is."""
    known = REFLECTANCE_CHANNELS + BT_CHANNELS
    normalisation = info.get("normalisation")
    recorded = normalisation.get("inputs") if isinstance(normalisation, dict) else None
    if recorded is None:
        channels = info.get("input_channels", list(known))
        if not isinstance(channels, list) or not channels or any(c not in known for c in channels):
            raise InputError(source, f"input_channels must list channels of {', '.join(known)}")
        return [{"name": c, "terms": {c: 1.0}, "offset": 0.0, "scale": 1.0} for c in channels]
    if not isinstance(recorded, list) or not recorded or not all(_is_input(item, known) for item in recorded):
        raise InputError(source, f"normalisation inputs must be a name, terms of {', '.join(known)}, offset, scale")
    if info.get("input_channels", [item["name"] for item in recorded]) != [item["name"] for item in recorded]:
        raise InputError(source, "input_channels differ from the names of the normalisation inputs")
    return recorded


def _is_input(item, known: tuple[str, ...]) -> bool:
    """Whether a recorded model input is well formed: a short printable name, known channels, finite numbers."""

    def number(value) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

    return (
        isinstance(item, dict)
        and _text(item.get("name")) is not None
        and 0 < len(item["name"]) <= 32
        and isinstance(item.get("terms"), dict)
        and 0 < len(item["terms"]) <= len(known)
        and all(channel in known and number(c) for channel, c in item["terms"].items())
        and number(item.get("offset"))
        and number(item.get("scale"))
        and item["scale"] != 0
    )


def _registered_at(version) -> dt.datetime:
    """When the version was registered: its ``registered_at``, else (a version registered without one) the time
    its ``version.json`` was written (the folder is read-only: the same time on every run)."""
    value = version.info.get("registered_at")
    if value is None:
        return dt.datetime.fromtimestamp(version.files.version_info.stat().st_mtime, dt.UTC)
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(version.files.version_info, f"registered_at {str(value)[:40]!r} is not a time") from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


# --- catalogues and collections -----------------------------------------------------------------------------


def _extent_of(entries) -> dict:
    """The union of index entries (bbox, start, end)."""
    entries = list(entries)
    return {
        "bbox": list(union_bbox(e["bbox"] for e in entries)),
        "start": min(e["start"] for e in entries),
        "end": max(e["end"] for e in entries),
    }


def _day_catalogue(files: CatalogueFiles, day: dt.date, stems: list[str]) -> dict:
    path = files.day_catalogue(MASKS, day)
    links = [_link("root", files.root, path), _link("parent", files.collection(MASKS), path)]
    links += [_link("item", files.item(MASKS, stem, day), path) for stem in stems]
    return {
        "type": "Catalog",
        "stac_version": _stac_version(),
        "id": f"{MASKS}-{day.isoformat()}",
        "title": f"Cloud masks of {day.isoformat()}",
        "description": f"Cloud masks of the SLSTR products sensed on {day.isoformat()} (UTC)",
        "links": links,
    }


def _masks_collection(files: CatalogueFiles, days: dict) -> dict:
    path = files.collection(MASKS)
    extent = _extent_of(days.values())
    links = [_link("root", files.root, path), _link("parent", files.root, path)]
    links += [_link("child", files.day_catalogue(MASKS, dt.date.fromisoformat(d)), path, d) for d in sorted(days)]
    return _collection(
        MASKS,
        "SLSTR cloud masks",
        "Per-product cloud masks of Sentinel-3 SLSTR L1 RBT products (U-Net): CF-NetCDF, GeoTIFF, quicklook.",
        {"spatial": {"bbox": [extent["bbox"]]}, "temporal": {"interval": [[extent["start"], extent["end"]]]}},
        links,
    )


def _models_collection(files: CatalogueFiles, items: dict[str, dict]) -> dict:
    path = files.collection(MODELS)
    times = sorted(item["properties"]["datetime"] for item in items.values())
    links = [_link("root", files.root, path), _link("parent", files.root, path)]
    links += [_link("item", files.item(MODELS, name), path) for name in sorted(items, key=_version_number)]
    return _collection(
        MODELS,
        "Cloud-mask models",
        "The registered versions of the cloud-mask U-Net (STAC machine-learning-model extension).",
        {"spatial": {"bbox": [WHOLE_EARTH]}, "temporal": {"interval": [[times[0], times[-1]]]}},
        links,
    )


def _collection(collection_id: str, title: str, description: str, extent: dict, links: list) -> dict:
    return {
        "type": "Collection",
        "stac_version": _stac_version(),
        "id": collection_id,
        "title": title,
        "description": description,
        "license": "other",
        "keywords": ["cloud mask", "Sentinel-3", "SLSTR"],
        "extent": extent,
        "links": links,
    }


def _root_catalogue(files: CatalogueFiles) -> dict:
    path = files.root
    links = [_link("root", path, path)]
    for collection_id in (MASKS, MODELS):
        if files.collection(collection_id).is_file():
            links.append(_link("child", files.collection(collection_id), path))
    return {
        "type": "Catalog",
        "stac_version": _stac_version(),
        "id": CATALOGUE_ID,
        "title": "cloud-tasks",
        "description": "Cloud masks of Sentinel-3 SLSTR products and the models that made them.",
        "links": links,
    }


def _version_number(name: str) -> tuple[int, str]:
    digits = name[1:]
    return (int(digits), name) if name.startswith("v") and digits.isdigit() else (0, name)


def _stac_version() -> str:
    import pystac

    return pystac.get_stac_version()


# --- files --------------------------------------------------------------------------------------------------


def _store(path: Path, value: dict) -> None:
    """Write ``value`` as JSON (``atomic.write_json``), unless the file holds exactly that already."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
    try:
        if path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    write_json(path, value)


def _update_index(path: Path, key: str, entry: dict) -> dict:
    """Set ``key`` in a hidden JSON index (a dict of entries); return the whole index."""
    index = _read_index(path)
    index[key] = entry
    _store(path, index)
    return index


def _read_index(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"catalogue index cannot be read as JSON: {exc}") from None
    if not isinstance(index, dict) or not all(_is_entry(e) for e in index.values()):
        raise InputError(path, "catalogue index must map names to {bbox, start, end}")
    return index


def _is_entry(entry) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("bbox"), list)
        and len(entry["bbox"]) == 4
        and all(isinstance(v, int | float) for v in entry["bbox"])
        and all(isinstance(entry.get(k), str) for k in ("start", "end"))
    )


@contextlib.contextmanager
def _locked(files: CatalogueFiles) -> Iterator[None]:
    """One catalogue writer at a time (masks of a day are made by parallel tasks)."""
    files.folder.mkdir(parents=True, exist_ok=True)
    with files.lock.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
