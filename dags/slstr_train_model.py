"""
### SLSTR cloud-mask model training

Trains the U-Net once on a chosen period, evaluates it on products it never saw, and registers it as a
new **model version** in the model registry (`<data_root>/registry`). Triggered by hand.

**Stages:** `plan` (the period's products, the run's key) -> `process_chunk` (one mapped instance per
chunk of products, labelled with the day and product: extract, then convert, as the daily DAG does; what
is converted already is kept) -> `training_set` (file lists: training products, and held-out ones when holding
out by day) -> `train` (resumable: a re-run with the same products and options continues the same
training folder) -> `register` (scores the candidate, and the production model, on the held-out
products; writes `metrics.json` and a model card; copies the run into version `vN`, read-only) ->
`promote` (only when the `promote` param is set) -> `report`.

**Held-out products:** `holdout=products` keeps the `1 - train_split` share of products out of
training (split by product); `holdout=days` keeps the period's last day out entirely.

**Failure policy:** as the daily DAG: bad products fail their instance at once, the others go on;
`report` always runs and fails the run when any stage failed.

Promote a version later with `python -m cloud_tasks models promote DATA_ROOT vN --reason ...`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

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

TRAIN_PARAMS = ("label", "epochs", "batch_size", "patch_size", "train_split", "seed", "precision", "jit_compile")

PARAMS = {
    "start": Param("2024-06-01", type="string", format="date", section=SCIENCE, description="First day trained on."),
    "end": Param(
        "2024-06-08", type="string", format="date", section=SCIENCE, description="Day after the last (exclusive)."
    ),
    "missions": missions_param(),
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
    "promote": Param(False, type="boolean", section=SCIENCE, description="Promote the new version to production."),
    **operation_params(),
}


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
    @task(retries=0, multiple_outputs=True)
    def plan() -> dict:
        """Plan the training run: the period's products by day, the run's key, the train and register commands."""
        from airflow.sdk.exceptions import AirflowFailException

        from cloud_tasks.errors import CloudTasksError
        from cloud_tasks.planning import plan_training

        try:
            return plan_training(get_current_context()["params"], deployment=Deployment.from_env()).as_xcom()
        except CloudTasksError as exc:
            raise AirflowFailException(str(exc)) from exc

    @task(trigger_rule="all_done_min_one_success")
    def training_set(plan: dict) -> dict:
        """List the converted day-time products of the period: what training and evaluation read."""
        from cloud_tasks.pipeline import write_training_lists

        return write_training_lists(plan["data_root"], plan["key"], plan["chunks"], plan["holdout_days"])

    @task(retries=0)
    def promote(plan: dict) -> str | None:
        """Make the registered version the production model, when the run's `promote` param says so."""
        from cloud_tasks.dag_parts import promote_version

        return promote_version(get_current_context(), plan)

    @task(trigger_rule="all_done", retries=0)
    def report(plan: dict | None) -> dict:
        """Log the registered version's scores beside the production model's; fail if any stage failed."""
        from cloud_tasks.dag_parts import finish_training

        return finish_training(get_current_context(), plan)

    planned = plan()
    chunks = process_chunk.expand(chunk=make_chunks(planned))
    steps = ml_step_settings(planned["data_root"])
    train = CloudTasksOperator(
        task_id="train",
        arguments=planned["train_arguments"],
        read_only_mounts=planned["train_inputs"],
        doc_md="Train the U-Net on the period's day-time products (resumes an interrupted run).",
        **steps,
    )
    register = CloudTasksOperator(
        task_id="register",
        arguments=planned["register_arguments"],
        outlets=[MODELS],
        event={"key": planned["key"]},
        doc_md="Score the candidate (and the production model) on held-out products; register a new version.",
        **steps,
    )
    chunks >> training_set(planned) >> train >> register >> promote(planned) >> report(planned)


slstr_train_model()
