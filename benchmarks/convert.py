"""Benchmark of ``convert-hdf`` on full-size generated products.

    .venv/bin/python -m benchmarks.convert [--products 8] [--rounds 2] [--workdir .bench/convert]

Generates (once, cached in the workdir) a full-size sample archive, extracts it, then converts
every product in ONE child process per round (interpreter start-up and imports excluded from the
per-product figures) and prints per-product wall seconds, the child's peak RSS, the medians, and the speed-up
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

from benchmarks.figures import runs_note, spread, table

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
    parser.add_argument("--rounds", type=int, default=2, help="runs of every measure (mean and range reported)")
    parser.add_argument("--workdir", type=Path, default=Path(".bench/convert"))
    args = parser.parse_args(argv)

    products = prepare(args.workdir, args.products)
    rounds = [convert_in_child(products, args.workdir / "hdf") for _ in range(args.rounds)]
    print(per_product_table(rounds))
    one, two = ([convert_with_workers(products, args.workdir / f"hdf-{n}", n) for _ in rounds] for n in (1, 2))
    print()
    print(summary_table(rounds, one, two))
    print(f"\n{runs_note(args.rounds)}")


def per_product_table(rounds: list[list[dict]]) -> str:
    rows = [
        (f"{first['product'][:47]}…", first["split"], spread([r[i]["seconds"] for r in rounds], 3))
        for i, first in enumerate(rounds[0])
    ]
    return table(("product", "split", "seconds"), rows)


def summary_table(rounds: list[list[dict]], one: list[float], two: list[float]) -> str:
    """Medians over the products of each round, then their mean and range over the rounds."""
    seconds = [statistics.median(r["seconds"] for r in rows) for rows in rounds]
    day_seconds = [statistics.median(r["seconds"] for r in rows if r["split"] == "day") for rows in rounds]
    peak = [max(r["peak_rss_mb"] for r in rows) for rows in rounds]
    ref_s, ref_mb, n = REFERENCE_SECONDS, REFERENCE_RSS_MB, len(rounds[0])

    def ratio(values: list[float], reference: float) -> str:
        return f"{spread([reference / v for v in values])}x"

    rows = [
        ("median s/product (all)", spread(seconds, 3), ref_s, ratio(seconds, ref_s), f"<= {TARGET_SECONDS}"),
        ("median s/product (day)", spread(day_seconds, 3), ref_s, ratio(day_seconds, ref_s), ""),
        ("peak RSS (MB)", spread(peak, 0), ref_mb, ratio(peak, ref_mb), f"<= {TARGET_RSS_MB}"),
        (f"{n} products, 1 process, incl. start-up (s)", spread(one, 2), "", "", ""),
        (
            f"{n} products, 2 processes, incl. start-up (s)",
            spread(two, 2),
            "",
            f"speed-up {spread([a / b for a, b in zip(one, two, strict=True)], 2)}x",
            "",
        ),
    ]
    return table(("figure", "ours", "reference", "ratio (reference / ours)", "target"), rows)


if __name__ == "__main__":
    main()
