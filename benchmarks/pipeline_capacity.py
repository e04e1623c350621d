"""Capacity of the training input pipeline alone: patches/s that ``data.make_dataset`` delivers, no model.

    .venv/bin/python -m benchmarks.pipeline_capacity [--hdf HDF/day | --products 12 [--workdir DIR]]
        [--batch-sizes 32 128] [--repeats 5] [--epochs-per-repeat 10] [--json FILE]

The products are converted ones: those of ``--hdf``, or full-size products generated, extracted and
converted here (``benchmarks.convert.prepare``). Each measure iterates the real dataset in its final
form (shuffled batches of float32 ``x`` and ``y``, as ``train`` feeds ``fit``), with nothing done to the
batches, so the rate is what the pipeline could feed a model at most:

- ``HDF5, first epoch``: reading the files, normalising and cutting patches, filling the memory cache;
- ``cached``: later epochs, from the in-memory cache (each repeat ``--epochs-per-repeat`` epochs);
- ``cached, as numpy``: the same, each batch turned into numpy arrays as Keras's JAX and PyTorch
  trainers do with a ``tf.data.Dataset``;
- ``streamed``: no cache (``cache_bytes=0``), every epoch reading the files again.

Beside them: the machine's memory-copy rate in patches/s (``tf.data``'s batching copies each patch once:
a ceiling for the cached pipeline), and the CPU cores busy (process CPU seconds per wall second) of each
measure, which tells whether the measure was bound by this machine's cores. ``what-if`` rows run the
cached pipeline's steps (cache, shuffle, batch, prefetch) over the same patches held in memory, in
float32 and with ``x`` in bfloat16 and ``y`` in uint8 (what a mixed-precision model and the loss need),
to show what a smaller final dtype would give. Each figure is the median of ``--repeats`` with its spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cloud_tasks.atomic import write_json
from cloud_tasks.layout import HDF_SUFFIX

PATCH, LABEL = 256, "bayes"  # TrainOptions' defaults
TARGET = 1400  # patches/s: the H200's measured training rate in mixed bfloat16 at batch 128 (issue 18)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hdf", type=Path, help="a folder of converted products (default: generate them)")
    parser.add_argument("--products", type=int, default=12, help="full-size products to generate without --hdf")
    parser.add_argument("--workdir", type=Path, help="generate the products here and keep them (default: temp)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs-per-repeat", type=int, default=10, help="cached epochs in one timed repeat")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        paths = sorted(args.hdf.rglob(f"*{HDF_SUFFIX}")) if args.hdf else _generate(args.workdir or Path(tmp), args)
        results = measure_all(paths, args)
    if args.json:
        write_json(args.json, results)
    print(markdown(results))


def _generate(workdir: Path, args: argparse.Namespace) -> list[Path]:
    from benchmarks.convert import prepare
    from cloud_tasks.convert import convert_products

    return convert_products(prepare(workdir, args.products), workdir / "hdf", workers=os.cpu_count() or 1)


def measure_all(paths: list[Path], args: argparse.Namespace) -> dict:
    """Every measure of the module's docstring, per batch size."""
    from cloud_tasks.ml import data

    products = data.select_products(paths, LABEL, PATCH)
    n_patches = sum(p.n_patches for p in products)
    rows = []
    for batch in args.batch_sizes:

        def dataset(batch=batch, **options):
            return data.make_dataset(products, label=LABEL, patch_size=PATCH, batch_size=batch, shuffle=True, **options)

        cached = dataset()
        rows.append(_row("HDF5, first epoch (fills the cache)", batch, [_timed(cached, n_patches, 1)]))
        rows.append(_row("cached", batch, [_timed(cached, n_patches, args.epochs_per_repeat) for _ in _n(args)]))
        numpy_rates = [_timed(cached, n_patches, args.epochs_per_repeat, as_numpy=True) for _ in _n(args)]
        rows.append(_row("cached, as numpy", batch, numpy_rates))
        streamed = dataset(cache_bytes=0)
        rows.append(_row("streamed from HDF5 (no cache)", batch, [_timed(streamed, n_patches, 1) for _ in _n(args)]))
        rows += _what_if(products, batch, n_patches, args)
    return {
        "products": len(products),
        "patches": n_patches,
        "patch": PATCH,
        "cores": os.cpu_count(),
        "memcpy_patches_per_s": _memcpy_rate(args.repeats),
        "target_patches_per_s": TARGET,
        "rows": rows,
    }


def _n(args: argparse.Namespace) -> range:
    return range(args.repeats)


def _timed(dataset, n_patches: int, epochs: int, *, as_numpy: bool = False) -> tuple[float, float]:
    """Patches/s and CPU cores busy over ``epochs`` full passes over ``dataset``."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for batch in dataset.as_numpy_iterator() if as_numpy else dataset:
            del batch
    wall = time.perf_counter() - start
    return n_patches * epochs / wall, (time.process_time() - cpu) / wall


def _row(name: str, batch: int, measures: list[tuple[float, float]]) -> dict:
    rates = [rate for rate, _ in measures]
    return {
        "pipeline": name,
        "batch": batch,
        "repeats": len(measures),
        "patches_per_s": statistics.median(rates),
        "patches_per_s_min": min(rates),
        "patches_per_s_max": max(rates),
        "cores_busy": statistics.median(cores for _, cores in measures),
    }


def _what_if(products, batch: int, n_patches: int, args: argparse.Namespace) -> list[dict]:
    """The cached pipeline's steps over the same patches already in memory: float32 as now, and with
    ``x`` bfloat16 and ``y`` uint8."""
    import tensorflow as tf

    from cloud_tasks.ml import data

    patches = [data.product_patches(p.path, LABEL, PATCH) for p in products]
    x, y = (np.concatenate([pair[i] for pair in patches]) for i in (0, 1))
    rows = []
    for name, dtypes in (
        ("float32 x, float32 y", (tf.float32, tf.float32)),
        ("bfloat16 x, uint8 y", (tf.bfloat16, tf.uint8)),
    ):
        in_memory = tf.data.Dataset.from_tensor_slices(
            tuple(tf.cast(a, d) for a, d in zip((x, y), dtypes, strict=True))
        )
        ds = in_memory.cache().shuffle(n_patches, seed=0, reshuffle_each_iteration=True).batch(batch)
        ds = ds.prefetch(tf.data.AUTOTUNE)
        _timed(ds, n_patches, 1)  # fill the cache
        measures = [_timed(ds, n_patches, args.epochs_per_repeat) for _ in _n(args)]
        rows.append(_row(f"what-if, in memory: {name}", batch, measures))
    return rows


def _memcpy_rate(repeats: int) -> float:
    """Patches/s of copying whole float32 patches (x and y) in memory, one core: the batching copy's ceiling."""
    source = np.random.default_rng(0).random((64, PATCH, PATCH, 11), dtype=np.float32)
    target = np.empty_like(source)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        rates.append(len(source) / (time.perf_counter() - start))
    return statistics.median(rates)


def markdown(results: dict) -> str:
    lines = [
        f"{results['products']} products, {results['patches']} patches of {results['patch']} px, "
        f"{results['cores']} cores; target {results['target_patches_per_s']} patches/s (cached); "
        f"memory copy of whole patches: {results['memcpy_patches_per_s']:.0f} patches/s on one core.",
        "",
        "| pipeline | batch | patches/s (median) | min-max | cores busy | of target |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['pipeline']} | {r['batch']} | {r['patches_per_s']:.0f} | {r['patches_per_s_min']:.0f}-"
            f"{r['patches_per_s_max']:.0f} | {r['cores_busy']:.2f} | "
            f"x{r['patches_per_s'] / results['target_patches_per_s']:.2f} |"
        )
    lines += ["", f"Each figure: the median of {max(r['repeats'] for r in results['rows'])} timed repeats (or 1)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
