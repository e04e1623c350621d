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
from cloud_tasks.layout import HDF_SUFFIX, ModelFiles
from cloud_tasks.paths import expand_inputs
from cloud_tasks.registry import ModelRegistry, Version

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
    from cloud_tasks.ml.data import input_spec
    from cloud_tasks.ml.evaluate import evaluate
    from cloud_tasks.ml.inference import sha256
    from cloud_tasks.ml.train import model_kind

    # the kind and inputs params.json records (model_kind checks them against those the kind takes), or the day
    # kind's for a run trained before they were recorded
    kind = model_kind(training.model)
    spec = input_spec(kind)
    registry = ModelRegistry(data_root)
    params = json.loads(training.params.read_text())
    label = params["parameters"]["label"]
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
        "domain": spec["domain"],
        "input_channels": [item["name"] for item in spec["inputs"]],
        "normalisation": {"inputs": spec["inputs"], "missing": spec["missing"]},
        "cloud_tasks_version": __version__,
        "git_commit": _git_commit(),
    }

    def write_extras(staged: ModelFiles) -> None:
        write_json(staged.metrics, metrics)
        with atomic_file(staged.card) as tmp:
            tmp.write_text(model_card(info, metrics))

    return registry.register(training, key=key, info=info, write_extras=write_extras)


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
            f"# Model card: SLSTR cloud mask U-Net, {info['kind']} model",
            "",
            f"- Kind: {info['kind']}, for the pixels with {info['domain']}",
            f"- Training period: {period.get('start', '?')} to {period.get('end', '?')} (end exclusive)",
            f"- Products: {len(info['train_products'])} for training, {len(info['test_products'])} held out",
            f"- Label source: `{info['label']}`",
            f"- Inputs: {', '.join(map(input_formula, info['normalisation']['inputs']))}; missing values "
            f"{info['normalisation']['missing']}",
            f"- Options: `{json.dumps(info['options'], sort_keys=True)}`",
            f"- Model SHA-256: `{info['model_sha256']}`",
            f"- cloud_tasks {info['cloud_tasks_version']}, commit {info['git_commit'] or 'unknown'}",
            "",
            f"## Scores on {len(metrics['held_out_products'])} held-out products (the {info['kind']} model's pixels)",
            "",
            *rows,
            "",
        ]
    )


def channel_expression(terms: dict) -> str:
    """A linear combination of channels (``{"S8": 1.0, "S9": -1.0}``) as text: ``S8 - S9``."""
    text = ""
    for channel, coefficient in terms.items():
        sign = "-" if coefficient < 0 else "+"
        term = channel if abs(coefficient) == 1 else f"{abs(coefficient):g} * {channel}"
        text = f"{text} {sign} {term}" if text else ("-" if sign == "-" else "") + term
    return text


def input_formula(item: dict) -> str:
    """One recorded input (``data.input_spec``'s ``inputs``) as a formula: ``S8-S9 = (S8 - S9) / 2``."""
    value = channel_expression(item["terms"])
    if item["offset"]:
        value = f"{value} - {item['offset']:g}"
    if item["scale"] != 1:
        value = f"({value}) / {item['scale']:g}" if " " in value else f"{value} / {item['scale']:g}"
    return value if value == item["name"] else f"{item['name']} = {value}"


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
