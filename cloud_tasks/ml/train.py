"""``train``: fit the U-Net on converted HDF5 products, resumable and idempotent.

Outputs in OUT:

- ``model.keras``: the trained model, written last (its presence marks a finished run);
- ``checkpoints/epoch_NNN.keras``: the full model (optimizer included) after each epoch, the two
  latest kept; a killed run started again with the same OUT resumes after the latest one;
- ``history.csv`` (one row per epoch, continued across resumes), ``history.json``,
  ``training_curves.png``, TensorBoard logs in ``logs/``;
- ``params.json``: the parameters, the train/test products, patch counts, the majority-class rate
  of the test set and the final test accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from cloud_tasks import __version__
from cloud_tasks.atomic import atomic_file, write_json
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.hdf import LABEL_SOURCES
from cloud_tasks.paths import expand_inputs

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
PARAMS_FILE = "params.json"
HISTORY_CSV = "history.csv"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_RE = re.compile(r"^epoch_(\d+)\.keras$")
KEEP_CHECKPOINTS = 2


def train(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    clip_offset: int = 15,
    train_split: float = 0.8,
    label: str = "bayes",
    patch_size: int = 256,
    seed: int = 42,
    cpu_only: bool = False,
    class_weights: tuple[float, float] = (1.0, 1.0),
) -> Path:
    """Train the U-Net on the converted products ``inputs`` (files, folders, globs, lists); return the model path.

    A finished ``out_dir`` with the same parameters is left as it is; an interrupted one resumes
    after its last checkpoint; one trained for fewer epochs with otherwise equal parameters is
    trained on up to ``epochs``. ``batch_size`` is the global batch (split across GPUs).
    """
    from cloud_tasks.ml import data

    _check_parameters(epochs, batch_size, clip_offset, patch_size, train_split)
    out = Path(out_dir)
    products = data.select_products(expand_inputs(inputs, ".h5"), label, patch_size)
    params = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "clip_offset": clip_offset,
        "train_split": train_split,
        "label": label,
        "patch_size": patch_size,
        "seed": seed,
        "class_weights": [float(w) for w in class_weights],
        "products": sorted(p.name for p in products),
    }
    previous = _read_json(out / PARAMS_FILE)
    if previous is not None:
        _check_same_run(out, previous["parameters"], params)
        if (out / MODEL_FILE).is_file() and previous["parameters"] == params:
            log.info("%s already holds a model trained with these parameters: nothing to do", out)
            return out / MODEL_FILE
    done, checkpoint = _latest_checkpoint(out / CHECKPOINT_DIR)
    if done > epochs:
        raise CloudTasksError(f"{out} was already trained for {done} epochs, more than the {epochs} asked")

    train_set, test_set = data.split_products(products, train_split, seed)
    summary = {
        "parameters": params,
        "train_products": [p.name for p in train_set],
        "test_products": [p.name for p in test_set],
        "train_patches": sum(p.n_patches for p in train_set),
        "test_patches": sum(p.n_patches for p in test_set),
        "test_majority_rate": data.majority_rate(test_set, label, patch_size, clip_offset),
        "cloud_tasks_version": __version__,
    }
    # model.keras marks a finished run: a stale one (fewer epochs) must not outlive this start.
    (out / MODEL_FILE).unlink(missing_ok=True)
    write_json(out / PARAMS_FILE, summary)
    log.info(
        "training on %d product(s) (%d patches), testing on %d (%d patches)",
        len(train_set),
        summary["train_patches"],
        len(test_set),
        summary["test_patches"],
    )

    resume = (done, checkpoint)
    model, summary["test_accuracy"] = _fit(out, train_set, test_set, params, resume=resume, cpu_only=cpu_only)
    _finish(out, model, summary)
    log.info(
        "test accuracy %.4f (majority-class rate %.4f); model in %s",
        summary["test_accuracy"],
        summary["test_majority_rate"],
        out / MODEL_FILE,
    )
    return out / MODEL_FILE


def _fit(out: Path, train_set, test_set, params: dict, *, resume: tuple[int, Path | None], cpu_only: bool):
    """Build the model or load the checkpoint ``resume`` (epochs done, path), fit it up to
    ``params['epochs']``; return it and its test accuracy."""
    import keras

    from cloud_tasks.ml import data
    from cloud_tasks.ml.model import build_unet, compile_unet, configure_devices, load_model

    strategy = configure_devices(cpu_only)
    keras.utils.set_random_seed(params["seed"])
    done, checkpoint = resume
    with strategy.scope():
        if checkpoint:
            log.info("resuming after epoch %d from %s", done, checkpoint)
            model = load_model(checkpoint)
        else:
            model = compile_unet(
                build_unet(),
                learning_rate=params["learning_rate"],
                clip_offset=params["clip_offset"],
                class_weights=tuple(params["class_weights"]),
            )
    datasets = {
        name: data.make_dataset(
            products,
            label=params["label"],
            patch_size=params["patch_size"],
            batch_size=params["batch_size"],
            shuffle=name == "train",
            seed=params["seed"],
        )
        for name, products in (("train", train_set), ("test", test_set))
    }
    _truncate_history(out / HISTORY_CSV, done)
    if done < params["epochs"]:
        model.fit(
            datasets["train"],
            validation_data=datasets["test"],
            epochs=params["epochs"],
            initial_epoch=done,
            callbacks=_callbacks(out, model),
            shuffle=False,  # the training dataset shuffles itself
            verbose=2,
        )
    return model, model.evaluate(datasets["test"], verbose=0, return_dict=True)["accuracy"]


def _callbacks(out: Path, model) -> list:
    """History CSV before the checkpoint, so that a resume never misses an epoch's row (see _truncate_history)."""
    import keras

    from cloud_tasks.ml.model import EpochTimer

    checkpoints = out / CHECKPOINT_DIR
    return [
        EpochTimer(),  # first, so that the loggers after it record its timings (benchmarks read them)
        keras.callbacks.CSVLogger(str(out / HISTORY_CSV), append=True),
        _tensorboard(out / "logs"),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: _save_checkpoint(model, checkpoints, epoch + 1)
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


def _truncate_history(path: Path, epochs_done: int) -> None:
    """Drop history rows of epochs after the checkpoint we resume from (written before a kill), so
    that the re-run epochs appear once."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epochs_done]
    if len(kept) < len(rows):
        with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
            csv.writer(f).writerows(kept)


def _read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as Keras's ``History.history``: column name -> values by epoch."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in rows[0]} if rows else {}


def _finish(out: Path, model, summary: dict) -> None:
    """Write history.json, the curves and the final params.json, then the model (the completion mark)."""
    from cloud_tasks.ml.model import save_model

    history = _read_history(out / HISTORY_CSV)
    write_json(out / "history.json", history)
    _plot_history(history, out / "training_curves.png")
    summary["epochs_completed"] = len(history.get("epoch", []))
    write_json(out / PARAMS_FILE, summary)
    save_model(model, out / MODEL_FILE)


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


def _check_parameters(epochs: int, batch_size: int, clip_offset: int, patch_size: int, train_split: float) -> None:
    if epochs < 1 or batch_size < 1:
        raise CloudTasksError(f"epochs and batch size must be positive (got {epochs}, {batch_size})")
    if patch_size % 8 or patch_size <= 2 * clip_offset:
        raise CloudTasksError(
            f"patch size {patch_size} must be a multiple of 8 (three poolings) "
            f"and exceed twice the clip offset {clip_offset}"
        )
    if not 0.0 < train_split <= 1.0:
        raise CloudTasksError(f"train split must be in (0, 1], got {train_split}")


def _check_same_run(out: Path, previous: dict, params: dict) -> None:
    """Refuse to mix runs: an OUT may only be resumed or extended (more epochs) with the same parameters."""
    changed = sorted(
        key for key in params.keys() | previous.keys() if key != "epochs" and previous.get(key) != params.get(key)
    )
    if changed:
        raise CloudTasksError(
            f"{out} holds a training run with different {', '.join(changed)}: use another output folder or delete it"
        )


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def register(subparsers) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train the U-Net cloud mask on converted HDF5 products",
        description="Train the U-Net cloud mask on converted HDF5 day products; resumes an interrupted OUT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="HDF_INPUT", help="converted .h5 files, folders, globs or .txt lists")
    p.add_argument("out", metavar="OUT", help="output folder (model, checkpoints, history, logs)")
    p.add_argument("--epochs", type=int, default=30, help="epochs to train in all (resumed runs included)")
    p.add_argument("--batch-size", type=int, default=32, help="global batch size, in patches")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--clip-offset", type=int, default=15, help="border cut from every patch in the loss, px")
    p.add_argument("--train-split", type=float, default=0.8, help="share of products used for training")
    p.add_argument("--label", choices=LABEL_SOURCES, default="bayes", help="mask the model learns")
    p.add_argument("--patch-size", type=int, default=256, help="training patch side, px (multiple of 8)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split, shuffling and weights")
    p.add_argument(
        "--class-weights", type=float, nargs=2, default=(1.0, 1.0), metavar=("CLEAR", "CLOUD"), help="loss weights"
    )
    p.add_argument("--cpu-only", action="store_true", help="hide GPUs from TensorFlow")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    train(
        args.inputs,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        clip_offset=args.clip_offset,
        train_split=args.train_split,
        label=args.label,
        patch_size=args.patch_size,
        seed=args.seed,
        cpu_only=args.cpu_only,
        class_weights=tuple(args.class_weights),
    )
