"""Registering a finished training run as a model version: held-out scores (beside the production model's
on the same products), ``metrics.json``, the model card and ``version.json``."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cloud_tasks import __version__
from cloud_tasks.atomic import atomic_file, write_json
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.hdf import INPUT_CHANNELS
from cloud_tasks.layout import HDF_SUFFIX, ModelFiles
from cloud_tasks.paths import expand_inputs
from cloud_tasks.registry import KINDS, ModelRegistry, Version

METRICS_SHOWN = ("accuracy", "precision", "recall", "f1", "majority_rate", "pixels")


def held_out(training: ModelFiles, inputs: Sequence[str | Path]) -> list[Path]:
    """The products training kept for testing (``params.json``'s ``test_products``) among ``inputs``."""
    params = json.loads(training.params.read_text())
    names = set(params.get("test_products", []))
    found = [p for p in expand_inputs(inputs, HDF_SUFFIX) if p.stem in names]
    if not found:
        raise CloudTasksError(f"{training.params}: none of its test products is among the inputs")
    return found


def register_training(
    data_root: str | Path,
    training: ModelFiles,
    *,
    key: str,
    holdout: Sequence[Path],
    period: dict | None = None,
) -> Version:
    """Score the training run and the production model (if any) on ``holdout``; register the run."""
    from cloud_tasks.ml.evaluate import evaluate
    from cloud_tasks.ml.inference import sha256

    registry = ModelRegistry(data_root)
    params = json.loads(training.params.read_text())
    label, kind = params["parameters"]["label"], params["parameters"].get("kind", KINDS[0])
    metrics = {"candidate": evaluate(training.model, holdout, label), "held_out_products": [p.name for p in holdout]}
    production = registry.production_name(kind)
    if production is not None:
        metrics["production"] = {
            "version": production,
            **evaluate(registry.version(production).files.model, holdout, label),
        }
    info = {
        "model_sha256": sha256(training.model),
        "registered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "period": period or {},
        "label": label,
        "kind": kind,
        "options": params["parameters"],
        "train_products": params.get("train_products", []),
        "test_products": params.get("test_products", []),
        "input_channels": list(INPUT_CHANNELS),
        "normalisation": _normalisation(),
        "cloud_tasks_version": __version__,
        "git_commit": _git_commit(),
    }

    def write_extras(staged: ModelFiles) -> None:
        write_json(staged.metrics, metrics)
        with atomic_file(staged.card) as tmp:
            tmp.write_text(model_card(info, metrics))

    return registry.register(training, key=key, info=info, write_extras=write_extras)


def _normalisation() -> dict:
    from cloud_tasks.ml import data

    return {
        "reflectance": f"r - {data.REFLECTANCE_OFFSET}",
        "brightness_temperature": f"(T - {data.BT_OFFSET}) / {data.BT_SCALE}",
        "missing": "0 after normalisation",
    }


def _git_commit() -> str | None:
    """The commit of the code, from ``CLOUD_TASKS_GIT_COMMIT`` (images) or the checkout; None if unknown."""
    if os.environ.get("CLOUD_TASKS_GIT_COMMIT"):
        return os.environ["CLOUD_TASKS_GIT_COMMIT"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def model_card(info: dict, metrics: dict) -> str:
    """The model card (Markdown): what data, which products, label, inputs, normalisation, held-out scores."""
    columns = [("candidate", metrics["candidate"])]
    if "production" in metrics:
        columns.append((f"production ({metrics['production']['version']})", metrics["production"]))
    header = "| metric | " + " | ".join(name for name, _ in columns) + " |"
    rows = [header, "|---|" + "---:|" * len(columns)]
    rows += [f"| {m} | " + " | ".join(_fmt(values.get(m)) for _, values in columns) + " |" for m in METRICS_SHOWN]
    period = info["period"]
    return "\n".join(
        [
            "# Model card: SLSTR cloud mask U-Net",
            "",
            f"- Training period: {period.get('start', '?')} to {period.get('end', '?')} (end exclusive)",
            f"- Products: {len(info['train_products'])} for training, {len(info['test_products'])} held out",
            f"- Label source: `{info['label']}`",
            f"- Input channels: {', '.join(info['input_channels'])}",
            f"- Normalisation: {json.dumps(info['normalisation'])}",
            f"- Options: `{json.dumps(info['options'], sort_keys=True)}`",
            f"- Model SHA-256: `{info['model_sha256']}`",
            f"- cloud_tasks {info['cloud_tasks_version']}, commit {info['git_commit'] or 'unknown'}",
            "",
            f"## Scores on {len(metrics['held_out_products'])} held-out products (pixels with all channels valid)",
            "",
            *rows,
            "",
        ]
    )


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
