"""The catalogue of faults injected outside ``tests/faults`` names tests that exist: a renamed test would
otherwise drop out of the fault suite's count without a word."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from faults.reused import REUSED

REPO = Path(__file__).resolve().parents[1]


def test_every_catalogued_fault_is_a_collected_test():
    files = sorted({node.split("::")[0] for node in REUSED})
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files]
    result = subprocess.run(collect, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert sorted(set(REUSED) - set(result.stdout.splitlines())) == []
