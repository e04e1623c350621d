"""The DAGs' task bodies as plain functions of JSON values, for ``benchmarks.measure`` (a fresh interpreter
per stage): each builds the typed ``DayRun`` from the plan's values, as the DAGs' tasks do."""

from __future__ import annotations

from cloud_tasks.pipeline import compare_day, convert_chunk, extract_chunk, write_training_lists
from cloud_tasks.planning import DayRun, plan_day, plan_training


def plan(params: dict) -> dict:
    return plan_day(params).as_xcom()


def plan_training_run(params: dict) -> dict:
    """The training plan of the day model (the stage table times the benchmark's own model), its run's keys on top."""
    plans = plan_training(params | {"kinds": ["day"]}).as_xcom()
    return {**plans, **plans["runs"][0]}


def training_set(plan: dict) -> dict:
    return write_training_lists(plan["data_root"], plan["key"], plan["chunks"], plan["holdout_days"], plan["kind"])


def extract(products: list[str], day: str, data_root: str) -> list[str]:
    return extract_chunk(products, DayRun.of(day, data_root))


def convert(products: list[str], day: str, data_root: str, **options) -> list[str]:
    return convert_chunk(products, DayRun.of(day, data_root), **options)


def compare(day: str, data_root: str, matchups: str) -> dict | None:
    return compare_day(DayRun.of(day, data_root), matchups)
