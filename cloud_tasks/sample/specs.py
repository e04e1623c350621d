"""The products a sample archive holds: names, sensing times, orbits, illumination kinds and seeds."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from cloud_tasks.archive import check_missions
from cloud_tasks.naming import MISSIONS, ProductName, format_product_name
from cloud_tasks.sample.grid import GRIDS, GridSpec

_KIND_CYCLE = ("day", "night", "twilight", "day", "day")
_ORBIT_PERIOD_S = 27 * 86400 / 385  # Sentinel-3: 385 orbits in a 27-day repeat cycle
_ORBITS_PER_CYCLE = 385
# An ascending-node crossing per mission: (time, absolute orbit, cycle, relative orbit). S3A's is that of the
# real product (frame 1439 s after it); S3B's is a plausible one.
_ORBIT_EPOCHS = {
    "S3A": (dt.datetime(2017, 3, 15, 11, 10, 21, tzinfo=dt.UTC), 5600, 15, 237),
    "S3B": (dt.datetime(2019, 1, 1, 0, 40, 0, tzinfo=dt.UTC), 3560, 12, 100),
}
_FRAME_S = 180  # every product is a 3-minute frame


@dataclass(frozen=True)
class ProductSpec:
    """One product to generate: its name, precise sensing times, orbit, illumination kind, grid and seed."""

    name: ProductName
    start_time: dt.datetime
    stop_time: dt.datetime
    absolute_orbit: int
    kind: str  # "day", "night" or "twilight"
    grid: GridSpec
    seed: int
    index: int

    def rng(self, stream: int) -> np.random.Generator:
        """An independent random stream of this product (0 scene, 1 match-ups, 2 0.5 km noise)."""
        return np.random.default_rng([self.seed, self.index, stream])


def _orbit(mission: str, when: dt.datetime) -> tuple[int, int, int, int]:
    """(absolute orbit, cycle, relative orbit, frame = seconds since the ascending node) at ``when``."""
    anx, absolute, cycle, relative = _ORBIT_EPOCHS[mission]
    elapsed = (when - anx).total_seconds()
    k = math.floor(elapsed / _ORBIT_PERIOD_S)
    rel0 = relative - 1 + k
    frame = int(elapsed - k * _ORBIT_PERIOD_S)
    return max(1, absolute + k), max(1, cycle + rel0 // _ORBITS_PER_CYCLE), rel0 % _ORBITS_PER_CYCLE + 1, frame


def _product_spec(midnight: dt.datetime, slot: float, mission: str, grid: GridSpec, seed: int, index: int):
    """The ``index``-th product of a day: a frame starting at a random time inside its slot of the day."""
    rng = np.random.default_rng([seed, index, 3])
    start = midnight + dt.timedelta(seconds=int((index + rng.uniform(0.05, 0.9)) * slot))
    # Fractional start and duration keep the name's stop (truncated to seconds) at start + 180 s.
    start_time = start + dt.timedelta(microseconds=int(rng.uniform(0.3, 0.7) * 1e6))
    duration = rng.uniform(179.7, 180.29)
    stop_time = start_time + dt.timedelta(microseconds=int(duration * 1e6))
    creation = start + dt.timedelta(seconds=int(rng.uniform(2, 5) * 3600))
    absolute, cycle, relative, frame = _orbit(mission, start)
    stem = format_product_name(
        mission,
        start,
        start + dt.timedelta(seconds=_FRAME_S),
        creation,
        duration_s=int(duration),
        cycle=cycle,
        relative_orbit=relative,
        frame=frame,
        centre="LN2",
        timeliness="NT",
        baseline="004",
    )
    kind = _KIND_CYCLE[index % len(_KIND_CYCLE)]
    return ProductSpec(ProductName.parse(stem), start_time, stop_time, absolute, kind, grid, seed, index)


def product_specs(
    date: dt.date, n_products: int, missions=MISSIONS, grid: str = "small", seed: int = 0
) -> list[ProductSpec]:
    """The products ``make_sample_archive`` generates: 3-minute frames spread over ``date`` (UTC).

    Missions alternate in the order given; raise ValueError for a bad count, grid or mission.
    """
    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, not {n_products}")
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r} (expected one of {', '.join(GRIDS)})")
    missions = check_missions(missions)
    midnight = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
    slot = (86400 - 200) / n_products
    return [
        _product_spec(midnight, slot, missions[index % len(missions)], GRIDS[grid], seed, index)
        for index in range(n_products)
    ]
