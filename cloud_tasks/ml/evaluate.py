"""Scores of a model's masks against a label source on held-out products: what a promotion is decided on.

Pixels scored: the domain of the model's kind (``data.model_inputs``: all nine channels valid for the day model;
for the thermal model the brightness temperatures valid and a reflectance not), whose inputs come from the same
function. The kind is the one the model's ``params.json`` records (``train.model_kind``). The majority-class rate
(the accuracy of always answering the commoner class) is the bar to beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_THRESHOLD = 0.5
COUNTS = ("true_positive", "false_positive", "true_negative", "false_negative")


def confusion(probability: np.ndarray, label: np.ndarray, valid: np.ndarray, threshold: float) -> dict[str, int]:
    """Pixel counts of cloud (positive) and clear (negative) answers against the label, over ``valid`` pixels."""
    cloud = probability[valid] >= threshold
    truth = label[valid].astype(bool)
    return {
        "true_positive": int(np.sum(cloud & truth)),
        "false_positive": int(np.sum(cloud & ~truth)),
        "true_negative": int(np.sum(~cloud & ~truth)),
        "false_negative": int(np.sum(~cloud & truth)),
    }


def scores(counts: dict[str, int]) -> dict[str, float | int | None]:
    """Accuracy, precision, recall, F1 and the majority-class rate from confusion counts (None where undefined)."""
    tp, fp, tn, fn = (counts[name] for name in COUNTS)
    pixels = tp + fp + tn + fn

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {
        "pixels": pixels,
        "accuracy": ratio(tp + tn, pixels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "majority_rate": ratio(max(tp + fn, tn + fp), pixels),
        "cloud_fraction": ratio(tp + fn, pixels),
    }


def evaluate(
    model_path: str | Path, products: Sequence[str | Path], label: str, threshold: float = DEFAULT_THRESHOLD
) -> dict:
    """Score ``model_path`` on the converted ``products`` against ``label`` over its kind's domain: totals and
    per-product figures (a product with no pixel in the domain scores ``pixels`` 0)."""
    from cloud_tasks.hdf import read_converted
    from cloud_tasks.ml.data import model_inputs
    from cloud_tasks.ml.inference import load_predictor, predict_whole
    from cloud_tasks.ml.train import model_kind

    kind = model_kind(model_path)
    predict = load_predictor(Path(model_path), kind)
    total = dict.fromkeys(COUNTS, 0)
    per_product = {}
    for path in products:
        product = read_converted(path, labels=(label,))
        x, valid = model_inputs(product, kind)
        probability = predict_whole(predict, x)
        counts = confusion(probability, product.labels[label], valid, threshold)
        per_product[product.product_name] = scores(counts)
        total = {name: total[name] + counts[name] for name in COUNTS}
    return {
        "label": label,
        "kind": kind,
        "threshold": threshold,
        **scores(total),
        "counts": total,
        "products": per_product,
    }
