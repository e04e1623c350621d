"""The stages make issue 16's products from real files: ``convert-hdf`` (geolocation from ``geodetic_in``) ->
``inference`` (the CF-NetCDF mask of record, quicklook, GeoTIFF on request) -> ``catalogue`` (STAC items).

Generated sample products (day, night and twilight scenes) and the completed real product are converted and
masked with a small real U-Net (untrained: what is tested is the product, not the model's skill), registered
in the data root's model registry as the daily DAG's models are.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from models import install_model
from products import SAMPLE_DATE
from test_product_cf_mask import high_priority_failures
from test_product_stac import documents, validate

from cloud_tasks import catalogue
from cloud_tasks.cli import main
from cloud_tasks.convert import convert_products
from cloud_tasks.hdf import N_CHANNELS, read_converted
from cloud_tasks.layout import DAY_SPLIT, DataRoot
from cloud_tasks.ml.inference import NO_DATA_SHADE, run_inference, sha256
from cloud_tasks.naming import ProductName
from cloud_tasks.product import cf_mask, stac

PIXELS = ((0, 0), (37, 101), (143, 200), (287, 383))  # chosen pixels of the small grid (288 x 384)
REAL_PIXELS = ((0, 0), (600, 750), (1197, 1499), (311, 998))
REAL_DAY = dt.date(2017, 3, 15)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A small real U-Net of this package (untrained)."""
    import keras

    from cloud_tasks.ml.model import build_unet, save_model

    keras.utils.set_random_seed(0)
    return save_model(build_unet(filters=(4, 8, 16), bottleneck=16), tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="module")
def data_root(sample_products, small_model, tmp_path_factory) -> Path:
    """A data root with the sample day converted and masked by registry version v1 (GeoTIFFs asked for)."""
    root = tmp_path_factory.mktemp("data")
    data = DataRoot(root)
    convert_products(sample_products, data.hdf(SAMPLE_DATE))
    version = install_model(root, small_model)
    run_inference(version.files.model, [data.hdf_split(SAMPLE_DATE)], data.masks(SAMPLE_DATE).folder, geotiff=True)
    return root


@pytest.fixture(scope="module")
def real_data_root(real_product, small_model, tmp_path_factory) -> Path:
    """A data root with the completed real product converted and masked (no GeoTIFF)."""
    root = tmp_path_factory.mktemp("real-data")
    data = DataRoot(root)
    convert_products([real_product], data.hdf(REAL_DAY))
    version = install_model(root, small_model)
    run_inference(version.files.model, [data.hdf_split(REAL_DAY)], data.masks(REAL_DAY).folder)
    return root


def geodetic_in(product: Path) -> tuple[np.ndarray, np.ndarray]:
    """latitude_in, longitude_in as netCDF4 decodes them (their own scale, offset and fill; NaN at fill)."""
    with netCDF4.Dataset(product / "geodetic_in.nc") as ds:
        return tuple(np.ma.filled(ds[f"{n}_in"][...].astype(np.float64), np.nan) for n in ("latitude", "longitude"))


def stem_of(product: Path) -> str:
    return ProductName.parse(product).stem


def masked_products(sample_products: list[Path], root: Path) -> dict[Path, Path]:
    """Source product -> its mask, for the products that were masked (the day split)."""
    masks = DataRoot(root).masks(SAMPLE_DATE)
    return {p: masks.mask(stem_of(p)) for p in sample_products if masks.mask(stem_of(p)).is_file()}


def twilight_mask(sample_products, data_root) -> cf_mask.MaskProduct:
    """The masked product with the most pixels without valid input (the twilight scene)."""
    masks = [cf_mask.read_mask(path) for path in masked_products(sample_products, data_root).values()]
    return min(masks, key=lambda mask: mask.valid.mean())


def test_day_products_are_masked_as_netcdf_with_quicklooks_and_geotiffs(sample_products, data_root):
    masks, hdf = DataRoot(data_root).masks(SAMPLE_DATE), DataRoot(data_root).hdf_split(SAMPLE_DATE)
    day_stems = sorted(p.stem for p in hdf.glob("*.h5"))
    assert len(day_stems) == 5, "the sample's day and twilight products (the night one is not masked)"
    assert [p.stem for p in masks.masks()] == day_stems and {p.suffix for p in masks.masks()} == {".nc"}
    assert sorted(p.name for p in masks.folder.iterdir()) == sorted(
        f"{stem}{suffix}" for stem in day_stems for suffix in (".nc", ".png", ".tif")
    )


def test_mask_geolocation_is_the_generated_products_geodetic_in(sample_products, data_root):
    masked = masked_products(sample_products, data_root)
    assert len(masked) == 5
    for product, path in masked.items():
        latitude, longitude = geodetic_in(product)
        mask = cf_mask.read_mask(path)
        for row, column in PIXELS:
            assert mask.latitude[row, column] == latitude[row, column]
            assert mask.longitude[row, column] == longitude[row, column]
        assert np.array_equal(mask.latitude, latitude) and np.array_equal(mask.longitude, longitude)


def test_mask_geolocation_is_the_completed_real_products_geodetic_in(real_product, real_data_root):
    latitude, longitude = geodetic_in(real_product)
    mask = cf_mask.read_mask(DataRoot(real_data_root).masks(REAL_DAY).mask(stem_of(real_product)))
    assert mask.latitude.shape == (1198, 1500)
    for row, column in REAL_PIXELS:
        assert mask.latitude[row, column] == latitude[row, column]
        assert mask.longitude[row, column] == longitude[row, column]
    assert mask.attrs["time_coverage_start"] == "2017-03-15T11:34:20.831396Z"
    assert mask.attrs["source_product"] == real_product.name and mask.attrs["platform"] == "Sentinel-3A"


def test_the_mask_records_its_model_version_threshold_and_source(sample_products, data_root, small_model):
    path = next(iter(masked_products(sample_products, data_root).values()))
    mask = cf_mask.read_mask(path)
    assert mask.models == (cf_mask.Model("v1", sha256(small_model), "day"),) and mask.threshold == 0.5
    assert mask.attrs["model_version"] == "v1" and mask.attrs["source"].endswith(f"converted as {path.stem}.h5")
    converted = read_converted(DataRoot(data_root).hdf_split(SAMPLE_DATE) / f"{path.stem}.h5", labels=())
    start = dt.datetime.fromisoformat(converted.attrs["sensing_start"].replace("Z", "+00:00"))
    assert mask.sensing[0] == start


@pytest.mark.parametrize("which", ["generated", "twilight", "real"])
def test_the_produced_mask_passes_the_cf_and_acdd_checks(which, sample_products, data_root, real_data_root):
    if which == "real":
        path = DataRoot(real_data_root).masks(REAL_DAY).masks()[0]
    else:
        masks = [cf_mask.read_mask(p) for p in masked_products(sample_products, data_root).values()]
        path = (masks[0] if which == "generated" else min(masks, key=lambda m: m.valid.mean())).path
    assert high_priority_failures(path) == {"cf:1.10": [], "acdd:1.3": []}


def test_xarray_decodes_the_mask_with_its_coordinates(sample_products, data_root):
    import xarray as xr

    mask = twilight_mask(sample_products, data_root)
    with xr.open_dataset(mask.path) as ds:
        assert {"latitude", "longitude", "time"} <= set(ds.cloud_probability.coords)
        assert np.allclose(ds.latitude.values, mask.latitude, atol=6e-7, equal_nan=True)
        probability = ds.cloud_probability.values
        assert np.isnan(probability[~mask.valid]).all() and np.isfinite(probability[mask.valid]).all()
        assert np.isnan(ds.cloud_mask.values[~mask.valid]).all()  # _FillValue: no data


def test_twilight_pixels_without_valid_input_are_no_data_everywhere(sample_products, data_root, caplog):
    mask = twilight_mask(sample_products, data_root)
    converted = read_converted(DataRoot(data_root).hdf_split(SAMPLE_DATE) / f"{mask.product_name}.h5", labels=())
    all_channels = np.isfinite(np.concatenate([converted.refs, converted.bts], axis=-1)).sum(axis=-1) == N_CHANNELS
    assert 0.2 < 1 - all_channels.mean() < 0.8, "a twilight scene: no reflectance where the sun is down"
    assert np.array_equal(mask.valid, all_channels)
    assert (mask.cloud_mask[~all_channels] == cf_mask.NO_DATA).all()
    expected = mask.cloudy[all_channels].mean()
    assert mask.cloud_fraction == pytest.approx(expected) and mask.cloudy.mean() < expected
    item = stac.mask_item(mask, Path("item.json"), {}, DataRoot(data_root).catalogue)
    assert item["properties"]["eo:cloud_cover"] == pytest.approx(100 * expected, abs=1e-3)


def shade_fraction(png: Path, colour: str) -> float:
    """Share of a PNG's pixels painted in ``colour``."""
    image = imread(png)[..., :3]
    return float((np.abs(image - np.array(to_rgb(colour))).max(axis=-1) < 0.02).mean())


def test_the_quicklook_shows_invalid_pixels_as_no_data(sample_products, data_root):
    masks = [cf_mask.read_mask(path) for path in masked_products(sample_products, data_root).values()]
    twilight, full = min(masks, key=lambda m: m.valid.mean()), max(masks, key=lambda m: m.valid.mean())
    assert full.valid.all(), "a day scene with every channel valid"
    quicklooks = DataRoot(data_root).masks(SAMPLE_DATE)
    no_data = {
        name: shade_fraction(quicklooks.quicklook(m.product_name), NO_DATA_SHADE[1])
        for name, m in (("twilight", twilight), ("day", full))
    }
    assert no_data["day"] < 0.002, "the shade only in the legend"
    assert no_data["twilight"] > 0.1, "the model and Bayesian panels show the twilight's invalid pixels as no data"


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for folder in ("masks", "stac")
        if (root / folder).is_dir()
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def test_catalogue_and_re_runs_leave_masks_and_catalogue_byte_identical(data_root, caplog):
    data = DataRoot(data_root)
    items = catalogue.update(data_root, SAMPLE_DATE)
    assert len(items) == 5 + 1, "an item per mask, one per model version"
    for document in documents(data_root).values():
        validate(document)
    before = snapshot(data_root)
    caplog.set_level(logging.INFO)
    model = data.registry.version("v1").model
    run_inference(model, [data.hdf_split(SAMPLE_DATE)], data.masks(SAMPLE_DATE).folder, geotiff=True)
    assert caplog.text.count("already made by this model version, kept") == 5
    assert main(["catalogue", str(data_root), "--day", SAMPLE_DATE.isoformat()]) == 0
    assert snapshot(data_root) == before, "nothing rewritten"


def test_mask_items_list_the_mask_geotiff_quicklook_and_source(sample_products, data_root):
    catalogue.update(data_root, SAMPLE_DATE)
    files = DataRoot(data_root).catalogue
    for product in masked_products(sample_products, data_root):
        stem = stem_of(product)
        path = files.item(stac.MASKS, stem, SAMPLE_DATE)
        assets = documents(data_root)[path]["assets"]
        assert set(assets) == {"data", "geotiff", "overview", "source"}
        resolved = {key: (path.parent / asset["href"]).resolve() for key, asset in assets.items()}
        assert resolved["data"] == DataRoot(data_root).masks(SAMPLE_DATE).mask(stem).resolve()
        assert resolved["source"] == (DataRoot(data_root).hdf_split(SAMPLE_DATE, DAY_SPLIT) / f"{stem}.h5").resolve()


def test_geotiff_is_opt_in(sample_products, small_model, data_root, tmp_path):
    hdf = DataRoot(data_root).hdf_split(SAMPLE_DATE)
    assert main(["inference", str(small_model), str(hdf), str(tmp_path / "plain")]) == 0
    assert {p.suffix for p in (tmp_path / "plain").iterdir()} == {".nc", ".png"}
    assert main(["inference", str(small_model), str(hdf), str(tmp_path / "plain"), "--geotiff"]) == 0
    tifs = sorted((tmp_path / "plain").glob("*.tif"))
    assert len(tifs) == 5, "added to the masks already made, which are kept"
    import rasterio

    with rasterio.open(tifs[0]) as src:
        assert src.crs.to_epsg() == 4326 and src.overviews(1)


def test_a_mask_of_another_model_version_is_made_again(sample_products, small_model, data_root, tmp_path):
    """The same model file registered again (v2, same SHA-256): masks record the version, so they are made again;
    a GeoTIFF of the older mask is not left beside the new one."""
    root = tmp_path / "data"
    data = DataRoot(root)
    convert_products(sample_products[:1], data.hdf(SAMPLE_DATE))
    masks = data.masks(SAMPLE_DATE)
    first = install_model(root, small_model, key="first")
    [path] = run_inference(first.files.model, [data.hdf_split(SAMPLE_DATE)], masks.folder, geotiff=True)
    assert masks.geotiff(path.stem).is_file()
    second = install_model(root, small_model, key="second")
    assert second.name == "v2" and sha256(second.files.model) == sha256(first.files.model)
    run_inference(second.files.model, [data.hdf_split(SAMPLE_DATE)], masks.folder)
    assert cf_mask.read_mask(path).models[0].version == "v2"
    assert not masks.geotiff(path.stem).exists(), "the GeoTIFF of the v1 mask is gone (not asked for again)"
