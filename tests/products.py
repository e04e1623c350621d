"""The tests' input products: the real partial product, the sample day, and a writable copy of a product folder.

A plain module, not ``conftest``: several ``conftest.py`` files share that module name, so importing from it
depends on collection order.
"""

from __future__ import annotations

import datetime as dt
import shutil
import stat
from pathlib import Path

REAL_PRODUCT = next((Path(__file__).parents[1] / ".." / "shared" / "data" / "real-slstr-partial").glob("*.SEN3"))
SAMPLE_DATE = dt.date(2024, 6, 1)


def writable_copy(source: Path, destination: Path) -> Path:
    """Copy a (read-only) product folder so that tests may complete or damage it."""
    shutil.copytree(source, destination)
    for path in [destination, *destination.iterdir()]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return destination
