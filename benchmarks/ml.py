"""Benchmark of the ML stages on full-size synthetic products; prints a Markdown table.

    .venv/bin/python -m benchmarks.ml [--products 4] [--rounds 2] [--workdir DIR]

- Training: steady-state patches/s of ``model.fit`` (256 px patches, batch 8) fed by the real input
  pipeline (epoch 1 reading the HDF5 files, epoch 2 from the cache, and streamed without cache)
  against the same batches held in memory; the first steps of each epoch (tracing, the shuffle
  buffer filling) are left out.
- Inference: seconds per full-size product for the whole-image and the mosaic method, each in its
  own subprocess (the first product, which pays for importing TensorFlow, loading the model and
  tracing, is reported apart), and the subprocess's peak RSS.

Each figure is the mean of ``--rounds`` runs, with their range.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.figures import runs_note, spread, table
from cloud_tasks.sample.grid import GRIDS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the synthetic-product helper of the tests

FULL_SIZE = (GRIDS["full"].rows, GRIDS["full"].columns)
PATCH, BATCH, SKIP_STEPS = 256, 8, 2
IN_MEMORY = "same batches in memory"
REFERENCE = {"train": "5.7", "inference": "7.7-9", "rss": "6.1"}  # the seed, as measured on a 2-core CPU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=4, help="full-size products to generate")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every measure (mean and range reported)")
    parser.add_argument("--workdir", type=Path, help="keep the products and outputs here (default: a temp dir)")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "MODEL", "HDF", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_inference_child(*args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        products = _products(work / "hdf", args.products)
        rates, model_path = _training(products, work, args.rounds)
        inference = {method: _inference_runs(method, model_path, work, args.rounds) for method in ("whole", "mosaic")}
    _print_table(rates, inference, len(products))


def _products(folder: Path, n: int) -> list[Path]:
    from ml_data import write_product

    return [write_product(folder, i, shape=FULL_SIZE) for i in range(n)]


def _training(paths: list[Path], work: Path, rounds: int) -> tuple[dict[str, list[float]], Path]:
    """Patches/s of each way of feeding one model, one per round; return them and the saved model."""
    import keras
    import numpy as np

    from cloud_tasks.ml import data
    from cloud_tasks.ml.model import build_unet, compile_unet, save_model

    keras.utils.set_random_seed(0)
    products = data.select_products(paths, "bayes", PATCH)
    n_patches = sum(p.n_patches for p in products)

    def dataset(**kwargs):
        return data.make_dataset(products, label="bayes", patch_size=PATCH, batch_size=BATCH, shuffle=True, **kwargs)

    batches = list(dataset(cache_bytes=0))
    x, y = (np.concatenate([b[i].numpy() for b in batches]) for i in (0, 1))
    model = compile_unet(build_unet())
    model.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, verbose=0)  # trace the train step once
    rates: dict[str, list[float]] = {}
    for _ in range(rounds):
        cached = dataset()
        runs = {
            "real pipeline, epoch 1 (reading HDF5)": ((cached,), {}),
            "real pipeline, epoch 2 (cached)": ((cached,), {}),
            "real pipeline, streamed (no cache)": ((dataset(cache_bytes=0),), {}),
            IN_MEMORY: ((x, y), {"batch_size": BATCH}),
        }
        for name, (fit_args, fit_kwargs) in runs.items():
            rates.setdefault(name, []).append(_rate(model, n_patches, *fit_args, **fit_kwargs))
    return rates, save_model(model, work / "model.keras")


def _rate(model, n_patches: int, *fit_args, **fit_kwargs) -> float:
    """Steady-state patches/s of one epoch of ``fit``, the first SKIP_STEPS steps left out."""
    import keras

    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    model.fit(*fit_args, epochs=1, verbose=0, shuffle=False, callbacks=[timer], **fit_kwargs)
    return (n_patches - SKIP_STEPS * BATCH) / (ends[-1] - ends[SKIP_STEPS - 1])


def _inference_runs(method: str, model_path: Path, work: Path, rounds: int) -> list[dict]:
    return [_inference(method, model_path, work / "hdf", work / f"masks-{method}") for _ in range(rounds)]


def _inference(method: str, model_path: Path, hdf: Path, out: Path) -> dict:
    """Run the inference of all products in a subprocess; return its timings and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)  # or existing masks would be kept, not timed
    command = [sys.executable, "-m", "benchmarks.ml", "--child", method, str(model_path), str(hdf), str(out)]
    result = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.splitlines()[-1])


def _inference_child(method: str, model_path: str, hdf: str, out: str) -> dict:
    """In the subprocess: time each product of ``run_inference`` by its 'mask written' log record."""
    from cloud_tasks.ml.inference import run_inference

    stamps = [time.perf_counter()]

    class Stamp(logging.Handler):
        def emit(self, record):
            if "mask written" in record.getMessage():
                stamps.append(time.perf_counter())

    logger = logging.getLogger("cloud_tasks.ml.inference")
    logger.setLevel(logging.INFO)
    logger.addHandler(Stamp())
    run_inference(model_path, [hdf], out, method=method)
    times = [b - a for a, b in itertools.pairwise(stamps)]
    return {"first_s": times[0], "per_product_s": statistics.median(times[1:]), "peak_rss_gib": _peak_rss_kib() / 2**20}


def _peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM). Not ``getrusage``: Linux carries ``ru_maxrss`` over ``exec``,
    so a child forked from the (large) training process would report the parent's peak."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _print_table(rates: dict[str, list[float]], inference: dict[str, list[dict]], n_products: int) -> None:
    memory = rates[IN_MEMORY]
    rows = []
    for name, rate in rates.items():
        ratio = [r / m for r, m in zip(rate, memory, strict=True)]
        ratio, target = ("", "") if name == IN_MEMORY else (f" (x{spread(ratio, 2)} of in-memory)", "x >= 0.9")
        rows.append(
            (f"training, {name}", f"{spread(rate, 2)} patches/s{ratio}", f"{REFERENCE['train']} patches/s", target)
        )
    for method, runs in inference.items():
        figure = {key: spread([run[key] for run in runs], 2) for key in ("per_product_s", "first_s", "peak_rss_gib")}
        rows += [
            (f"inference {method}, s per product", figure["per_product_s"], REFERENCE["inference"], "<= 2.6"),
            (f"inference {method}, first product (import, load, trace), s", figure["first_s"], "", ""),
            (f"inference {method}, peak RSS", f"{figure['peak_rss_gib']} GiB", f"{REFERENCE['rss']} GB", "<= 3 GB"),
        ]
    pairs = zip(inference["mosaic"], inference["whole"], strict=True)
    rows.append(
        (
            "inference time, mosaic / whole",
            f"x{spread([m['per_product_s'] / w['per_product_s'] for m, w in pairs], 2)}",
            "",
            "",
        )
    )
    print(f"\n{n_products} synthetic products of {FULL_SIZE[0]} x {FULL_SIZE[1]}, patch {PATCH}, batch {BATCH}\n")
    print(table(("measure", "value", "reference (2-core CPU)", "target"), rows))
    print(f"\n{runs_note(len(memory))}")


if __name__ == "__main__":
    main()
