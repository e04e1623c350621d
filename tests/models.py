"""Real ``.keras`` models without training: an untrained model of a kind in a training folder (with the
``params.json`` a training run of that kind writes), and putting a model into a data root's registry as a promoted
version: what the daily DAG's and inference's tests need (the training DAG's own tests register trained models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cloud_tasks.layout import ModelFiles
from cloud_tasks.ml.inference import sha256
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.registry import KINDS, ModelRegistry, Version


def write_params(files: ModelFiles, kind: str) -> None:
    """The parts of a training run's ``params.json`` that say what a model of ``kind`` takes."""
    from cloud_tasks.ml import data

    parameters = {**TrainOptions(kind=kind).as_dict(), "products": []}
    payload = {"parameters": parameters, "inputs": data.input_spec(kind), "test_products": []}
    files.params.write_text(json.dumps(payload))


def untrained(folder: Path, kind: str = KINDS[0], seed: int = 0) -> Path:
    """An untrained U-Net of ``kind`` saved as ``folder/model.keras`` beside its ``params.json``."""
    import keras

    from cloud_tasks.ml import data
    from cloud_tasks.ml.model import build_unet, compile_unet, save_model

    files = ModelFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    save_model(compile_unet(build_unet(input_shape=(None, None, data.n_inputs(kind)))), files.model)
    write_params(files, kind)
    return files.model


def install_model(
    data_root: Path, model: Path, *, key: str = "test-model", promote: bool = True, kind: str = KINDS[0]
) -> Version:
    """Register ``model`` (a ``.keras`` file of ``kind``) under ``key`` in ``data_root``'s registry, promoted to the
    kind's production alias if asked."""
    registry = ModelRegistry(data_root)
    training = ModelFiles(registry.files.training(key).folder)
    training.folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, training.model)
    write_params(training, kind)

    def metrics(staged: ModelFiles) -> None:
        staged.metrics.write_text(json.dumps({"candidate": {"accuracy": None}, "held_out_products": []}))
        staged.card.write_text("# test model\n")

    info = {"model_sha256": sha256(training.model), "label": "bayes", "period": {}, "kind": kind}
    version = registry.register(training, key=key, info=info, write_extras=metrics)
    if promote:
        registry.promote(version.name, reason="test", by="tests")
    return version
