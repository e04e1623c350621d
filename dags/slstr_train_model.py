"""
### SLSTR cloud-mask model training

Trains the U-Net of each model kind the `kinds` param names (`day`: nine channels, day products; `thermal`:
brightness temperatures, the night and twilight pixels) on a chosen period, evaluates each on products it never
saw, and registers each as a new **model version** in the model registry (`<data_root>/registry`). Triggered by hand.

**Stages:** `plan` (the period's products, one run per kind with its key) -> `process_chunk` (one mapped
instance per chunk of products, labelled with the day and product: extract, then convert, as the daily DAG does;
what is converted already is kept) -> per kind (the `train_kind` group, mapped, labelled with the kind; a kind's
failure leaves the others going): `training_set` (file lists: the kind's products, day-split ones for the day
kind, both splits for the thermal kind; and held-out ones when holding out by day) -> `train` (resumable: a re-run
with the same products and options continues the same training folder) -> `register` (scores the candidate, and
its kind's production model, on the held-out products; writes `metrics.json` and a model card; copies the run into
version `vN`, read-only) -> `promote` (to its kind's production alias, only when the `promote` param is set) ->
`report`.

**Held-out products:** `holdout=products` keeps the `1 - train_split` share of products out of
training (split by product); `holdout=days` keeps the period's last day out entirely.

**Failure policy:** as the daily DAG: bad products fail their instance at once, the others go on;
`report` always runs and fails the run when any stage of any kind failed.

Promote a version later with `python -m cloud_tasks models promote DATA_ROOT vN --reason ...`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task, task_group

from cloud_tasks.dag_parts import (
    DEFAULT_ARGS,
    MODELS,
    SCIENCE,
    make_chunks,
    missions_param,
    ml_step_settings,
    operation_params,
    process_chunk,
)
from cloud_tasks.deployment import Deployment
from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.operators import CloudTasksOperator
from cloud_tasks.planning import HOLDOUTS
from cloud_tasks.registry import KINDS

TRAIN_PARAMS = ("label", "epochs", "batch_size", "patch_size", "train_split", "seed", "precision", "jit_compile")

PARAMS = {
    "start": Param("2024-06-01", type="string", format="date", section=SCIENCE, description="First day trained on."),
    "end": Param(
        "2024-06-08", type="string", format="date", section=SCIENCE, description="Day after the last (exclusive)."
    ),
    "missions": missions_param(),
    "kinds": Param(
        list(KINDS),
        type="array",
        items={"type": "string", "enum": list(KINDS)},
        minItems=1,
        uniqueItems=True,
        section=SCIENCE,
        description="Model kinds to train: day (nine channels, day products), thermal (brightness temperatures, "
        "night and twilight pixels).",
    ),
    **{
        name: Param(TrainOptions.default(name), **TrainOptions.json_schema(name), section=SCIENCE)
        for name in TRAIN_PARAMS
    },
    "holdout": Param(
        HOLDOUTS[0],
        type="string",
        enum=list(HOLDOUTS),
        section=SCIENCE,
        description="Evaluate on held-out products (split by product) or on the period's last day.",
    ),
    "promote": Param(
        False, type="boolean", section=SCIENCE, description="Promote each new version to its kind's production alias."
    ),
    **operation_params(),
}


@task(retries=0, multiple_outputs=True)
def plan() -> dict:
    """Plan the training run: the period's products by day and, per kind, the run's key and commands."""
    from airflow.sdk.exceptions import AirflowFailException

    from cloud_tasks.errors import CloudTasksError
    from cloud_tasks.planning import plan_training

    try:
        return plan_training(get_current_context()["params"], deployment=Deployment.from_env()).as_xcom()
    except CloudTasksError as exc:
        raise AirflowFailException(str(exc)) from exc


@task
def kind_runs(plan: dict) -> list[dict]:
    """The kinds' runs, as a task's own result: what `train_kind` maps over (not one key of the plan's)."""
    return plan["runs"]


@task(map_index_template="{{ kind }}", trigger_rule="all_done_min_one_success")
def training_set(plan: dict, run: dict) -> dict:
    """List the kind's converted products of the period: what its training and evaluation read."""
    from cloud_tasks.dag_parts import list_training_products

    get_current_context()["kind"] = run["kind"]
    return list_training_products(plan, run)


@task(retries=0, map_index_template="{{ kind }}")
def promote(run: dict) -> str | None:
    """Make the kind's registered version its production model, when the run's `promote` param says so."""
    from cloud_tasks.dag_parts import promote_version

    return promote_version(get_current_context(), run)


@task_group
def train_kind(plan: dict, run: dict):
    """Train, register and promote one model kind (an instance per kind the run trains)."""
    listed = training_set(plan, run)
    # the event (the register step's asset event) also labels each step's instance with its kind
    step = ml_step_settings(listed["data_root"]) | {"event": {"key": listed["key"], "kind": listed["kind"]}}
    label = "{{ task.event.kind }}"
    train = CloudTasksOperator(
        task_id="train",
        arguments=listed["train_arguments"],
        read_only_mounts=listed["train_inputs"],
        map_index_template=label,
        doc_md="Train the kind's U-Net on the period's products (resumes an interrupted run).",
        **step,
    )
    register = CloudTasksOperator(
        task_id="register",
        arguments=listed["register_arguments"],
        outlets=[MODELS],
        map_index_template=label,
        doc_md="Score the candidate (and its kind's production model) on held-out products; register a new version.",
        **step,
    )
    train >> register >> promote(listed)


@task(trigger_rule="all_done", retries=0)
def report(plan: dict | None) -> dict:
    """Log each kind's registered version's scores beside its production model's; fail if any stage failed."""
    from cloud_tasks.dag_parts import finish_training

    return finish_training(get_current_context(), plan)


@dag(
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["slstr", "cloud-mask", "sentinel-3", "ml", "training"],
    doc_md=__doc__,
)
def slstr_train_model():
    planned = plan()
    chunks = process_chunk.expand(chunk=make_chunks(planned))
    chunks >> train_kind.partial(plan=planned).expand(run=kind_runs(planned)) >> report(planned)


slstr_train_model()
