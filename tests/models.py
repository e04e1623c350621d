"""Putting a real ``.keras`` file into a data root's model registry as a promoted version, without training:
what the daily DAG's tests need (the training DAG's own tests register trained models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cloud_tasks.layout import ModelFiles
from cloud_tasks.ml.inference import sha256
from cloud_tasks.registry import ModelRegistry, Version


def install_model(data_root: Path, model: Path, *, key: str = "test-model", promote: bool = True) -> Version:
    """Register ``model`` (a ``.keras`` file) under ``key`` in ``data_root``'s registry, promoted if asked."""
    registry = ModelRegistry(data_root)
    training = ModelFiles(registry.files.training(key).folder)
    training.folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, training.model)
    training.params.write_text(json.dumps({"parameters": {"label": "bayes"}, "test_products": []}))

    def metrics(staged: ModelFiles) -> None:
        staged.metrics.write_text(json.dumps({"candidate": {"accuracy": None}, "held_out_products": []}))
        staged.card.write_text("# test model\n")

    info = {"model_sha256": sha256(training.model), "label": "bayes", "period": {}}
    version = registry.register(training, key=key, info=info, write_extras=metrics)
    if promote:
        registry.promote(version.name, reason="test", by="tests")
    return version
