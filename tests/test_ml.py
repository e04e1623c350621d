"""The ML stages on synthetic converted products: data pipeline, U-Net and loss, training, inference."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from matplotlib.image import imread
from ml_data import write_product, write_products

from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.hdf import ATTRIBUTES, read_converted
from cloud_tasks.layout import MaskFiles, ModelFiles
from cloud_tasks.ml import data
from cloud_tasks.ml import model as unet
from cloud_tasks.ml.inference import load_predictor, predict_mosaic, predict_whole, run_inference, sha256
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.ml.train import train
from cloud_tasks.product import cf_mask
from cloud_tasks.registry import UNREGISTERED

# Keras converting TensorFlow tensors for numpy 2 (not this package's code).
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

# Tiny but real training: 5 products of 128 x 128, 64 px patches.
OPTIONS = TrainOptions(epochs=8, batch_size=4, patch_size=64, clip_offset=8)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def hdf_dir(tmp_path_factory) -> Path:
    """5 learnable day products, one night product and one with a degenerate label."""
    root = tmp_path_factory.mktemp("converted")
    write_products(root, 5)
    write_product(root, 5, split="night")
    write_product(root, 6, label=1)
    return root


@pytest.fixture(scope="module")
def trained(hdf_dir, tmp_path_factory) -> Path:
    """OUT folder of a finished training run on ``hdf_dir``."""
    out = tmp_path_factory.mktemp("train")
    train([hdf_dir], out, OPTIONS)
    return out


@pytest.fixture(scope="module")
def masks(trained, hdf_dir, tmp_path_factory) -> tuple[Path, list[Path], Path]:
    """Inference on the training inputs plus a product with no-data rows: (OUT, mask paths, that product)."""
    extra = write_product(tmp_path_factory.mktemp("extra"), 10, shape=(100, 140), nodata_rows=8)
    out = tmp_path_factory.mktemp("masks")
    return out, run_inference(ModelFiles(trained).model, [hdf_dir, extra], out), extra


# ---------------------------------------------------------------- data


TIMINGS = {"epoch_seconds", "train_seconds", "test_seconds"}


def test_synthetic_products_follow_the_hdf_layout(hdf_dir):
    path = next((hdf_dir / "day").glob("*.h5"))
    product = read_converted(path)
    assert set(ATTRIBUTES) <= set(product.attrs) and product.attrs["split"] == "day"
    assert product.refs.shape == (128, 128, 6) and product.bts.shape == (128, 128, 3)
    assert 0.4 < product.labels["bayes"].mean() < 0.6


def test_normalise_zeroes_nan_and_counts_valid_channels():
    refs = np.full((2, 2, 6), 0.7, np.float32)
    bts = np.full((2, 2, 3), 292.0, np.float32)
    refs[0, 0, 1] = np.nan
    refs[1, 1], bts[1, 1] = np.nan, np.nan
    x, n_finite = data.normalise(refs, bts)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_allclose(x[0, 1], [0.2] * 6 + [1.0] * 3, rtol=1e-6)
    assert x[0, 0, 1] == 0.0 and (x[1, 1] == 0).all()
    assert n_finite.tolist() == [[8, 9], [9, 0]]


def test_tile_origins_tile_the_centre_crop():
    assert data.tile_origins((150, 100), 64) == [(11, 18), (75, 18)]
    assert data.tile_origins((128, 200), 64) == [(0, 4), (0, 68), (0, 132), (64, 4), (64, 68), (64, 132)]
    assert data.tile_origins((50, 500), 64) == []


def test_select_products_skips_night_and_degenerate(hdf_dir, caplog):
    caplog.set_level(logging.INFO)
    products = data.select_products(sorted(hdf_dir.rglob("*.h5")), "bayes", 64)
    assert len(products) == 5 and all(p.n_patches == 4 for p in products)
    assert "skipped 1 night product(s)" in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "holds one value everywhere" in warnings[0].message


def test_no_usable_product_is_a_clear_error(tmp_path):
    paths = [write_product(tmp_path, 0, label=0), write_product(tmp_path, 1, split="night")]
    with pytest.raises(CloudTasksError, match="no usable training product among 2 input"):
        data.select_products(paths, "bayes", 64)


def test_bad_hdf_for_training_names_the_file(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not HDF5")
    with pytest.raises(InputError, match=r"bad\.h5"):
        data.select_products([bad], "bayes", 64)


@pytest.mark.parametrize(("n", "n_test"), [(2, 1), (5, 1), (10, 2), (3, 1)])
def test_split_by_product_is_reproducible(n, n_test):
    products = [data.Product(Path(f"{i}.h5"), f"p{i}", 4) for i in range(n)]
    train_set, test_set = data.split_products(products, 0.8, seed=42)
    assert len(test_set) == n_test and len(train_set) == n - n_test
    assert not set(train_set) & set(test_set)
    assert (train_set, test_set) == data.split_products(products, 0.8, seed=42)


def test_split_of_a_single_product_uses_it_for_both(caplog):
    product = data.Product(Path("a.h5"), "a", 4)
    assert data.split_products([product], 0.8, seed=42) == ([product], [product])
    assert "used for both training and testing" in caplog.text


def test_dataset_has_no_nan_and_zero_weight_at_nan_pixels(tmp_path):
    path = write_product(tmp_path, 0, shape=(64, 128), nan_fraction=0.05)
    products = data.select_products([path], "bayes", 32)
    cached = data.make_dataset(products, label="bayes", patch_size=32, batch_size=3)
    streamed = data.make_dataset(products, label="bayes", patch_size=32, batch_size=3, shuffle=True, cache_bytes=0)
    x, y = (np.concatenate(parts) for parts in zip(*[(b[0].numpy(), b[1].numpy()) for b in cached], strict=True))
    assert x.shape == (8, 32, 32, 9) and y.shape == (8, 32, 32, 2) and np.isfinite(x).all()
    assert 0 < (y[..., 1] == 0).mean() < 0.5
    assert ((x == 0).any(axis=-1) >= (y[..., 1] == 0)).all()  # every zero-weight pixel had a zeroed channel
    assert sorted(b[0].shape[0] for b in streamed) == [2, 3, 3]
    shuffled = np.concatenate([b[0].numpy() for b in streamed])
    assert sorted(map(bytes, shuffled)) == sorted(map(bytes, x))  # same patches, another order


# ---------------------------------------------------------------- model and loss


def test_unet_is_the_seed_architecture_and_fully_convolutional():
    model = unet.build_unet()
    assert 1.85e6 < model.count_params() < 1.95e6
    assert model.input_shape == (None, None, None, 9)
    assert model(np.zeros((1, 40, 56, 9), np.float32)).shape == (1, 40, 56, 1)


def _numpy_loss_and_accuracy(y_true, y_pred, clip, class_weights):
    """Independent reference: weighted BCE and accuracy over the clipped interior."""
    inner = (slice(None), slice(clip, -clip), slice(clip, -clip))
    labels, weights = y_true[..., 0][inner], y_true[..., 1][inner]
    probs = np.clip(y_pred[..., 0][inner].astype(np.float64), 1e-7, 1 - 1e-7)
    w = weights * np.where(labels == 1, class_weights[1], class_weights[0])
    bce = -(labels * np.log(probs) + (1 - labels) * np.log(1 - probs))
    accuracy = (weights * ((probs >= 0.5) == labels)).sum() / weights.sum()
    return (w * bce).sum() / w.sum(), accuracy


def test_loss_and_accuracy_match_numpy_with_clipped_border():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (2, 8, 8)).astype(np.float32)
    weights = (rng.random((2, 8, 8)) > 0.2).astype(np.float32)
    y_true = np.stack([labels, weights], axis=-1)
    y_pred = rng.random((2, 8, 8, 1)).astype(np.float32)
    y_pred[:, 0] = 1e-9  # confidently wrong values in the clipped border must not count
    expected_loss, expected_accuracy = _numpy_loss_and_accuracy(y_true, y_pred, 2, (1.0, 3.0))

    loss = unet.MaskedBinaryCrossentropy(clip_offset=2, class_weights=(1.0, 3.0))
    assert float(loss(y_true, y_pred)) == pytest.approx(expected_loss, rel=1e-5)
    metric = unet.MaskedAccuracy(clip_offset=2)
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx(expected_accuracy, rel=1e-6)


def test_nan_inputs_give_a_finite_loss(tmp_path):
    path = write_product(tmp_path, 0, shape=(64, 64), nan_fraction=0.2, nodata_rows=10)
    products = data.select_products([path], "bayes", 32)
    batch = next(iter(data.make_dataset(products, label="bayes", patch_size=32, batch_size=4)))
    model = unet.compile_unet(unet.build_unet(), clip_offset=4)
    logs = model.train_on_batch(*batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(model.predict(batch[0], verbose=0)).all()


def test_model_round_trip_keeps_the_custom_loss(tmp_path):
    model = unet.compile_unet(unet.build_unet(filters=(8, 16, 32), bottleneck=64), clip_offset=3, class_weights=(1, 2))
    x = np.random.default_rng(1).random((2, 16, 16, 9)).astype(np.float32)
    y = np.stack([x[..., 0] > 0.5, np.ones((2, 16, 16))], axis=-1).astype(np.float32)
    model.train_on_batch(x, y)
    path = unet.save_model(model, tmp_path / "m.keras")
    loaded = unet.load_model(path)
    assert isinstance(loaded.loss, unet.MaskedBinaryCrossentropy)
    assert (loaded.loss.clip_offset, loaded.loss.class_weights) == (3, (1.0, 2.0))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left behind


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_trained_model_beats_the_majority_class(trained, hdf_dir):
    params = json.loads(ModelFiles(trained).params.read_text())
    majority, accuracy = params["test_majority_rate"], params["test_accuracy"]
    assert len(params["parameters"]["products"]) == 5
    assert params["train_patches"] == 16 and params["test_patches"] == 4 and params["epochs_completed"] == 8
    assert accuracy >= 0.9 and accuracy >= majority + 0.1, (accuracy, majority)

    usable = data.select_products(sorted(hdf_dir.rglob("*.h5")), "bayes", 64)
    test_set = [p for p in usable if p.name in params["test_products"]]
    dataset = data.make_dataset(test_set, label="bayes", patch_size=64, batch_size=4)
    keras.utils.set_random_seed(0)
    untrained = unet.compile_unet(unet.build_unet(), clip_offset=8)
    assert untrained.evaluate(dataset, verbose=0, return_dict=True)["accuracy"] < majority + 0.1


@pytest.mark.slow
def test_training_outputs(trained):
    files = ModelFiles(trained)
    for path in (files.model, files.history_json, files.params):
        assert path.is_file()
    assert files.curves.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in files.checkpoints.iterdir()) == ["epoch_007.keras", "epoch_008.keras"]
    assert _history_epochs(trained) == list(range(8))
    history = json.loads(files.history_json.read_text())
    assert set(history) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"} | TIMINGS
    assert all(t > 0 for t in history["epoch_seconds"])
    assert all(
        a + b <= c * 1.01
        for a, b, c in zip(history["train_seconds"], history["test_seconds"], history["epoch_seconds"], strict=True)
    )
    assert history["loss"][-1] < history["loss"][0]
    for split in ("train", "validation"):
        assert list((files.tensorboard / split).glob("events.out.tfevents.*"))
    # no temporary left behind (the lock file stays: it is only ever locked, never replaced)
    assert not [p for p in trained.rglob(".*") if p.is_file() and p != files.lock]
    recorded = json.loads(files.params.read_text())["parameters"]
    assert len(recorded.pop("products")) == 5 and recorded == OPTIONS.as_dict()


@pytest.mark.slow
def test_finished_run_is_not_retrained(trained, hdf_dir, caplog):
    caplog.set_level(logging.INFO)
    model = ModelFiles(trained).model
    before = model.stat().st_mtime_ns
    assert train([hdf_dir], trained, OPTIONS) == model
    assert model.stat().st_mtime_ns == before
    assert "nothing to do" in caplog.text


@pytest.mark.slow
def test_other_parameters_on_a_used_out_are_refused(trained, hdf_dir):
    with pytest.raises(CloudTasksError, match="different learning_rate"):
        train([hdf_dir], trained, OPTIONS.replace(learning_rate=0.01))
    with pytest.raises(CloudTasksError, match="different precision"):
        train([hdf_dir], trained, OPTIONS.replace(precision="mixed_bfloat16"))
    with pytest.raises(CloudTasksError, match="already trained for 8 epochs"):
        train([hdf_dir], trained, OPTIONS.replace(epochs=4))
    assert ModelFiles(trained).model.is_file()


@pytest.mark.slow
def test_killed_run_resumes_after_its_last_epoch(tmp_path, caplog):
    write_products(tmp_path / "in", 2)
    files, options = ModelFiles(tmp_path / "out"), OPTIONS.replace(epochs=6)
    command = [sys.executable, "-m", "cloud_tasks", "train", tmp_path / "in", files.folder, *options.cli_arguments()]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _checkpoint_epochs(files):
            assert child.poll() is None and time.monotonic() < deadline, "training did not reach its first checkpoint"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL and not files.model.exists()
    done = max(_checkpoint_epochs(files))
    assert 1 <= done < options.epochs

    caplog.set_level(logging.INFO)
    train([tmp_path / "in"], files.folder, options)
    assert f"resuming after epoch {done} " in caplog.text
    assert _history_epochs(files.folder) == list(range(options.epochs))
    assert json.loads(files.params.read_text())["epochs_completed"] == options.epochs


@pytest.mark.slow
def test_training_under_mixed_bfloat16_keeps_its_policy_when_resumed(tmp_path):
    write_products(tmp_path / "in", 2)
    files, options = ModelFiles(tmp_path / "out"), OPTIONS.replace(epochs=2, precision="mixed_bfloat16")
    train([tmp_path / "in"], files.folder, options)
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored after training"
    train([tmp_path / "in"], files.folder, options.replace(epochs=3))  # resumed from the bfloat16 checkpoint
    history = json.loads(files.history_json.read_text())
    assert history["epoch"] == [0, 1, 2] and np.isfinite(history["loss"]).all()
    model = unet.load_model(files.model)
    policies = [layer.dtype_policy.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert set(policies) == {"mixed_bfloat16"}, "every convolution on the fast path"
    assert model.layers[-1].dtype_policy.name == "float32" and model.output.dtype == "float32", "the sigmoid in float32"
    assert json.loads(files.params.read_text())["parameters"]["precision"] == "mixed_bfloat16"


def _checkpoint_epochs(files: ModelFiles) -> list[int]:
    """The epochs of the complete checkpoints (temporaries are hidden files)."""
    found = files.checkpoints.glob("epoch_*.keras") if files.checkpoints.is_dir() else []
    return [int(p.stem.split("_")[1]) for p in found]


def _history_epochs(out: Path) -> list[int]:
    with ModelFiles(out).history_csv.open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# ---------------------------------------------------------------- inference


@pytest.mark.slow
def test_inference_writes_masks_and_quicklooks(masks, trained):
    out, paths, extra = masks
    assert len(paths) == 7  # 5 day products + the degenerate-label one + the extra; the night one skipped
    assert paths == MaskFiles(out).masks() and {p.suffix for p in paths} == {".nc"}
    assert sorted(p.suffix for p in out.iterdir()) == [".nc"] * 7 + [".png"] * 7, "no HDF5 mask, no GeoTIFF unasked"
    mask = cf_mask.read_mask(MaskFiles(out).mask(extra.stem))
    product = read_converted(extra, labels=(), geolocation=True)
    all_channels = np.isfinite(product.refs).all(axis=-1) & np.isfinite(product.bts).all(axis=-1)
    assert mask.probability.shape == (100, 140) and not mask.valid[:8].any(), "the no-data rows"
    assert np.array_equal(mask.valid, all_channels) and 0 < (~mask.valid[8:]).sum() < 100, "a missing channel too"
    assert np.isnan(mask.probability[~mask.valid]).all()
    assert ((mask.probability[mask.valid] >= 0) & (mask.probability[mask.valid] <= 1)).all()
    for name in ("latitude", "longitude"):  # stored to the micro-degree
        assert np.abs(getattr(mask, name) - getattr(product, name)).max() <= 5e-7 + 1e-9
    model = ModelFiles(trained).model
    assert mask.models == (cf_mask.Model(UNREGISTERED, sha256(model.resolve()), "day"),)
    assert mask.product_name == extra.stem and mask.threshold == 0.5 and extra.name in mask.attrs["source"]
    assert mask.attrs["time_coverage_start"] == "2020-06-01T10:30:00.000000Z"  # the converted file's sensing start
    for path in paths:
        png = MaskFiles(out).quicklook(path.stem)
        assert png.read_bytes().startswith(PNG_MAGIC)
        assert imread(png).shape[1] > 300  # decodes as an image


def _files(out: Path) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.iterdir())}


@pytest.mark.slow
def test_inference_is_idempotent(masks, trained, hdf_dir, caplog):
    out, paths, extra = masks
    before = _files(out)
    caplog.set_level(logging.INFO)
    again = run_inference(ModelFiles(trained).model, [hdf_dir, extra], out)
    assert again == paths
    assert _files(out) == before, "masks and quicklooks left as they were, byte for byte"
    assert caplog.text.count("already made by this model") == 7 and "night product, skipped" in caplog.text


@pytest.mark.slow
def test_whole_image_mask_equals_the_mosaic(trained, tmp_path):
    """Measured: max |diff| 1.3e-4 at >= 16 px from the image edges (9e-7 at >= 40 px), up to 0.2 at the
    edges (the padding differs); thresholded masks agree on 99.996 % of the pixels."""
    product = read_converted(write_product(tmp_path, 11, shape=(300, 420)), labels=())
    x, _ = data.normalise(product.refs, product.bts)
    predict = load_predictor(ModelFiles(trained).model)
    whole, mosaic = predict_whole(predict, x), predict_mosaic(predict, x)
    banded = predict_whole(predict, x, band_pixels=90_000)  # 4 bands of <= 80 rows (+64 rows context each side)
    edge = 16  # zero padding of the image (whole) and of the input (mosaic) differ within the receptive field
    assert np.abs(whole - mosaic)[edge:-edge, edge:-edge].max() < 1e-3
    assert ((whole >= 0.5) == (mosaic >= 0.5)).mean() >= 0.999
    np.testing.assert_allclose(banded, whole, atol=1e-5)


def _read_masks(out: Path) -> dict[str, cf_mask.MaskProduct]:
    return {path.stem: cf_mask.read_mask(path) for path in MaskFiles(out).masks()}


# Mixed precision against float32, same weights, on CPU: the stated tolerance (of probabilities stored to 0.01).
# Measured on the 7 masks of the `masks` fixture (111,184 valid pixels), before storage: max |dp| 0.0029
# (bfloat16), 0.00046 (float16); thresholded masks agree on 99.9991 % (bfloat16) and 100 % (float16) of the pixels.
MIXED_MAX_DIFFERENCE, MIXED_MIN_AGREEMENT = 0.02, 0.999


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_masks_match_float32(precision, masks, trained, hdf_dir, tmp_path):
    """The layers compute in 16 bits (the output layer in float32): the masks stay within the tolerance."""
    out, _, extra = masks
    mixed_out = tmp_path / precision
    run_inference(ModelFiles(trained).model, [hdf_dir, extra], mixed_out, precision=precision)
    reference, mixed = _read_masks(out), _read_masks(mixed_out)
    assert mixed.keys() == reference.keys() and len(mixed) == 7

    def pixels(masks: dict[str, cf_mask.MaskProduct], field: str) -> np.ndarray:
        return np.concatenate([getattr(masks[name], field).ravel() for name in sorted(masks)])

    valid = pixels(reference, "valid")
    assert np.array_equal(valid, pixels(mixed, "valid")), "no data depends on the inputs only"
    difference = np.abs(pixels(reference, "probability") - pixels(mixed, "probability"))[valid]
    assert 0 < difference.max() <= MIXED_MAX_DIFFERENCE, "16-bit layers compute differently, within the tolerance"
    assert (pixels(reference, "cloudy") == pixels(mixed, "cloudy"))[valid].mean() >= MIXED_MIN_AGREEMENT


@pytest.mark.slow
def test_xla_compiled_inference_matches(trained, tmp_path):
    """Measured: max |dp| 4e-7 between the XLA-compiled and the plain forward pass (compared before the mask
    product stores them to 0.01)."""
    product = read_converted(write_product(tmp_path, 12, shape=(120, 150)), labels=())
    x, _ = data.normalise(product.refs, product.bts)
    plain, compiled = (predict_whole(load_predictor(ModelFiles(trained).model, xla=xla), x) for xla in (False, True))
    np.testing.assert_allclose(compiled, plain, atol=1e-4)


@pytest.mark.slow
def test_inference_rejects_a_non_model_and_bad_hdf(trained, hdf_dir, tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    with pytest.raises(InputError, match=r"model\.keras: not a Keras model"):
        run_inference(fake, [hdf_dir], tmp_path / "out")
    bad = tmp_path / "bad.h5"
    bad.write_text("not HDF5")
    with pytest.raises(InputError, match=r"bad\.h5"):
        run_inference(ModelFiles(trained).model, [bad], tmp_path / "out")


def test_commands_register():
    from cloud_tasks.ml import inference as inference_cmd
    from cloud_tasks.ml import train as train_cmd

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    train_cmd.register(subparsers)
    inference_cmd.register(subparsers)
    args = parser.parse_args(["train", "a", "b/*.h5", "out", "--epochs", "3", "--cpu-only"])
    assert (args.inputs, args.out, args.epochs, args.cpu_only, args.label) == (["a", "b/*.h5"], "out", 3, True, "bayes")
    assert TrainOptions.from_args(args) == TrainOptions(epochs=3)
    args = parser.parse_args(["train", "a", "out", "--precision", "mixed_bfloat16", "--xla"])
    assert TrainOptions.from_args(args) == TrainOptions(precision="mixed_bfloat16", jit_compile=True)
    assert args.func.__name__ == "run_cli" and args.func.__module__ == "cloud_tasks.ml.train"
    args = parser.parse_args(["inference", "m.keras", "x.h5", "out", "--method", "mosaic"])
    assert (args.model, args.inputs, args.out) == ("m.keras", ["x.h5"], "out")
    assert (args.method, args.threshold, args.precision, args.xla) == ("mosaic", 0.5, "float32", False)
    args = parser.parse_args(["inference", "m.keras", "x.h5", "out", "--precision", "mixed_float16", "--xla"])
    assert (args.precision, args.xla) == ("mixed_float16", True)
    assert args.func.__name__ == "run_cli" and args.func.__module__ == "cloud_tasks.ml.inference"
