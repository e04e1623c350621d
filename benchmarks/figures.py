"""How the benchmarks print figures: repeated measurements with their spread, and Markdown tables."""

from __future__ import annotations

import statistics


def spread(values: list[float], digits: int = 1) -> str:
    """The mean of repeated measurements, with their range when there is more than one: '12.0 (11.0-13.0)'."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def runs_note(n: int) -> str:
    """The sentence under a table of figures from ``n`` runs."""
    return "Each figure from 1 run." if n == 1 else f"Each figure: the mean of {n} runs (min-max)."


def table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])
