"""The arithmetic behind the benchmark's Airflow-overhead row (the timings themselves are never asserted)."""

import datetime as dt

from benchmarks.scheduler import busy_seconds

T0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def at(*seconds: float) -> tuple[dt.datetime, ...]:
    return tuple(T0 + dt.timedelta(seconds=s) for s in seconds)


def test_busy_seconds_counts_overlapping_tasks_once_and_gaps_not_at_all():
    # 0-10 and 5-12 overlap (12 s busy), 20-25 after a gap, 21-22 nested inside it, 25-27 touching it.
    intervals = [at(20, 25), at(0, 10), at(21, 22), at(5, 12), at(25, 27)]
    assert busy_seconds(intervals) == 19.0


def test_busy_seconds_of_serial_tasks_is_their_sum():
    assert busy_seconds([at(0, 3), at(4, 9)]) == 8.0
    assert busy_seconds([]) == 0.0
