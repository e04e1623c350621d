"""Run one pipeline function in this (fresh) interpreter and print its result, wall seconds and peak RSS.

    python -m benchmarks.measure cloud_tasks.pipeline:convert_chunk '[args...]' '{kwargs...}'

The function's module is imported before the clock starts, so interpreter start-up is excluded;
imports done by the function itself (TensorFlow for the ML stages) are part of its time, as they
are part of a task's time in Airflow.
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def peak_rss_mb() -> float:
    """VmHWM of this process image (getrusage would report the parent's peak, kept across exec)."""
    with open("/proc/self/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0]) / 1024


def main() -> None:
    module, name = sys.argv[1].split(":")
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else []
    kwargs = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    function = getattr(importlib.import_module(module), name)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(json.dumps({"result": result, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}, default=str))


if __name__ == "__main__":
    main()
