"""``train``: fit the U-Net on converted HDF5 products, resumable and idempotent.

Outputs in OUT:

- ``model.keras``: the trained model, written last (its presence marks a finished run);
- ``checkpoints/epoch_NNN.keras``: the full model (optimizer included) after each epoch, the two
  latest kept; a killed run started again with the same OUT resumes after the latest one;
- ``history.csv`` (one row per epoch, continued across resumes), ``history.json``,
  ``training_curves.png``, TensorBoard logs in ``logs/``;
- ``params.json``: the parameters (``kind`` among them), the model's inputs (``inputs``: ``data.input_spec``, what
  inference builds with ``data.model_inputs``), the train/test products, patch counts, the majority-class rate
  of the test set and the final test accuracy.

``--kind day`` (the default) trains the nine-channel model on day products; ``--kind thermal`` the
brightness-temperature model on the night and twilight pixels of the products (``data`` says which).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from cloud_tasks import __version__
from cloud_tasks.atomic import atomic_file, output_dir, write_json
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.layout import ModelFiles
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.paths import expand_inputs

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^epoch_(\d+)\.keras$")
KEEP_CHECKPOINTS = 2
DEFAULT_OPTIONS = TrainOptions()


def train(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    options: TrainOptions = DEFAULT_OPTIONS,
    *,
    cpu_only: bool = False,
) -> Path:
    """Train the U-Net on the converted products ``inputs`` (files, folders, globs, lists); return the model path.

    A finished ``out_dir`` with the same options is left as it is; an interrupted one resumes after its last
    checkpoint; one trained for fewer epochs with otherwise equal options is trained on up to ``options.epochs``.
    One run at a time per ``out_dir``: a second one refuses at once (InputError).
    """
    from cloud_tasks.ml import data

    products = data.select_products(expand_inputs(inputs, ".h5"), options.label, options.patch_size, options.kind)
    files = ModelFiles(output_dir(out_dir))  # made once the inputs are known good: bad ones leave no OUT behind
    with _exclusive(files):
        return _train(products, files, options, cpu_only)


@contextlib.contextmanager
def _exclusive(files: ModelFiles) -> Iterator[None]:
    """Hold an exclusive ``flock`` on OUT's lock file for the whole run (released by the OS if the run dies)."""
    try:
        fd = os.open(files.lock, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(files.folder, f"cannot create its lock file: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(files.folder, "another training run holds it") from None
        except OSError as exc:
            raise InputError(files.folder, f"cannot lock it: {exc.strerror}") from None
        yield
    finally:
        os.close(fd)


def _train(products: list, files: ModelFiles, options: TrainOptions, cpu_only: bool) -> Path:
    """Train on the usable ``products`` into ``files``, whose lock this process holds."""
    from cloud_tasks.ml import data

    names = sorted(p.name for p in products)
    previous = _previous_run(files)
    if previous is not None:
        _check_same_run(files.folder, previous, options, names)
        if files.model.is_file() and previous == (options, names):
            log.info("%s already holds a model trained with these options: nothing to do", files.folder)
            return files.model
    done, checkpoint = _latest_checkpoint(files.checkpoints)
    if done > options.epochs:
        raise CloudTasksError(
            f"{files.folder} was already trained for {done} epochs, more than the {options.epochs} asked"
        )

    train_set, test_set = data.split_products(products, options.train_split, options.seed)
    summary = {
        "parameters": {**options.as_dict(), "products": names},
        "inputs": data.input_spec(options.kind),
        "train_products": [p.name for p in train_set],
        "test_products": [p.name for p in test_set],
        "train_patches": sum(p.n_patches for p in train_set),
        "test_patches": sum(p.n_patches for p in test_set),
        "test_majority_rate": data.majority_rate(
            test_set, options.label, options.patch_size, options.clip_offset, options.kind
        ),
        "cloud_tasks_version": __version__,
    }
    # model.keras marks a finished run: a stale one (fewer epochs) must not outlive this start.
    files.model.unlink(missing_ok=True)
    write_json(files.params, summary)
    log.info(
        "training on %d product(s) (%d patches), testing on %d (%d patches)",
        len(train_set),
        summary["train_patches"],
        len(test_set),
        summary["test_patches"],
    )
    model, summary["test_accuracy"] = _fit(files, (train_set, test_set), options, (done, checkpoint), cpu_only)
    _finish(files, model, summary)
    log.info(
        "test accuracy %.4f (majority-class rate %.4f); model in %s",
        summary["test_accuracy"],
        summary["test_majority_rate"],
        files.model,
    )
    return files.model


def _fit(files: ModelFiles, products: tuple, options: TrainOptions, resume: tuple[int, Path | None], cpu_only: bool):
    """Build the model or load the checkpoint ``resume`` (epochs done, path), fit it up to ``options.epochs``
    on ``products`` (train set, test set); return it and its test accuracy."""
    import keras

    from cloud_tasks.ml import data
    from cloud_tasks.ml.model import build_unet, compile_unet, configure_devices

    strategy = configure_devices(cpu_only)
    keras.utils.set_random_seed(options.seed)
    done, checkpoint = resume
    with _dtype_policy(options.precision), strategy.scope():
        if checkpoint:
            log.info("resuming after epoch %d from %s", done, checkpoint)
            model = load_trained(checkpoint, options.kind)
        else:
            model = compile_unet(
                build_unet(input_shape=(None, None, data.n_inputs(options.kind))),
                learning_rate=options.learning_rate,
                clip_offset=options.clip_offset,
                class_weights=options.class_weights,
                jit_compile=options.jit_compile,
            )
    train_set, test_set = (
        data.make_dataset(
            subset,
            label=options.label,
            patch_size=options.patch_size,
            batch_size=options.batch_size,
            shuffle=shuffle,
            seed=options.seed,
            kind=options.kind,
        )
        for subset, shuffle in zip(products, (True, False), strict=True)
    )
    _repair_history(files.history_csv, done)
    if done < options.epochs:
        model.fit(
            train_set,
            validation_data=test_set,
            epochs=options.epochs,
            initial_epoch=done,
            callbacks=_callbacks(files, model),
            shuffle=False,  # the training dataset shuffles itself
            verbose=2,
        )
    return model, model.evaluate(test_set, verbose=0, return_dict=True)["accuracy"]


@contextlib.contextmanager
def _dtype_policy(precision: str) -> Iterator[None]:
    """Keras's global dtype policy set to ``precision`` while the model is built or loaded (its layers keep it)."""
    import keras

    from cloud_tasks.ml.model import set_precision

    previous = keras.config.dtype_policy()
    set_precision(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _callbacks(files: ModelFiles, model) -> list:
    """History CSV before the checkpoint, so that a resume never misses an epoch's row (see _repair_history)."""
    import keras

    from cloud_tasks.ml.model import EpochTimer

    return [
        EpochTimer(),  # first, so that the loggers after it record its timings (benchmarks read them)
        keras.callbacks.CSVLogger(str(files.history_csv), append=True),
        _tensorboard(files.tensorboard),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: _save_checkpoint(model, files.checkpoints, epoch + 1)
        ),
    ]


def _tensorboard(log_dir: Path):
    """Epoch scalars in TensorBoard event files, as Keras's TensorBoard callback writes them.

    Written with TensorFlow's own summary ops: Keras's callback needs the ``tensorboard`` package,
    which tensorflow-cpu 2.21 does not install.
    """
    import keras
    import tensorflow as tf
    from tensorflow.core.framework.summary_pb2 import SummaryMetadata

    scalar = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    writers = {split: tf.summary.create_file_writer(str(log_dir / split)) for split in ("train", "validation")}

    def write(epoch: int, logs: dict) -> None:
        for key, value in logs.items():
            split, name = ("validation", key.removeprefix("val_")) if key.startswith("val_") else ("train", key)
            with writers[split].as_default():
                tf.summary.write(f"epoch_{name}", float(value), step=epoch, metadata=scalar)
        for writer in writers.values():
            writer.flush()

    return keras.callbacks.LambdaCallback(on_epoch_end=write)


def _save_checkpoint(model, directory: Path, epoch: int) -> None:
    """Save the model after ``epoch`` (1-based) and delete all but the latest checkpoints."""
    from cloud_tasks.ml.model import save_model

    save_model(model, directory / f"epoch_{epoch:03d}.keras")
    for _, old in sorted(_checkpoints(directory))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = ((CHECKPOINT_RE.match(p.name), p) for p in directory.iterdir())
    return [(int(match[1]), p) for match, p in found if match]


def _latest_checkpoint(directory: Path) -> tuple[int, Path | None]:
    """The number of completed epochs and the checkpoint holding them (0, None when there is none)."""
    checkpoints = _checkpoints(directory)
    return max(checkpoints) if checkpoints else (0, None)


def _repair_history(path: Path, epochs_done: int) -> None:
    """Keep in history.csv one valid row per epoch before the checkpoint we resume from: rows of later epochs
    (written before a kill), duplicates, repeated headers, truncated rows and garbage go, so that the re-run
    epochs appear once. Without a valid header the file goes (the logger starts a new one)."""
    header, rows = _history_rows(path)
    if not header:
        path.unlink(missing_ok=True)
        return
    kept = [header] + [row for epoch, row in sorted(rows.items()) if epoch < epochs_done]
    with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(kept)


def _history_rows(path: Path) -> tuple[list[str], dict[int, list[str]]]:
    """The header of history.csv (its first line starting with ``epoch``) and its valid rows by epoch, the
    last row of an epoch winning: a valid row has the header's length, an integer epoch and numbers elsewhere."""
    if not path.is_file():
        return [], {}
    header, rows = [], {}
    for line in path.read_text(errors="replace").replace("\0", "").splitlines():
        try:
            row = next(csv.reader([line]), [])
        except csv.Error:
            continue
        if not header:
            header = row if row[:1] == ["epoch"] and len(set(row)) == len(row) and all(row) else []
        elif len(row) == len(header) and row[0].isascii() and row[0].isdigit() and all(map(_is_float_text, row[1:])):
            rows[int(row[0])] = row
    return header, rows


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as Keras's ``History.history``: column name -> values by epoch."""
    header, rows = _history_rows(path)
    ordered = [rows[epoch] for epoch in sorted(rows)]
    return {key: [float(row[i]) for row in ordered] for i, key in enumerate(header)} if ordered else {}


def _finish(files: ModelFiles, model, summary: dict) -> None:
    """Write history.json, the curves and the final params.json, then the model (the completion mark)."""
    from cloud_tasks.ml.model import save_model

    history = _read_history(files.history_csv)
    write_json(files.history_json, history)
    _plot_history(history, files.curves)
    summary["epochs_completed"] = len(history.get("epoch", []))
    write_json(files.params, summary)
    save_model(model, files.model)


def _plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy by epoch, train against test."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for key, name in ((metric, "train"), (f"val_{metric}", "test")):
            if key in history:
                ax.plot(epochs, history[key], marker="o", label=name)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.legend()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _previous_run(files: ModelFiles) -> tuple[TrainOptions, list[str]] | None:
    """The options and products of the run that OUT already holds (None if it holds none), checked."""
    if not files.params.is_file():
        return None
    options, products, _ = _recorded_run(files.params, hint=": delete OUT to retrain")
    return options, products


def _recorded_run(path: Path, hint: str = "") -> tuple[TrainOptions, list[str], dict | None]:
    """The options, products and inputs (None before they were recorded) that a ``params.json`` holds, checked."""
    try:
        recorded = json.loads(path.read_text())
        parameters = recorded["parameters"]
        products = parameters["products"]
        if not isinstance(products, list) or not all(isinstance(name, str) for name in products):
            raise TypeError("products is not a list of names")
        return TrainOptions.from_mapping(parameters), products, recorded.get("inputs")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, CloudTasksError) as exc:
        raise InputError(path, f"not the parameters of a training run ({exc}){hint}") from None


def model_kind(model_path: str | Path) -> str:
    """The kind of a trained model: the one its ``params.json`` records (the file beside it, in a training folder
    or a registry version), day for a model without one or trained before kinds existed.

    A ``params.json`` whose recorded inputs differ from those ``data.model_inputs`` builds for its kind today is
    refused (InputError): the model would be fed other inputs than it learnt from.
    """
    from cloud_tasks.ml import data

    params = ModelFiles(Path(model_path).parent).params
    if not params.is_file():
        return DEFAULT_OPTIONS.kind
    options, _, inputs = _recorded_run(params)
    if inputs is not None and inputs != data.input_spec(options.kind):
        raise InputError(params, f"records other inputs than a {options.kind} model takes now: retrain the model")
    return options.kind


def load_trained(path: str | Path, kind: str, *, compile: bool = True):
    """A saved model of ``kind``, checked to take that kind's inputs (InputError naming the file otherwise)."""
    from cloud_tasks.ml import data
    from cloud_tasks.ml.model import load_model

    return load_model(path, compile=compile, n_channels=data.n_inputs(kind))


def _check_same_run(out: Path, previous: tuple[TrainOptions, list[str]], options: TrainOptions, products) -> None:
    """Refuse to mix runs: an OUT may only be resumed or extended (more epochs) with the same options."""
    before, now = previous[0].as_dict(), options.as_dict()
    changed = sorted(key for key in now if key != "epochs" and before[key] != now[key])
    changed += ["products"] if previous[1] != products else []
    if changed:
        raise CloudTasksError(
            f"{out} holds a training run with different {', '.join(changed)}: use another output folder or delete it"
        )


def register(subparsers) -> None:
    """Add the ``train`` sub-command: its options and defaults are ``TrainOptions``'."""
    p = subparsers.add_parser(
        "train",
        help="train the U-Net cloud mask on converted HDF5 products",
        description="Train the U-Net cloud mask on converted HDF5 products (day products, or with --kind thermal "
        "the night and twilight pixels); resumes an interrupted OUT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="HDF_INPUT", help="converted .h5 files, folders, globs or .txt lists")
    p.add_argument("out", metavar="OUT", help="output folder (model, checkpoints, history, logs)")
    TrainOptions.add_arguments(p)
    p.add_argument("--cpu-only", action="store_true", help="hide GPUs from TensorFlow")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> None:
    train(args.inputs, args.out, TrainOptions.from_args(args), cpu_only=args.cpu_only)
