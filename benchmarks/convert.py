"""Benchmark of ``convert-hdf`` on full-size generated products.

    .venv/bin/python -m benchmarks.convert [--products 8] [--workdir .bench/convert]

Generates (once, cached in the workdir) a full-size sample archive, extracts it, then converts
every product in ONE child process (interpreter start-up and imports excluded from the per-product
figures) and prints per-product wall seconds, the child's peak RSS, the medians, and the speed-up
of 2 worker processes over 1. The reference implementation's figures (measured on a 2-core
CPU machine like CI's) are printed beside ours as ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REFERENCE_SECONDS = 6.3  # per full-size product, median, 2-core CPU
REFERENCE_RSS_MB = 1650
TARGET_SECONDS = 0.6
TARGET_RSS_MB = 600

# Runs in a fresh interpreter: converts every product, timing each one after the imports.
CHILD = """
import json, sys, time
from pathlib import Path
from cloud_tasks.convert import convert_product

def peak_rss_mb():
    # VmHWM belongs to this process image; getrusage's ru_maxrss would carry the parent's peak over exec.
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024

products, out = [Path(p) for p in sys.argv[1].split(",")], Path(sys.argv[2])
rows = []
for product in products:
    start = time.perf_counter()
    path = convert_product(product, out, force=True)
    rows.append({"product": product.name, "split": path.parent.name, "seconds": time.perf_counter() - start,
                 "peak_rss_mb": peak_rss_mb()})
print(json.dumps(rows))
"""


def prepare(workdir: Path, n_products: int) -> list[Path]:
    from cloud_tasks.extract import extract_products
    from cloud_tasks.sample import make_sample_archive

    zips = make_sample_archive(workdir / "archive", dt.date(2024, 6, 1), n_products, grid="full", seed=7)
    return extract_products(zips, workdir / "extracted")


def convert_in_child(products: list[Path], out: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(map(str, products)), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def convert_with_workers(products: list[Path], out: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cloud_tasks",
            "convert-hdf",
            *map(str, products),
            str(out),
            "--force",
            f"--workers={workers}",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path(".bench/convert"))
    args = parser.parse_args(argv)

    products = prepare(args.workdir, args.products)
    rows = convert_in_child(products, args.workdir / "hdf")
    print("| product | split | seconds | peak RSS (MB) |")
    print("|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['product'][:47]}… | {row['split']} | {row['seconds']:.3f} | {row['peak_rss_mb']:.0f} |")
    seconds = statistics.median(r["seconds"] for r in rows)
    day_seconds = statistics.median(r["seconds"] for r in rows if r["split"] == "day")
    peak = max(r["peak_rss_mb"] for r in rows)
    one = convert_with_workers(products, args.workdir / "hdf-1", 1)
    two = convert_with_workers(products, args.workdir / "hdf-2", 2)
    print()
    print("| figure | ours | reference | ratio (reference / ours) | target |")
    print("|---|---:|---:|---:|---:|")
    ref_s, ref_mb = REFERENCE_SECONDS, REFERENCE_RSS_MB
    print(f"| median s/product (all) | {seconds:.3f} | {ref_s} | {ref_s / seconds:.1f}x | <= {TARGET_SECONDS} |")
    print(f"| median s/product (day) | {day_seconds:.3f} | {ref_s} | {ref_s / day_seconds:.1f}x | |")
    print(f"| peak RSS (MB) | {peak:.0f} | {ref_mb} | {ref_mb / peak:.1f}x | <= {TARGET_RSS_MB} |")
    print(f"| {len(products)} products, 1 process, incl. start-up (s) | {one:.2f} | | | |")
    print(f"| {len(products)} products, 2 processes, incl. start-up (s) | {two:.2f} | | speed-up {one / two:.2f}x | |")


if __name__ == "__main__":
    main()
