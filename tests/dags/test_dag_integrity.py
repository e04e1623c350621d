"""The DAG folder parses cleanly and the DAG follows the project's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.models import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["slstr_cloud_mask"]


@pytest.fixture(scope="module")
def training_dag(dagbag):
    return dagbag.dags["slstr_train_model"]


# Tasks that judge or plan a run fail without retry: a retry would only repeat the verdict.
NO_RETRY = {"slstr_cloud_mask": {"summary"}, "slstr_train_model": {"plan", "train_kind.promote", "report"}}


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == ["slstr_cloud_mask", "slstr_train_model"]


def test_tags_retries_and_docs(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md and "Failure policy" in dag.doc_md
        assert dag.catchup is False
        for task in dag.tasks:
            if task.task_id in NO_RETRY[dag.dag_id]:
                assert task.retries == 0, f"{dag.dag_id}.{task.task_id} retries its verdict"
                continue
            assert task.retries >= 2, f"{dag.dag_id}.{task.task_id} retries {task.retries}"
            assert task.max_retry_delay, f"{dag.dag_id}.{task.task_id}: unbounded retry back-off"


def test_task_graph(dag):
    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
    assert downstream == {
        "plan": ["catalogue", "converted", "make_chunks", "sst_comparison"],
        "make_chunks": ["process_chunk"],
        "process_chunk": ["converted", "summary"],
        "converted": ["mask"],
        "mask": ["catalogue", "sst_comparison"],
        "catalogue": ["summary"],
        "sst_comparison": ["summary"],
        "summary": [],
    }
    assert dag.get_task("summary").trigger_rule == "all_done"


def test_training_task_graph(training_dag):
    """Each model kind trains, registers and promotes in its own instance of a mapped group: a kind waits only
    for its own stages."""
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in training_dag.tasks}
    assert downstream["make_chunks"] == ["process_chunk"]
    assert downstream["process_chunk"] == ["train_kind.training_set"]
    assert downstream["kind_runs"] == ["train_kind.training_set"]
    assert downstream["train_kind.train"] == ["train_kind.register"]
    assert downstream["train_kind.register"] == ["train_kind.promote"]
    assert downstream["train_kind.promote"] == ["report"]
    assert training_dag.get_task("report").trigger_rule == "all_done"
    for task_id in ("training_set", "train", "register", "promote"):
        task = training_dag.get_task(f"train_kind.{task_id}")
        assert isinstance(task.get_closest_mapped_task_group(), MappedTaskGroup), task_id
        assert task.map_index_template, f"{task_id}: instances not labelled with their kind"
    assert training_dag.get_task("train_kind.train").pool == training_dag.get_task("train_kind.register").pool == "gpu"


def test_the_training_dag_trains_both_kinds_unless_told(training_dag):
    from cloud_tasks.registry import KINDS

    kinds = training_dag.params.get_param("kinds")
    assert kinds.value == list(KINDS) and kinds.schema["items"]["enum"] == list(KINDS)


def test_params_are_grouped_in_sections(dag, training_dag):
    from cloud_tasks.dag_parts import OPERATIONS, SCIENCE

    for each in (dag, training_dag):
        sections = {name: param.schema.get("section") for name, param in each.params.items()}
        assert set(sections.values()) == {SCIENCE, OPERATIONS}, sections
        assert sections["data_root"] == OPERATIONS and sections["missions"] == SCIENCE


def test_one_mapped_instance_per_chunk_with_product_labels(dag, training_dag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for each in (dag, training_dag):
        task = each.get_task("process_chunk")
        assert isinstance(task, MappedOperator) and task.get_closest_mapped_task_group() is None
        assert task.map_index_template == "{{ chunk_label }}"
    assert dag.get_task("mask").pool == "gpu"


def test_bad_input_fails_a_chunk_at_once_and_other_faults_retry(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from cloud_tasks.dag_parts import _fail_on_bad_input
    from cloud_tasks.errors import BatchFailures, DiskFullError, InputError

    bad, full = InputError(tmp_path / "a.zip", "not a zip archive"), DiskFullError(tmp_path / "b.h5")
    for exc in (bad, BatchFailures("extract and convert", [bad, bad], [], 8)):
        with pytest.raises(AirflowFailException):
            _fail_on_bad_input(exc)
    for exc in (full, BatchFailures("convert", [bad, full], [], 8), OSError("stale file handle")):
        _fail_on_bad_input(exc)  # returns: the task raises the error itself, and is retried


def test_schedule_has_daily_data_intervals(dag):
    """Backfills and scheduled runs get [day, day + 1) as their data interval (as the scheduler sees it)."""
    import datetime as dt

    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import DataInterval

    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    interval = timetable.infer_manual_data_interval(run_after=dt.datetime(2024, 6, 2, 12, tzinfo=dt.UTC))
    assert interval == DataInterval(dt.datetime(2024, 6, 1, tzinfo=dt.UTC), dt.datetime(2024, 6, 2, tzinfo=dt.UTC))


@pytest.mark.parametrize("dag_file", ["slstr_cloud_mask.py", "slstr_train_model.py"])
def test_parsing_imports_no_heavy_modules(dag_file):
    """A DAG file must not import TensorFlow, h5py, netCDF4 or cloud_tasks stages at parse time."""
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('tensorflow', 'keras', 'h5py', 'netCDF4', 'pandas', 'cloud_tasks.convert')"
        " if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(DAGS / dag_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
