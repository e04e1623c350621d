"""GPU benchmark of the U-Net: training patches/s and TFLOP/s per precision and batch size, whole-image
inference ms per full-size product, each as a share of the device's peak.

    KERAS_BACKEND=jax python -m benchmarks.gpu [--precisions float32 mixed_bfloat16] [--batch-sizes 32 128 256]
        [--repeats 5] [--patches-per-repeat 1024] [--before] [--json FILE] [--markdown FILE] [--budget-s S]
    KERAS_BACKEND=jax python -m benchmarks.gpu --quick        # CPU smoke test: tiny sizes, a few steps

Runs on any Keras backend (TensorFlow, JAX, PyTorch: ``KERAS_BACKEND``, chosen by the caller) that sees a
GPU; it imports no TensorFlow unless that is the backend, and needs no data file. Inputs are random
tensors made on the device once, so the figures are the model's alone, never the input pipeline's
(``benchmarks/pipeline_capacity.py`` measures that). Training is timed through ``model.fit`` on a
generator that yields the same device batch (under JAX and PyTorch nothing is copied; under TensorFlow
``fit`` passes generator batches through the host, which the figures then include). Warm-up steps
(tracing, XLA compilation, autotuning) are excluded; each configuration is timed ``--repeats`` times
(the median, with the min-max spread) and each repeat ends when the device has finished its work.

TFLOP/s come from the analytic count of ``benchmarks.flops`` (2 per multiply-add, x3 for a training
step), never from a profiler; the share is of the dense peak of the precision's units (``PEAK_TFLOPS``,
or ``--peak-tflops``). ``--before`` also times the U-Net as it was before its float32 head (commit
fa9d175: the sigmoid head in the layers' policy), under each mixed precision, in the same run; under
float32 the two models are the same computation.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import keras

from benchmarks.flops import forward_flops, training_flops
from cloud_tasks.atomic import atomic_file, write_json
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.hdf import N_CHANNELS
from cloud_tasks.ml.model import build_unet, compile_unet, set_precision
from cloud_tasks.ml.options import POOLING_MULTIPLE, PRECISIONS

# The SLSTR 1 km grid, rows x columns (cloud_tasks.sample's "full" grid; not imported: it needs netCDF4).
FULL_SIZE = (1200, 1500)
PATCH = 256  # the training patch side (TrainOptions' default)
# Dense peak TFLOP/s by device name (first match wins), per kind of unit: NVIDIA's data sheets, SXM parts.
# fp32 is the CUDA cores' (no tensor cores; XLA may still run float32 convolutions as TF32 on them).
PEAK_TFLOPS = {
    "H200": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0},
    "H100": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0},
    "A100": {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0},
    "L40S": {"fp32": 91.6, "bf16": 362.0, "fp16": 362.0},
    "L4": {"fp32": 30.3, "bf16": 121.0, "fp16": 121.0},
    "V100": {"fp32": 15.7, "fp16": 125.0},
}
UNIT_OF_PRECISION = {"float32": "fp32", "mixed_bfloat16": "bf16", "mixed_float16": "fp16"}
AFTER, BEFORE = "float32 head", "head in policy (fa9d175)"


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    device = device_name()
    if device is None and not args.quick:
        raise SystemExit(f"error: no GPU visible to the {keras.backend.backend()} backend (--quick runs on a CPU)")
    sizes = _sizes(args)
    peaks = _peaks(device, args.peak_tflops)
    results = {"settings": _settings(args, sizes, device, peaks), "training": [], "inference": []}
    previous_policy = keras.config.dtype_policy()
    try:
        _run_all(args, sizes, peaks, results)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    _write(results, args)
    print(markdown(results))


def _run_all(args: argparse.Namespace, sizes: dict, peaks: dict, results: dict) -> None:
    """Every measure in order of ``_plan``, the results written after each (a killed run keeps them); once
    ``--budget-s`` has passed, the measures not yet started are listed as skipped."""
    started, models = time.perf_counter(), {}
    for precision, variant, kind, batch in _plan(args.precisions, args.before, sizes["batch_sizes"]):
        if args.budget_s and time.perf_counter() - started > args.budget_s:
            results[kind].append({"precision": precision, "variant": variant, "batch": batch, "skipped": True})
            continue
        if (precision, variant) not in models:
            models[precision, variant] = _compiled(precision, variant)
        measure = _training if kind == "training" else _inference
        row = measure(models[precision, variant], batch, sizes, args.repeats)
        peak = peaks.get(UNIT_OF_PRECISION[precision])
        row |= {"precision": precision, "variant": variant, "batch": batch}
        row["peak_share"] = row["tflops"] / peak if peak else None
        results[kind].append(row)
        _write(results, args)
        print(f"{kind} {precision} {variant} batch {batch}: {_summary(row)}", file=sys.stderr, flush=True)


def _plan(precisions: list[str], before: bool, batch_sizes: list[int]) -> list[tuple[str, str, str, int]]:
    """(precision, variant, kind, batch) of each measure, most wanted first: every model's inference, then
    training at each batch size in the order given, every model at one batch size before the next size.

    The variants: the current U-Net, and where ``before`` the earlier one under the mixed precisions
    (under float32 the two are the same computation)."""
    models = [(p, AFTER) for p in precisions] + [(p, BEFORE) for p in precisions if before and p != "float32"]
    plan = [(p, v, "inference", 1) for p, v in models]
    return plan + [(p, v, "training", b) for b in batch_sizes for p, v in models]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["float32", "mixed_bfloat16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128, 256])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each measure (median, spread)")
    parser.add_argument("--patches-per-repeat", type=int, default=1024, help="training patches per timed repeat")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (compilation included)")
    parser.add_argument("--images-per-repeat", type=int, default=10, help="full-size products per inference repeat")
    parser.add_argument("--before", action="store_true", help="also time the U-Net as before its float32 head")
    parser.add_argument(
        "--peak-tflops", nargs="+", default=[], metavar="UNIT=TFLOPS", help="peak per unit (fp32, bf16, fp16)"
    )
    parser.add_argument("--budget-s", type=float, help="skip the measures not started after this many seconds")
    parser.add_argument("--json", type=Path, help="write the results here (rewritten after each measure)")
    parser.add_argument("--markdown", type=Path, help="write the Markdown tables here too")
    parser.add_argument("--quick", action="store_true", help="a smoke test on any device: tiny sizes, few steps")
    return parser


def _sizes(args: argparse.Namespace) -> dict:
    """Patch, image and step counts of this run (``--quick``: tiny ones that a CPU runs in seconds)."""
    if args.quick:
        args.repeats = min(args.repeats, 2)
        return {"patch": 32, "image": (48, 60), "batch_sizes": [2, 4], "steps": {2: 2, 4: 1}, "images": 2, "warmup": 1}
    if any(b < 1 for b in args.batch_sizes) or args.repeats < 1:
        raise SystemExit("error: batch sizes and repeats must be at least 1")
    steps = {b: max(1, math.ceil(args.patches_per_repeat / b)) for b in args.batch_sizes}
    return {
        "patch": PATCH,
        "image": FULL_SIZE,
        "batch_sizes": args.batch_sizes,
        "steps": steps,
        "images": args.images_per_repeat,
        "warmup": args.warmup_steps,
    }


def _compiled(precision: str, variant: str) -> keras.Model:
    """The U-Net compiled under ``precision``; for ``BEFORE``, with the sigmoid head in the policy's dtype."""
    set_precision(precision)
    return compile_unet(build_unet(head_dtype=None) if variant == BEFORE else build_unet())


def device_name() -> str | None:
    """The first GPU's name as the backend reports it, or None where it sees none."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return gpus[0].device_kind if gpus else None
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name) if gpus else None
    return None


def _peaks(device: str | None, overrides: list[str]) -> dict[str, float]:
    """Peak TFLOP/s per unit: the table's entry for ``device``, then ``UNIT=VALUE`` overrides."""
    peaks = dict(next((p for name, p in PEAK_TFLOPS.items() if device and name in device), {}))
    for item in overrides:
        unit, _, value = item.partition("=")
        if unit not in UNIT_OF_PRECISION.values():
            raise SystemExit(f"error: --peak-tflops {item}: the unit must be one of fp32, bf16, fp16")
        try:
            peaks[unit] = float(value)
        except ValueError:
            raise SystemExit(f"error: --peak-tflops {item}: {value!r} is not a number") from None
    return peaks


def _synthetic_batch(batch: int, rows: int, cols: int, seed: int):
    """Random inputs and targets (label, weight 1) of the data pipeline's shapes and dtype, on the device."""
    x = keras.random.uniform((batch, rows, cols, N_CHANNELS), seed=seed)
    labels = keras.ops.cast(keras.random.uniform((batch, rows, cols, 1), seed=seed + 1) > 0.5, "float32")
    return x, keras.ops.concatenate([labels, keras.ops.ones_like(labels)], axis=-1)


def _wait(model: keras.Model) -> None:
    """Block until the device has finished the work queued so far (reading a weight waits for its update)."""
    keras.ops.convert_to_numpy(model.trainable_variables[-1])


def _training(model: keras.Model, batch: int, sizes: dict, repeats: int) -> dict:
    """Patches/s of ``fit`` on one device batch repeated, after warm-up steps."""
    x, y = _synthetic_batch(batch, sizes["patch"], sizes["patch"], seed=batch)

    def batches():
        while True:
            yield x, y

    model.fit(batches(), steps_per_epoch=sizes["warmup"], epochs=1, verbose=0, shuffle=False)
    _wait(model)
    steps = sizes["steps"][batch]
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(batches(), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        _wait(model)
        seconds.append(time.perf_counter() - start)
    rates = [steps * batch / s for s in seconds]
    rate = statistics.median(rates)
    return {
        "steps_per_repeat": steps,
        "repeats": repeats,
        "patches_per_s": rate,
        "patches_per_s_min": min(rates),
        "patches_per_s_max": max(rates),
        "step_ms": 1000 * batch / rate,
        "tflops": rate * training_flops(sizes["patch"], sizes["patch"]) / 1e12,
    }


def _inference(model: keras.Model, batch: int, sizes: dict, repeats: int) -> dict:
    """Milliseconds per whole product (padded to the pooling multiple), the probabilities back on the host."""
    rows, cols = (-(-side // POOLING_MULTIPLE) * POOLING_MULTIPLE for side in sizes["image"])
    x, _ = _synthetic_batch(batch, rows, cols, seed=7)
    for _ in range(sizes["warmup"]):
        model.predict_on_batch(x)
    per_image = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(sizes["images"]):
            model.predict_on_batch(x)  # returns a host array: each call has finished when it returns
        per_image.append((time.perf_counter() - start) / sizes["images"])
    seconds = statistics.median(per_image)
    return {
        "image": [rows, cols],
        "images_per_repeat": sizes["images"],
        "repeats": repeats,
        "ms_per_product": 1000 * seconds,
        "ms_min": 1000 * min(per_image),
        "ms_max": 1000 * max(per_image),
        "tflops": forward_flops(rows, cols) / seconds / 1e12,
    }


def _settings(args: argparse.Namespace, sizes: dict, device: str | None, peaks: dict) -> dict:
    backend = keras.backend.backend()
    library = sys.modules.get({"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}.get(backend, ""))
    return {
        "device": device or "none (CPU)",
        "backend": f"{backend} {getattr(library, '__version__', '')}".strip(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "peak_tflops": peaks,
        "train_gflop_per_patch": training_flops(sizes["patch"], sizes["patch"]) / 1e9,
        "patch": sizes["patch"],
        "quick": args.quick,
        "warmup_steps": sizes["warmup"],
    }


def _summary(row: dict) -> str:
    if "patches_per_s" in row:
        return f"{row['patches_per_s']:.0f} patches/s, {row['tflops']:.1f} TFLOP/s"
    return f"{row['ms_per_product']:.2f} ms/product, {row['tflops']:.1f} TFLOP/s"


def _write(results: dict, args: argparse.Namespace) -> None:
    if args.json:
        write_json(args.json, results)
    if args.markdown:
        with atomic_file(args.markdown) as tmp:
            tmp.write_text(markdown(results) + "\n")


def _share(row: dict) -> str:
    return f"{100 * row['peak_share']:.1f} %" if row.get("peak_share") is not None else "n/a"


def markdown(results: dict) -> str:
    """The run's settings and its training and inference tables."""
    settings = results["settings"]
    repeats = max((r.get("repeats", 0) for r in results["training"] + results["inference"]), default=0)
    return "\n".join(
        [
            f"Device: {settings['device']}; Keras {settings['keras']} on {settings['backend']}; "
            f"peaks (TFLOP/s) {settings['peak_tflops'] or 'unknown'}; "
            f"{settings['train_gflop_per_patch']:.1f} GFLOP per {settings['patch']} px training patch (analytic).",
            "",
            *_table(TRAINING_COLUMNS, results["training"], _training_cells),
            "",
            *_table(INFERENCE_COLUMNS, results["inference"], _inference_cells),
            "",
            f"Each figure: the median of {repeats} timed repeats after {settings['warmup_steps']} warm-up steps.",
        ]
    )


TRAINING_COLUMNS = ("model", "precision", "batch", "patches/s (median)", "min-max", "step ms", "TFLOP/s", "of peak")
INFERENCE_COLUMNS = ("model", "precision", "image", "ms per product (median)", "min-max", "TFLOP/s", "of peak")


def _training_cells(r: dict) -> list[str]:
    spread = f"{r['patches_per_s_min']:.0f}-{r['patches_per_s_max']:.0f}"
    return [str(r["batch"]), f"{r['patches_per_s']:.0f}", spread, f"{r['step_ms']:.1f}", f"{r['tflops']:.1f}"]


def _inference_cells(r: dict) -> list[str]:
    image, spread = f"{r['image'][0]} x {r['image'][1]}", f"{r['ms_min']:.2f}-{r['ms_max']:.2f}"
    return [image, f"{r['ms_per_product']:.2f}", spread, f"{r['tflops']:.1f}"]


def _table(header: tuple[str, ...], rows: list[dict], cells) -> list[str]:
    """Markdown lines: model, precision, ``cells(row)``, share of peak; a skipped measure says so."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        skipped = [f"skipped (time budget), batch {r['batch']}"] + [""] * (len(header) - 3)
        measured = skipped if r.get("skipped") else [*cells(r), _share(r)]
        lines.append("| " + " | ".join([r["variant"], r["precision"], *measured]) + " |")
    return lines


if __name__ == "__main__":
    try:
        main()
    except CloudTasksError as exc:
        raise SystemExit(f"error: {exc}") from None
