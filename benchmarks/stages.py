"""The DAG's task bodies as plain functions of JSON values, for ``benchmarks.measure`` (a fresh interpreter
per stage): each builds the typed ``DayRun`` from the plan's values, as the DAG's tasks do."""

from __future__ import annotations

from cloud_tasks.pipeline import DayRun, compare_day, convert_chunk, extract_chunk, plan_run


def plan(params: dict) -> dict:
    return plan_run(params).as_xcom()


def extract(products: list[str], day: str, data_root: str) -> list[str]:
    return extract_chunk(products, DayRun.of(day, data_root))


def convert(products: list[str], day: str, data_root: str, **options) -> list[str]:
    return convert_chunk(products, DayRun.of(day, data_root), **options)


def compare(day: str, data_root: str, matchups: str) -> dict | None:
    return compare_day(DayRun.of(day, data_root), matchups)
