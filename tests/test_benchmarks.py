"""The arithmetic and formatting behind the benchmarks' figures (the timings themselves are never asserted)."""

import datetime as dt

from benchmarks.figures import runs_note, spread, table
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


def test_spread_shows_the_range_only_for_repeated_measurements():
    assert spread([12.0]) == "12.0"
    assert spread([11.0, 13.0, 12.0]) == "12.0 (11.0-13.0)"
    assert spread([1.234, 1.0], 2) == "1.12 (1.00-1.23)"


def test_runs_note_states_the_run_count():
    assert runs_note(1) == "Each figure from 1 run."
    assert runs_note(3) == "Each figure: the mean of 3 runs (min-max)."


def test_table_is_markdown_with_one_row_per_tuple():
    assert table(("a", "b"), [(1, "x"), (2.5, "")]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 |  |"
