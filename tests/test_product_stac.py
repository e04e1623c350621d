"""The static STAC catalogue: every document validates offline (stac-pydantic for the core, the stored extension
schemas for eo and MLM), mask footprints cover their valid pixels, links and assets resolve, extents follow what
the catalogue holds, and re-runs leave it byte-identical with no duplicates."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import netCDF4
import numpy as np
import pytest
import shapely
from referencing import Registry, Resource
from stac_pydantic import Catalog, Collection, Item
from test_product_cf_mask import PRODUCT, STEM, write_test_mask
from test_product_footprint import swath

from cloud_tasks.errors import InputError
from cloud_tasks.layout import DataRoot, ModelFiles
from cloud_tasks.product import cf_mask, geotiff, stac
from cloud_tasks.registry import ModelRegistry

SCHEMAS = Path(__file__).parent / "stac_schemas"
DAY = dt.date(2024, 6, 1)
STEM_CROSSING = "S3B_SL_1_RBT____20240601T221000_20240601T221300_20240602T020000_0179_085_211_3719_LN2_O_NT_004"
STEM_NEXT_DAY = "S3A_SL_1_RBT____20240602T093000_20240602T093300_20240602T130000_0179_113_093_2630_LN2_O_NT_004"


def _schema_registry() -> Registry:
    """The stored extension schemas under the URLs documents name them by (nothing is fetched)."""
    resources = []
    for path in SCHEMAS.glob("*.json"):
        name, version = path.stem.rsplit("-", 1)
        url = f"https://stac-extensions.github.io/{name}/{version}/schema.json"
        resources.append((url, Resource.from_contents(json.loads(path.read_text()))))
    return Registry().with_resources(resources)


REGISTRY = _schema_registry()


def validate(document: dict) -> None:
    """Core structure with stac-pydantic, each declared extension with its stored JSON schema."""
    {"Feature": Item, "Collection": Collection, "Catalog": Catalog}[document["type"]].model_validate(document)
    for url in document.get("stac_extensions", []):
        jsonschema.Draft7Validator(REGISTRY.contents(url), registry=REGISTRY).validate(document)


def documents(data_root: Path) -> dict[Path, dict]:
    folder = DataRoot(data_root).catalogue.folder
    return {p: json.loads(p.read_text()) for p in sorted(folder.rglob("*.json")) if not p.name.startswith(".")}


def snapshot(data_root: Path) -> dict[str, tuple[bytes, int]]:
    folder = DataRoot(data_root).catalogue.folder
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def resolved(document_path: Path, href: str) -> Path:
    return (document_path.parent / href).resolve()


def within(box, span: tuple[float, float]) -> bool:
    """Whether a bbox's longitudes lie in the span west..east, going east (either may cross the antimeridian)."""
    west = span[0]
    length = (span[1] - west) % 360
    return all((lon - west) % 360 <= length + 1e-9 for lon in (box[0], box[2])) and (box[2] - box[0]) % 360 <= length


def make_masks(data_root: Path) -> dict[str, Path]:
    """Three masks on the data root: an ordinary one (with GeoTIFF and quicklook), one across the antimeridian,
    one of the next day; each with its converted HDF5 file."""
    made = {}
    for stem, place in (
        (STEM, (40.0, 10.0, 192.0)),
        (STEM_CROSSING, (-20.0, 179.95, 12.0)),
        (STEM_NEXT_DAY, (60, -30, 12)),
    ):
        name_day = dt.date(int(stem[16:20]), int(stem[20:22]), int(stem[22:24]))
        masks = DataRoot(data_root).masks(name_day)
        start = dt.datetime.strptime(stem[16:31], "%Y%m%dT%H%M%S")
        product = PRODUCT | {
            "product_name": stem,
            "sensing_start": f"{start:%Y-%m-%dT%H:%M:%S}.250000Z",
            "sensing_stop": f"{start + dt.timedelta(seconds=180):%Y-%m-%dT%H:%M:%S}.0Z",
        }
        made[stem] = write_test_mask(masks.mask(stem), *swath(*place), product=product, source=f"{stem}.h5")
        hdf = DataRoot(data_root).hdf_split(name_day) / f"{stem}.h5"
        hdf.parent.mkdir(parents=True, exist_ok=True)
        hdf.write_bytes(b"converted")
    masks = DataRoot(data_root).masks(DAY)
    geotiff.write_geotiff(masks.geotiff(STEM), cf_mask.read_mask(made[STEM]))
    masks.quicklook(STEM).write_bytes(b"png")
    return made


def add_all(data_root: Path, made: dict[str, Path]) -> None:
    for stem, path in made.items():
        hdf = DataRoot(data_root).hdf_split(cf_mask.read_mask(path).sensing[0].date()) / f"{stem}.h5"
        stac.add_mask_item(data_root, path, source_hdf=hdf)


def test_mask_items_validate_and_cover_their_valid_pixels(tmp_path):
    made = make_masks(tmp_path)
    add_all(tmp_path, made)
    docs = documents(tmp_path)
    for document in docs.values():
        validate(document)
    files = DataRoot(tmp_path).catalogue
    items = {doc["id"]: (path, doc) for path, doc in docs.items() if doc["type"] == "Feature"}
    assert sorted(items) == sorted(made)
    for stem, (path, item) in items.items():
        mask = cf_mask.read_mask(made[stem])
        geometry = shapely.geometry.shape(item["geometry"])
        valid = mask.valid
        assert geometry.covers(shapely.points(mask.longitude[valid], mask.latitude[valid])).all()
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(100 * mask.cloud_fraction, abs=1e-3)
        assert item["properties"]["start_datetime"].endswith(".250000Z") and item["collection"] == stac.MASKS
        assert item["properties"]["platform"] in ("sentinel-3a", "sentinel-3b")
        assert item["properties"]["cloud_tasks:models"] == [{"version": "v3", "sha256": "ab" * 32, "kind": "day"}]
        for asset in item["assets"].values():
            assert resolved(path, asset["href"]).is_file()
        for link in item["links"]:
            assert resolved(path, link["href"]).is_file()
    assert set(items[STEM][1]["assets"]) == {"data", "geotiff", "overview", "source"}
    assert set(items[STEM_CROSSING][1]["assets"]) == {"data", "source"}
    assert items[STEM_CROSSING][1]["geometry"]["type"] == "MultiPolygon"
    assert items[STEM_CROSSING][1]["bbox"][0] > items[STEM_CROSSING][1]["bbox"][2]

    collection = docs[files.collection(stac.MASKS)]
    west, south, east, north = collection["extent"]["spatial"]["bbox"][0]
    boxes = [item["bbox"] for _, item in items.values()]
    assert all(within(box, (west, east)) for box in boxes) and west > east  # 30 W, 10 E and 180: across it
    assert (east - west) % 360 < 240  # not the whole circle
    assert south == min(b[1] for b in boxes) and north == max(b[3] for b in boxes)
    start, end = collection["extent"]["temporal"]["interval"][0]
    assert start == items[STEM][1]["properties"]["start_datetime"]
    assert end == items[STEM_NEXT_DAY][1]["properties"]["end_datetime"]
    day_links = [link["href"] for link in docs[files.day_catalogue(stac.MASKS, DAY)]["links"] if link["rel"] == "item"]
    assert len(day_links) == 2 and len([link for link in collection["links"] if link["rel"] == "child"]) == 2
    assert [link["rel"] for link in docs[files.root]["links"]] == ["root", "child"]


def test_re_runs_leave_the_catalogue_byte_identical_without_duplicates(tmp_path):
    made = make_masks(tmp_path)
    add_all(tmp_path, made)
    before = snapshot(tmp_path)
    add_all(tmp_path, made)
    assert snapshot(tmp_path) == before, "nothing rewritten"

    masks = DataRoot(tmp_path).masks(DAY)  # a GeoTIFF made later: its item changes, nothing is duplicated
    geotiff.write_geotiff(masks.geotiff(STEM_CROSSING), cf_mask.read_mask(made[STEM_CROSSING]))
    stac.add_mask_item(
        tmp_path, made[STEM_CROSSING], source_hdf=DataRoot(tmp_path).hdf_split(DAY) / f"{STEM_CROSSING}.h5"
    )
    after = snapshot(tmp_path)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {f"{stac.MASKS}/2024/06/01/{STEM_CROSSING}/{STEM_CROSSING}.json"}
    files = DataRoot(tmp_path).catalogue
    day = json.loads(files.day_catalogue(stac.MASKS, DAY).read_text())
    hrefs = [link["href"] for link in day["links"] if link["rel"] == "item"]
    assert len(hrefs) == len(set(hrefs)) == 2


def register_versions(data_root: Path, normalisations: list) -> None:
    registry = ModelRegistry(data_root)
    for n, normalisation in enumerate(normalisations, start=1):
        training = ModelFiles(data_root / f"training-{n}")
        training.folder.mkdir(parents=True)
        training.model.write_bytes(b"model %d" % n)
        info = {
            "model_sha256": f"{n:02d}" * 32,
            "registered_at": f"2024-06-0{n}T12:00:00+00:00",
            "period": {"start": "2024-05-01", "end": "2024-06-01"},
            "label": "bayes",
            "options": {"epochs": 30, "batch_size": 32},
            "input_channels": ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9"],
            "normalisation": normalisation,
        }

        def extras(staged: ModelFiles) -> None:
            staged.metrics.write_text('{"candidate": {"accuracy": 0.9}}')
            staged.card.write_text("# card\n")

        registry.register(training, key=f"key-{n}", info=info, write_extras=extras)


def test_model_items_use_the_mlm_extension(tmp_path):
    recorded = {"reflectance": "r - 0.5", "brightness_temperature": "(T - 270.0) / 22.0", "missing": "0"}
    register_versions(tmp_path, [recorded, {"reflectance": "something else"}])
    paths = stac.add_model_items(tmp_path)
    assert [p.parent.name for p in paths] == ["v1", "v2"]
    for document in documents(tmp_path).values():
        validate(document)
    v1, v2 = (json.loads(p.read_text()) for p in paths)
    assert "https://stac-extensions.github.io/mlm/v1.4.0/schema.json" in v1["stac_extensions"]
    model_input = v1["properties"]["mlm:input"][0]
    assert model_input["bands"] == [f"S{n}" for n in range(1, 10)] and model_input["input"]["shape"][-1] == 9
    assert model_input["value_scaling"][0] == {"type": "offset", "value": 0.5}
    assert model_input["value_scaling"][8] == {"type": "z-score", "mean": 270.0, "stddev": 22.0}
    assert "value_scaling" not in v2["properties"]["mlm:input"][0]  # an unreadable normalisation is not guessed
    assert v1["properties"]["mlm:architecture"] == "U-Net" and v1["properties"]["mlm:hyperparameters"]["epochs"] == 30
    assert v1["assets"]["model"]["roles"] == ["mlm:model"] and v1["assets"]["model"]["mlm:artifact_type"]
    assert resolved(paths[0], v1["assets"]["model"]["href"]).read_bytes() == b"model 1"
    before = snapshot(tmp_path)
    assert stac.add_model_items(tmp_path) == paths and snapshot(tmp_path) == before


def test_the_validation_is_not_vacuous(tmp_path):
    register_versions(tmp_path, [{"reflectance": "r - 0.5", "brightness_temperature": "(T - 270) / 22"}])
    model = json.loads(stac.add_model_items(tmp_path)[0].read_text())
    del model["assets"]["model"]["mlm:artifact_type"]
    with pytest.raises(jsonschema.ValidationError, match="artifact_type"):
        validate(model)
    path = stac.add_mask_item(tmp_path, make_masks(tmp_path)[STEM])
    item = json.loads(path.read_text())
    item["properties"]["eo:cloud_cover"] = 150
    with pytest.raises(jsonschema.ValidationError):
        validate(item)
    del item["properties"]["datetime"]
    with pytest.raises(ValueError):
        validate(item)


def test_a_mask_without_valid_pixels_has_no_cloud_cover_and_a_damaged_index_is_named(tmp_path):
    masks = DataRoot(tmp_path).masks(DAY)
    nothing_valid = np.full((60, 80), np.nan, np.float32)
    path = write_test_mask(masks.mask(STEM), probability=nothing_valid)
    item = json.loads(stac.add_mask_item(tmp_path, path).read_text())
    validate(item)
    assert "eo:cloud_cover" not in item["properties"] and item["properties"]["cloud_tasks:valid_fraction"] == 0
    assert item["properties"]["created"] == "2024-06-02T03:04:05.000000Z"
    with netCDF4.Dataset(path, "a") as ds:
        ds.date_created = "the day before yesterday"  # copied into the Item only when it is a time
    item = json.loads(stac.add_mask_item(tmp_path, path).read_text())
    assert "created" not in item["properties"]
    validate(item)
    index = DataRoot(tmp_path).catalogue.day_index(stac.MASKS, DAY)
    index.write_text('{"x": {"bbox": "everywhere"}}')
    with pytest.raises(InputError, match=r"\.items\.json"):
        stac.add_mask_item(tmp_path, path)
