"""``inference``: cloud masks of converted products from trained U-Nets, a day model and a thermal model.

Each pixel is masked by the model made for it: the day model (``MODEL``, the nine channels) where all nine
channels are valid, the thermal model (``--thermal-model``, brightness temperatures only) where S7, S8 and S9
are valid and a reflectance is not (night, and the dark part of twilight scenes): ``data.model_inputs`` defines
both domains, which do not overlap. The mask's ``model_used`` flag records which model made each pixel. Without a
thermal model, night products are skipped and twilight pixels without reflectance are no data.

For each product, ``OUT/<product_name>.nc`` (``layout.MaskFiles.mask``) is the mask product of record: the
CF-1.10 / ACDD-1.3 NetCDF-4 file of ``cloud_tasks.product.cf_mask`` (cloud probability and cloud mask on the
product's own 1 km grid, its latitude and longitude from the converted file, sensing time, source product,
the versions and SHA-256 of the models used, threshold). A pixel outside both domains (fill in the source) is
no data, stored as ``_FillValue``, shown as no data in the quicklook and left out of every cloud fraction.
``OUT/<product_name>.png`` is a quicklook: false-colour reflectances (S3, S2, S1; the S8 brightness temperature,
cold bright, for a product without reflectances) beside the model mask and the Bayesian mask, with a legend
(clear / cloud / no data). With ``--geotiff``, ``OUT/<product_name>.tif`` is the mask as a
Cloud-Optimized GeoTIFF on a latitude/longitude grid (``cloud_tasks.product.geotiff``).

A mask already made by the same models (registry versions and SHA-256) with the same threshold is kept as it is
(``cf_mask.made_by``). ``<product_name>`` is the input's ``product_name`` attribute, used only once it parses as
an SLSTR product name (``naming.stem_from_file``); each input is checked against its own ``grid_shape`` before it
is read (``hdf.check_converted``, latitude and longitude included), and each model must be of its kind
(``params.json`` beside it) and map an image of its kind's inputs to one probability per pixel. A bad product
fails alone: the others are masked.

``--precision mixed_bfloat16|mixed_float16`` runs the layers in 16 bits (the output layer in float32;
masks within 0.02 of float32's, see tests/test_ml.py), ``--xla`` compiles the forward pass with XLA.

Two ways to predict give the same mask within a tolerance (see tests/test_ml.py):
``whole`` (the default, ~2x faster) runs the fully convolutional model on the whole image padded
to a multiple of 8, in horizontal bands with overlap when the image is large (to bound memory);
``mosaic`` is the reference's: 256 px patches with a stride of 256 - 80, 40 px cut from each patch
edge. They agree to ~1e-6 in probability more than 40 px from the image edges and to ~1e-4 more
than 16 px from them; nearer they differ (up to ~0.2 measured) because the whole-image pass pads
each layer's feature maps with zeros where the mosaic pads the input image.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file, output_dir
from cloud_tasks.errors import BatchFailures, CloudTasksError, DiskFullError, InputError, product_failure
from cloud_tasks.hdf import read_attrs, read_converted
from cloud_tasks.layout import DAY_SPLIT, MaskFiles
from cloud_tasks.ml.options import POOLING_MULTIPLE, PRECISIONS
from cloud_tasks.naming import stem_from_file
from cloud_tasks.paths import expand_inputs
from cloud_tasks.product import cf_mask
from cloud_tasks.product.geotiff import write_geotiff
from cloud_tasks.registry import KINDS, UNREGISTERED, registered_version

log = logging.getLogger(__name__)

METHODS = ("whole", "mosaic")
MOSAIC_PATCH, MOSAIC_CROP = 256, 40
# Whole-image passes are cut into bands of at most this many pixels (each with BAND_MARGIN rows of
# context on both sides) so that peak memory stays bounded for any image size.
BAND_PIXELS = 1 << 21
BAND_MARGIN = 64
PROBE_SIDE = 4 * POOLING_MULTIPLE  # the test image a model must map to one probability per pixel

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Predictor:
    """A loaded model of one kind and how a mask records it."""

    kind: str
    predict: Predict
    record: cf_mask.Model


@dataclass(frozen=True)
class _Job:
    """What every product of one ``run_inference`` call is masked with, and where the masks go."""

    predictors: tuple[_Predictor, ...]  # the day model first; the index is the mask's model_used value
    masks: MaskFiles
    threshold: float
    method: str
    batch_size: int
    with_geotiff: bool = False

    @property
    def models(self) -> list[cf_mask.Model]:
        """The models as a mask product records them, in ``model_used`` order."""
        return [predictor.record for predictor in self.predictors]

    @property
    def kinds(self) -> set[str]:
        return {predictor.kind for predictor in self.predictors}


def run_inference(
    model_path: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    threshold: float = 0.5,
    method: str = "whole",
    batch_size: int = 8,
    precision: str = "float32",
    xla: bool = False,
    geotiff: bool = False,
    thermal_model: str | Path | None = None,
) -> list[Path]:
    """Write a mask (NetCDF) and a quicklook per product of ``inputs`` (day products only without a
    ``thermal_model``), and a GeoTIFF if ``geotiff``; return the mask paths (made or kept).

    The models are loaded once for all products and run under the Keras dtype policy ``precision``, their
    forward passes XLA-compiled if ``xla``; ``batch_size`` is the number of patches per model call of the
    ``mosaic`` method. A product that fails does not stop the others: its error is raised at the end (a
    ``BatchFailures`` listing them when several failed).
    """
    _check_settings(threshold, method, batch_size, precision)
    paths = expand_inputs(inputs, ".h5")
    models = {"day": model_path, "thermal": thermal_model}
    predictors = tuple(_predictor(Path(models[k]), k, precision, xla) for k in KINDS if models[k] is not None)
    masks = MaskFiles(output_dir(out_dir))  # made once the models are known good: a bad one leaves no OUT behind
    job = _Job(predictors, masks, threshold, method, batch_size, geotiff)
    written, failures = [], []
    for path in paths:
        try:
            mask_path = _mask_product(path, job)
        except DiskFullError:
            raise  # not the product's fault: the next ones would fail too
        except Exception as exc:
            failures.append(product_failure(path, exc))
            log.error("%s", failures[-1])
            continue
        if mask_path is not None:
            written.append(mask_path)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise BatchFailures("mask", failures, written, len(paths))
    return written


def _predictor(model_path: Path, kind: str, precision: str, xla: bool) -> _Predictor:
    """Load a model given as ``kind``, refusing one trained as another kind (InputError naming it)."""
    from cloud_tasks.ml.train import model_kind

    model_path = model_path.resolve()
    trained_as = model_kind(model_path)
    if trained_as != kind:
        option = "--thermal-model" if trained_as == "thermal" else "the MODEL argument"
        raise InputError(model_path, f"a {trained_as} model given as the {kind} model: give it as {option}")
    predict = load_predictor(model_path, kind, precision=precision, xla=xla)
    version = registered_version(model_path) or UNREGISTERED
    return _Predictor(kind, predict, cf_mask.Model(version, sha256(model_path), kind))


def _check_settings(threshold: float, method: str, batch_size: int, precision: str) -> None:
    if method not in METHODS:
        raise CloudTasksError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if precision not in PRECISIONS:
        raise CloudTasksError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if not 0.0 <= threshold <= 1.0:  # NaN fails too
        raise CloudTasksError(f"threshold must be a probability from 0 to 1, not {threshold}")
    if batch_size < 1:
        raise CloudTasksError(f"batch size must be at least 1, not {batch_size}")


def _mask_product(path: Path, job: _Job) -> Path | None:
    """Mask one product (None for a night product without a thermal model); a mask made by the same models is
    kept."""
    attrs = read_attrs(path)
    if attrs.get("split") != DAY_SPLIT and "thermal" not in job.kinds:
        log.info("%s: night product, skipped (no thermal model given)", path)
        return None
    # The output's name comes from inside the file: checked to be a bare product name, the path to stay in OUT.
    stem = stem_from_file(attrs.get("product_name", path.stem), path)
    mask_path, geotiff_path = job.masks.mask(stem), job.masks.geotiff(stem)
    if job.masks.quicklook(stem).is_file() and cf_mask.made_by(mask_path, job.models, job.threshold):
        log.info("%s: already made by this model version, kept", mask_path)
    else:
        cf_mask.product_info(attrs | {"product_name": stem}, path)  # sensing times checked before predicting
        geotiff_path.unlink(missing_ok=True)  # an earlier mask's: made again below if asked for
        _process(path, job, stem)
    if job.with_geotiff and not geotiff_path.is_file():
        write_geotiff(geotiff_path, cf_mask.read_mask(mask_path))
    return mask_path


def _process(path: Path, job: _Job, stem: str) -> None:
    """Predict one product's mask and write it, then its quicklook (both present mark a product done: a bad
    product, refused when its mask is written, leaves neither)."""
    product = read_converted(path, labels=("bayes",), geolocation=True)  # shapes and dtypes checked before reading
    probability, valid, model_used = predict_product(product, job)
    decision = cf_mask.classify(probability, job.threshold, valid)
    mask_path = cf_mask.write_mask(
        job.masks.mask(stem),
        probability,
        product.latitude,
        product.longitude,
        product=product.attrs | {"product_name": stem},
        models=job.models,
        threshold=job.threshold,
        valid=valid,
        model_used=model_used,
        source=path,
    )
    write_quicklook(job.masks.quicklook(stem), product, decision, job.threshold, stem)
    log.info("%s: mask written, %s", mask_path, _fraction_text(decision))


def predict_product(product, job: _Job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cloud probability (rows, columns) from each model over its own domain; the valid pixels (in a domain of
    one of the models) and the index of the model that made each pixel (``model_used``)."""
    from cloud_tasks.ml.data import model_inputs

    shape = product.bts.shape[:2]
    probability = np.full(shape, np.nan, np.float32)
    valid, model_used = np.zeros(shape, bool), np.zeros(shape, np.uint8)
    for index, predictor in enumerate(job.predictors):
        x, domain = model_inputs(product, predictor.kind)
        if not domain.any():
            continue  # a night product's day model, a day product's thermal model: nothing to predict
        if job.method == "whole":
            predicted = predict_whole(predictor.predict, x)
        else:
            predicted = predict_mosaic(predictor.predict, x, batch_size=job.batch_size)
        probability[domain], valid[domain], model_used[domain] = predicted[domain], True, index
    return probability, valid, model_used


def _fraction_text(decision: np.ndarray) -> str:
    """``55% cloud, 57% valid`` (cloud share of the valid pixels) or ``no valid pixel``."""
    fraction = cf_mask.cloud_fraction(decision)
    if fraction is None:
        return "no valid pixel"
    return f"{100 * fraction:.0f}% cloud, {100 * np.mean(decision != cf_mask.NO_DATA):.0f}% valid"


def load_predictor(model_path: Path, kind: str = KINDS[0], *, precision: str = "float32", xla: bool = False) -> Predict:
    """Load and check a model of ``kind`` (InputError naming it if it is not one of ours) and return a function
    (n, rows, cols, inputs of the kind) float32 -> (n, rows, cols) float32 probabilities.

    One ``tf.function`` with free spatial dimensions serves every image and patch size without
    retracing (with ``xla``, XLA compiles once per shape), and avoids ``Model.predict``'s per-call overhead.
    """
    import tensorflow as tf

    from cloud_tasks.ml.data import n_inputs
    from cloud_tasks.ml.model import configure_devices, load_model

    configure_devices()
    n_channels = n_inputs(kind)
    model = _with_precision(load_model(model_path, compile=False, n_channels=n_channels), precision)
    _check_model(model, model_path, n_channels)
    signature = [tf.TensorSpec((None, None, None, n_channels), tf.float32)]

    def forward(x):
        return tf.cast(model(x, training=False)[..., 0], tf.float32)

    compiled = tf.function(forward, input_signature=signature, jit_compile=xla)
    return lambda batch: compiled(tf.convert_to_tensor(batch)).numpy()


def _with_precision(model, precision: str):
    """``model`` computing under the dtype policy ``precision`` with the same weights, its output layer in
    float32 (probabilities near 0 and 1 keep their resolution). A saved model keeps the policies it was
    built with, so the layers are rebuilt under the asked one; a model already so is returned as it is."""
    import keras

    output_layer = model.layers[-1]

    def policy(layer) -> str:
        return "float32" if layer is output_layer else precision

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if all(layer.dtype_policy.name == policy(layer) for layer in layers):
        return model
    copy = keras.models.clone_model(
        model, clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": policy(layer)})
    )
    copy.set_weights(model.get_weights())
    return copy


def _check_model(model, path: Path, n_channels: int) -> None:
    """Refuse a model that does not map any image of ``n_channels`` to one cloud probability per pixel."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(path, f"model has {len(model.inputs)} inputs and {len(model.outputs)} outputs, not one each")
    shape = tuple(model.inputs[0].shape)
    if shape[1:] != (None, None, n_channels):
        raise InputError(path, f"model input shape {shape}: inference needs (None, None, None, {n_channels})")
    probe = np.zeros((1, PROBE_SIDE, PROBE_SIDE, n_channels), np.float32)
    try:
        output_shape = tuple(model(probe, training=False).shape)
    except Exception as exc:  # Keras/TensorFlow raise many kinds for a model that cannot take the image
        first_line = (str(exc).splitlines() or [""])[0][:200]
        raise InputError(path, f"model fails on a {probe.shape} image: {type(exc).__name__}: {first_line}") from None
    if output_shape != (1, PROBE_SIDE, PROBE_SIDE, 1):
        raise InputError(
            path,
            f"model maps a {probe.shape} image to {output_shape}, not to one cloud probability per pixel "
            f"{(1, PROBE_SIDE, PROBE_SIDE, 1)}",
        )


def predict_whole(predict: Predict, x: np.ndarray, band_pixels: int = BAND_PIXELS, margin: int = BAND_MARGIN):
    """Cloud probability (rows, cols) from whole-image passes over ``x`` (rows, cols, inputs) zero-padded to a
    multiple of 8.

    An image larger than ``band_pixels`` goes through in horizontal bands with ``margin`` rows of
    context each side, kept at a multiple of 8 so that pooling cells stay aligned; only band centres
    are kept. 64 rows exceed the U-Net's receptive-field radius (~60 px): bands join exactly.
    """
    rows, cols = x.shape[:2]
    padded_cols = _round_up(cols, POOLING_MULTIPLE)
    band_rows = max(POOLING_MULTIPLE, (band_pixels // padded_cols) // POOLING_MULTIPLE * POOLING_MULTIPLE - 2 * margin)
    mask = np.empty((rows, cols), np.float32)
    for top in range(0, rows, band_rows):
        start = max(0, top - margin)  # a multiple of 8: pooling cells stay aligned with the image's
        stop = min(rows, top + band_rows + margin)
        band = _pad_to(x[start:stop], _round_up(stop - start, POOLING_MULTIPLE), padded_cols)
        prob = predict(band[None])[0]
        keep = min(band_rows, rows - top)
        mask[top : top + keep] = prob[top - start : top - start + keep, :cols]
    return mask


def predict_mosaic(predict: Predict, x: np.ndarray, *, patch=MOSAIC_PATCH, crop=MOSAIC_CROP, batch_size=8):
    """Cloud probability (rows, cols) as the reference: overlapping patches, each cut by ``crop`` px, mosaicked."""
    rows, cols = x.shape[:2]
    stride = patch - 2 * crop
    n_rows, n_cols = math.ceil(rows / stride), math.ceil(cols / stride)
    padded = np.zeros((n_rows * stride + 2 * crop, n_cols * stride + 2 * crop, x.shape[2]), np.float32)
    padded[crop : crop + rows, crop : crop + cols] = x
    origins = [(i * stride, j * stride) for i in range(n_rows) for j in range(n_cols)]
    mosaic = np.empty((n_rows * stride, n_cols * stride), np.float32)
    for first in range(0, len(origins), batch_size):
        chunk = origins[first : first + batch_size]
        probs = predict(np.stack([padded[r : r + patch, c : c + patch] for r, c in chunk]))
        for (r, c), prob in zip(chunk, probs, strict=True):
            mosaic[r : r + stride, c : c + stride] = prob[crop:-crop, crop:-crop]
    return mosaic[:rows, :cols]


def _pad_to(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Zero-pad at the bottom and right (zero is what the model sees for missing values too)."""
    return np.pad(x, ((0, rows - x.shape[0]), (0, cols - x.shape[1]), (0, 0)))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Quicklook shades of the cloud_mask values: clear, cloud, no data (a colour no mask value can be confused with).
QUICKLOOK_SHADES = {cf_mask.CLEAR: ("clear", "#202020"), cf_mask.CLOUDY: ("cloud", "#f4f4f4")}
NO_DATA_SHADE = ("no data", "#e07b39")


def write_quicklook(path: Path, product, decision, threshold: float, title: str) -> None:
    """PNG of the scene (false-colour reflectances, or S8 for a product without any), the model mask
    (``decision``: cloud_mask values) and the Bayesian mask on the same valid pixels, with a legend; fractions
    over valid pixels only."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    step = max(1, math.ceil(max(decision.shape) / 600))  # a quicklook: ~600 px per panel is plenty
    scene, scene_name = _scene(product, step)
    bayes_decision = np.where(decision == cf_mask.NO_DATA, cf_mask.NO_DATA, product.labels["bayes"] != 0)
    shades = [*QUICKLOOK_SHADES.values(), NO_DATA_SHADE]
    colours = ListedColormap([colour for _, colour in shades])

    fig = Figure(figsize=(15, 6), layout="constrained")
    fig.suptitle(f"{title}\nvalid pixels: {100 * np.mean(decision != cf_mask.NO_DATA):.0f}%")
    panels = (
        (scene, scene_name),
        (decision, f"model mask (p >= {threshold:g}): {_percent_cloud(decision)}"),
        (bayes_decision.astype(np.uint8), f"Bayesian mask: {_percent_cloud(bayes_decision.astype(np.uint8))}"),
    )
    for ax, (image, name) in zip(fig.subplots(1, 3), panels, strict=True):
        if image.dtype == np.uint8:  # cloud_mask values -> 0 clear, 1 cloud, 2 no data
            image = np.minimum(image[::step, ::step], len(shades) - 1)
            ax.imshow(image, cmap=colours, vmin=0, vmax=len(shades) - 1, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        ax.set_title(name)
        ax.set_axis_off()
    handles = [Patch(facecolor=colour, edgecolor="grey", label=label) for label, colour in shades]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def _scene(product, step: int) -> tuple[np.ndarray, str]:
    """The quicklook's scene panel: false colour (S3, S2, S1 as red, green, blue) scaled to its 99th percentile,
    or, with no reflectance at all (night), S8 in grey from its 1st to 99th percentile, inverted: cold clouds
    bright as by day."""
    rgb = product.refs[::step, ::step, [2, 1, 0]]
    if np.isfinite(rgb).any():
        bright = np.nanpercentile(rgb, 99)
        return np.nan_to_num(np.clip(rgb / max(bright, 1e-6), 0.0, 1.0)), "false colour (S3, S2, S1)"
    s8 = product.bts[::step, ::step, 1]
    if not np.isfinite(s8).any():
        return np.zeros((*s8.shape, 3)), "no valid channel"
    cold, warm = np.nanpercentile(s8, [1, 99])
    grey = np.nan_to_num(np.clip((warm - s8) / max(warm - cold, 1e-6), 0.0, 1.0))
    return np.repeat(grey[..., None], 3, axis=-1), "S8 brightness temperature (cold bright)"


def _percent_cloud(decision: np.ndarray) -> str:
    fraction = cf_mask.cloud_fraction(decision)
    return "no valid pixel" if fraction is None else f"{100 * fraction:.0f}% cloud (of valid pixels)"


def register(subparsers) -> None:
    """Add the ``inference`` sub-command."""
    p = subparsers.add_parser(
        "inference",
        help="predict cloud masks of converted HDF5 products with a trained model",
        description="Predict a cloud mask product (CF-NetCDF) and a quicklook per converted product: day products "
        "with MODEL, night products and pixels without reflectances with THERMAL_MODEL when given.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="trained day model (.keras), e.g. train's OUT/model.keras")
    p.add_argument("inputs", nargs="+", metavar="HDF_INPUT", help="converted .h5 files, folders, globs or .txt lists")
    p.add_argument("out", metavar="OUT", help="output folder for <product>.nc masks and <product>.png quicklooks")
    p.add_argument(
        "--thermal-model",
        metavar="THERMAL_MODEL",
        help="trained thermal model (train --kind thermal): masks night products and pixels without reflectances",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="cloud probability from which a pixel is cloudy")
    p.add_argument("--method", choices=METHODS, default="whole", help="whole-image passes or the reference's mosaic")
    p.add_argument("--batch-size", type=int, default=8, help="patches per model call (mosaic method)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help="Keras dtype policy of the layers")
    p.add_argument("--xla", action=argparse.BooleanOptionalAction, default=False, help="XLA-compile the model")
    p.add_argument(
        "--geotiff",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also write <product>.tif, the mask as a Cloud-Optimized GeoTIFF on a latitude/longitude grid",
    )
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> None:
    run_inference(
        args.model,
        args.inputs,
        args.out,
        threshold=args.threshold,
        method=args.method,
        batch_size=args.batch_size,
        precision=args.precision,
        xla=args.xla,
        geotiff=args.geotiff,
        thermal_model=args.thermal_model,
    )
