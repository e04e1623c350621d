"""The reference's U-Net, its masked loss and accuracy, precision, device set-up and model files.

The loss and metric are written with ``keras.ops`` only, so they work on any Keras backend, and are
registered as serializable so that ``keras.models.load_model`` restores a compiled model. Both take
the targets ``y_true`` of ``data.py``: channel 0 the label, channel 1 the pixel weight. Under a mixed
precision policy the layers compute in bfloat16/float16, but the sigmoid head, the loss and the metric
stay in float32: a probability near 0 or 1 and a sum over a whole batch need float32's precision.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
from keras import layers, ops

from cloud_tasks.atomic import atomic_file
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.hdf import N_CHANNELS
from cloud_tasks.ml.options import PRECISIONS

# What the loss, the metric and the model's output are computed in, whatever the layers' policy.
LOSS_DTYPE = "float32"


def set_precision(policy: str) -> None:
    """Set Keras's global dtype policy (one of ``PRECISIONS``) for the layers built from now on."""
    if policy not in PRECISIONS:
        raise CloudTasksError(f"precision must be one of {', '.join(PRECISIONS)}, not {policy!r}")
    keras.config.set_dtype_policy(policy)


def build_unet(
    input_shape: tuple = (None, None, N_CHANNELS),
    filters: tuple[int, ...] = (32, 64, 128),
    bottleneck: int = 256,
    *,
    head_dtype: str | None = LOSS_DTYPE,
) -> keras.Model:
    """The seed's U-Net (~1.9 M parameters with the defaults), fully convolutional.

    Each encoder level: two 3x3 conv + ReLU then 2x2 max-pooling; each decoder level: a 2x2
    transposed conv, concatenation with the encoder level's output, two 3x3 conv + ReLU; a 1x1
    conv (in the policy's dtype) and a sigmoid in float32 whatever the dtype policy give the cloud
    probability: the Keras mixed-precision recipe, which keeps the last conv on the fast path (a float32
    conv there, fed the 32-channel decoder output, doubled the bf16 inference time on an H200).
    ``head_dtype=None``: the sigmoid inside the conv, in the policy's dtype, as before (kept to time
    that model against this one).
    """
    inputs = keras.Input(input_shape, name="channels")
    x, skips = inputs, []
    for n in filters:
        x = _conv_block(x, n)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = _conv_block(x, bottleneck)
    for n, skip in zip(reversed(filters), reversed(skips), strict=True):
        x = layers.Conv2DTranspose(n, 2, strides=2, padding="same")(x)
        x = _conv_block(layers.Concatenate()([x, skip]), n)
    if head_dtype is None:
        outputs = layers.Conv2D(1, 1, activation="sigmoid", name="cloud_probability")(x)
    else:
        logits = layers.Conv2D(1, 1, name="cloud_logits")(x)
        outputs = layers.Activation("sigmoid", dtype=head_dtype, name="cloud_probability")(logits)
    return keras.Model(inputs, outputs, name="unet")


def _conv_block(x, n_filters: int):
    for _ in range(2):
        x = layers.Conv2D(n_filters, 3, padding="same", activation="relu")(x)
    return x


def compile_unet(
    model: keras.Model,
    *,
    learning_rate: float = 1e-3,
    clip_offset: int = 15,
    class_weights: tuple[float, float] = (1.0, 1.0),
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Compile with Adam, the masked loss and the masked pixel accuracy (the seed's set-up).

    ``jit_compile`` is Keras's: ``"auto"`` XLA-compiles the step where the backend and device favour it
    (always under JAX, on a GPU under TensorFlow), ``True``/``False`` force it on or off. Under
    ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer`` itself (its loss scaling).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=MaskedBinaryCrossentropy(clip_offset=clip_offset, class_weights=class_weights),
        metrics=[MaskedAccuracy(clip_offset=clip_offset)],
        jit_compile=jit_compile,
    )
    return model


def _scored(y_true, y_pred, clip_offset: int):
    """Labels, weights and probabilities (float32) inside the border of ``clip_offset`` pixels cut from every patch."""
    y_true = ops.cast(y_true, LOSS_DTYPE)
    y_pred = ops.cast(y_pred, LOSS_DTYPE)  # a no-op for this U-Net, whose head is float32
    if clip_offset:
        y_true = y_true[:, clip_offset:-clip_offset, clip_offset:-clip_offset]
        y_pred = y_pred[:, clip_offset:-clip_offset, clip_offset:-clip_offset]
    return y_true[..., 0], y_true[..., 1], y_pred[..., 0]


@keras.saving.register_keras_serializable(package="cloud_tasks")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy averaged over the weighted pixels of the batch inside the clipped border.

    The reference cut ``clip_offset`` pixels from every patch edge, where predictions lack context.
    Pixels of weight 0 (an input channel was NaN) do not count; ``class_weights`` (clear, cloud)
    optionally rebalance the classes. The value is ``sum(w * bce) / sum(w)`` over the batch.
    """

    def __init__(self, clip_offset=15, class_weights=(1.0, 1.0), name="masked_bce", **kwargs):
        kwargs["dtype"] = LOSS_DTYPE  # not the global policy's (a saved config may name another)
        super().__init__(name=name, **kwargs)
        self.clip_offset = int(clip_offset)
        self.class_weights = tuple(float(w) for w in class_weights)

    def call(self, y_true, y_pred):
        labels, weights, probs = _scored(y_true, y_pred, self.clip_offset)
        clear_weight, cloud_weight = self.class_weights
        weights = weights * (clear_weight + (cloud_weight - clear_weight) * labels)
        bce = ops.binary_crossentropy(labels, probs)
        # A scalar: Keras's reduction leaves it as is.
        return ops.sum(weights * bce) / ops.maximum(ops.sum(weights), keras.config.epsilon())

    def get_config(self):
        return {**super().get_config(), "clip_offset": self.clip_offset, "class_weights": list(self.class_weights)}


@keras.saving.register_keras_serializable(package="cloud_tasks")
class MaskedAccuracy(keras.metrics.Metric):
    """Pixel accuracy of ``probability >= threshold`` over the pixels the loss scores (weighted)."""

    def __init__(self, clip_offset=15, threshold=0.5, name="accuracy", **kwargs):
        kwargs["dtype"] = LOSS_DTYPE
        super().__init__(name=name, **kwargs)
        self.clip_offset = int(clip_offset)
        self.threshold = float(threshold)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate; ``sample_weight`` is unused (the weights travel in ``y_true``)."""
        labels, weights, probs = _scored(y_true, y_pred, self.clip_offset)
        predicted = ops.cast(ops.greater_equal(probs, self.threshold), LOSS_DTYPE)
        hits = ops.cast(ops.equal(predicted, labels), LOSS_DTYPE)
        self.correct.assign_add(ops.sum(hits * weights))
        self.total.assign_add(ops.sum(weights))

    def result(self):
        return self.correct / ops.maximum(self.total, keras.config.epsilon())

    def get_config(self):
        return {**super().get_config(), "clip_offset": self.clip_offset, "threshold": self.threshold}


def configure_devices(cpu_only: bool = False):
    """Hide GPUs if ``cpu_only``, let GPU memory grow, and return the distribution strategy to use.

    Must run before TensorFlow places any tensor. More than one visible GPU gives a
    ``MirroredStrategy`` (the batch size is then the global batch), else the default strategy.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        if cpu_only:
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # devices already initialised by an earlier call in this process: keep their set-up
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Save a ``.keras`` file atomically.

    Keras insists on a ``.keras`` name, which the temporary file of ``atomic_file`` lacks: the
    model is saved beside it under such a name, then moved onto it.
    """
    with atomic_file(path) as tmp:
        staged = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)
    return Path(path)


def load_model(path: str | Path, *, compile: bool = True, n_channels: int = N_CHANNELS) -> keras.Model:
    """Load a ``.keras`` model of this package taking ``n_channels`` inputs; raise InputError naming the file if
    it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such model file")
    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as exc:  # Keras raises ValueError, BadZipFile, KeyError, OSError... for a non-model
        raise InputError(path, f"not a Keras model file: {type(exc).__name__}: {exc}") from None
    if model.input_shape[-1] != n_channels:
        raise InputError(path, f"model takes {model.input_shape[-1]} channels, not {n_channels}")
    return model


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds``, ``train_seconds`` and ``test_seconds`` (validation) to each epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.test_start = self.test_end = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.test_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self.start
            logs["train_seconds"] = self.test_start - self.start
            logs["test_seconds"] = self.test_end - self.test_start
