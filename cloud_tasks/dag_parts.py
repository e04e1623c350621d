"""What the two DAGs share (needs the ``airflow`` extra): operations Params, retry policy, the mapped
extract-and-convert task, the ML step settings and the end-of-run check that makes a run's state
tell the truth. Light at import (``airflow.sdk`` only): the DAG files import it at parse time.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Asset, Param, get_current_context, task

from cloud_tasks.deployment import Deployment
from cloud_tasks.planning import DEFAULT_CHUNK_SIZE

SCIENCE, OPERATIONS = "Science: what to process", "Operations: where and how it runs"
CONVERTED = Asset("slstr_converted_hdf")
MODELS = Asset("slstr_cloud_models")
MASKS = Asset("slstr_cloud_masks")
SST = Asset("slstr_sst_comparison")
CATALOGUE = Asset("slstr_stac_catalogue")
GPU_POOL = "gpu"
FAILED_STATES = ("failed", "upstream_failed")

# A transient fault (NFS hiccup, killed worker) costs a retry, with a bounded back-off; bad input fails
# at once (AirflowFailException). Tests shorten the wait.
DEFAULT_ARGS = {
    "owner": "cloud-masking",
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=float(os.environ.get("CLOUD_TASKS_RETRY_DELAY_SECONDS", "120"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=float(os.environ.get("CLOUD_TASKS_MAX_RETRY_DELAY_MINUTES", "15"))),
}


def operation_params() -> dict[str, Param]:
    """Where the data is and how the steps run, within what the deployment allows (``cloud_tasks.deployment``):
    paths below its roots, one of its runners and images. In the trigger form's Operations section."""
    allowed = Deployment.from_env()
    return {
        "archive_root": Param(
            allowed.archive_roots[0],
            type="string",
            pattern="^/",
            section=OPERATIONS,
            description=f"The CEDA-like archive, at or below {', '.join(allowed.archive_roots)}.",
        ),
        "data_root": Param(
            allowed.data_roots[0],
            type="string",
            pattern="^/",
            section=OPERATIONS,
            description=f"Where every stage writes its outputs, at or below {', '.join(allowed.data_roots)}.",
        ),
        "runner": Param(
            allowed.runners[0],
            type="string",
            enum=list(allowed.runners),
            section=OPERATIONS,
            description="Run the ML steps in the GPU image (docker) or as a local process.",
        ),
        "image": Param(
            allowed.images[0], type="string", enum=list(allowed.images), section=OPERATIONS, description="The ML image."
        ),
        "chunk_size": Param(
            DEFAULT_CHUNK_SIZE,
            type="integer",
            minimum=1,
            maximum=1000,
            section=OPERATIONS,
            description="Products per mapped extract-and-convert instance (at least).",
        ),
        "keep_extracted": Param(
            False, type="boolean", section=OPERATIONS, description="Keep extracted .SEN3 folders after conversion."
        ),
    }


def missions_param() -> Param:
    return Param(
        ["S3A", "S3B"],
        type="array",
        items={"type": "string", "enum": ["S3A", "S3B"]},
        minItems=1,
        uniqueItems=True,
        section=SCIENCE,
        description="Missions to process.",
    )


def ml_step_settings(data_root) -> dict:
    """What every ML step of both DAGs shares: the runner's Params, the GPU pool, a generous time limit."""
    return {
        "runner": "{{ params.runner }}",
        "image": "{{ params.image }}",
        "data_root": data_root,
        "pool": GPU_POOL,
        "execution_timeout": dt.timedelta(hours=12),
    }


def _fail_on_bad_input(exc: Exception) -> None:
    """Bad products fail their instance at once (a retry cannot fix a corrupt file); other faults retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from cloud_tasks.errors import BatchFailures, DiskFullError, InputError

    if isinstance(exc, BatchFailures) and not any(isinstance(f, DiskFullError) for f in exc.failures):
        raise AirflowFailException(str(exc)) from exc
    if isinstance(exc, InputError):
        raise AirflowFailException(str(exc)) from exc


@task
def make_chunks(plan: dict) -> list[dict]:
    """Group the run's products (by day) so that a run maps a bounded number of instances (``chunk_products``)."""
    from cloud_tasks.planning import chunk_products

    by_day = plan.get("chunks") or {plan["day"]: plan["products"]}
    chunks = chunk_products(by_day, get_current_context()["params"]["chunk_size"])
    return [{**chunk, "data_root": plan["data_root"]} for chunk in chunks]


@task(map_index_template="{{ chunk_label }}")
def process_chunk(chunk: dict) -> None:
    """Extract and convert one chunk of products (``{"day", "products", "data_root"}``): one mapped instance
    per chunk, returning nothing (no XCom row per chunk: nobody reads one)."""
    from cloud_tasks.pipeline import extract_and_convert
    from cloud_tasks.planning import DayRun, chunk_label

    context = get_current_context()
    context["chunk_label"] = chunk_label(chunk)
    run = DayRun.of(chunk["day"], chunk["data_root"])
    try:
        extract_and_convert(chunk["products"], run, keep_extracted=context["params"]["keep_extracted"])
    except Exception as exc:
        _fail_on_bad_input(exc)
        raise


def task_states(context) -> dict[str, str]:
    """The states of this run's task instances (mapped ones as ``<task>_<index>``), but the asking task's."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return {name: state for name, state in sorted(states.items()) if name != ti.task_id}


def failed_stages(context) -> dict[str, str]:
    """This run's task instances that failed or could not run because of a failure: label -> state."""
    return {name: state for name, state in task_states(context).items() if state in FAILED_STATES}


def result_of(context, task_id: str):
    """A task's return value if it succeeded in this run, else None (never asked for: no "XCom not found")."""
    if task_states(context).get(task_id) != "success":
        return None
    return context["ti"].xcom_pull(task_ids=task_id)


def emit(context, asset: Asset, **extra) -> None:
    """Describe this stage's one asset event of the run (the day it concerns, counts)."""
    context["outlet_events"][asset].extra = extra


def _run_type(dag_run) -> str | None:
    run_type = getattr(dag_run, "run_type", None)
    return getattr(run_type, "value", run_type)


def plan_or_fail(context, wait: dt.timedelta):
    """The daily run's plan once its day has products; a plan that cannot be made fails at once (no retry);
    no products after ``wait`` since the run started ends the run with one message."""
    import logging

    from airflow.sdk import PokeReturnValue
    from airflow.sdk.exceptions import AirflowFailException

    from cloud_tasks.errors import CloudTasksError
    from cloud_tasks.planning import plan_day

    dag_run = context["dag_run"]
    interval = (context.get("data_interval_start"), context.get("data_interval_end"))
    try:
        plan = plan_day(
            context["params"],
            run_type=_run_type(dag_run),
            deployment=Deployment.from_env(),
            logical_date=context.get("logical_date"),
            data_interval=interval,
        )
    except CloudTasksError as exc:
        raise AirflowFailException(str(exc)) from exc
    if plan.products:
        return PokeReturnValue(is_done=True, xcom_value=plan.as_xcom())
    # the latest of the run's own timestamps: dag.test() dates a run's start at its logical date
    stamps = [getattr(dag_run, name, None) for name in ("start_date", "queued_at")]
    started = max((stamp for stamp in stamps if stamp is not None), default=dt.datetime.now(dt.UTC))
    waited = dt.datetime.now(dt.UTC) - started
    where = context["params"].get("file_list") or context["params"]["archive_root"]
    if waited >= wait:
        raise AirflowFailException(
            f"no SLSTR product of {plan.run.day} in {where} after waiting {waited} (the limit is {wait}): "
            "nothing to process; run the day again once its products have arrived"
        )
    logging.getLogger(__name__).info(
        "no SLSTR product of %s in %s yet: waiting (%s so far)", plan.run.day, where, waited
    )
    return PokeReturnValue(is_done=False)


def mask_step(plan: dict) -> dict:
    """The mask step's settings once conversion is done: no arguments (skipped, with the reason) when there is
    no day model, or no product its models mask (night products need the thermal model)."""
    from cloud_tasks.layout import DAY_SPLIT, HDF_SUFFIX, SPLITS, DataRoot

    hdf = DataRoot(plan["data_root"]).hdf(dt.date.fromisoformat(plan["day"]))
    counts = {split: len(list((hdf / split).glob(f"*{HDF_SUFFIX}"))) for split in SPLITS}
    thermal = any(model["kind"] == "thermal" for model in plan["models"])
    maskable = sum(counts.values()) if thermal else counts[DAY_SPLIT]
    what = "product" if thermal else "day-time product (no thermal model for night ones)"
    reason = plan["skip_reason"] or ("" if maskable else f"{plan['day']}: no {what} to mask")
    return {
        "day_products": counts[DAY_SPLIT],
        "maskable_products": maskable,
        "data_root": plan["data_root"],
        "arguments": [] if reason else plan["inference_arguments"],
        "read_only_mounts": [] if reason else plan["inference_inputs"],
        "skip_reason": reason,
        "event": {"day": plan["day"], "model_version": plan["model_version"]},
    }


def finish_day(context) -> dict:
    """Write the day's summary from what is on disk and what failed (the plan and the SST comparison as this
    run made them, if it made them); fail the run when anything failed."""
    from airflow.sdk.exceptions import AirflowFailException

    from cloud_tasks.pipeline import summarise_day
    from cloud_tasks.planning import DayRun

    failures = failed_stages(context)
    plan, sst = result_of(context, "plan"), result_of(context, "sst_comparison")
    if not plan:
        raise AirflowFailException(f"the run was not planned (see the `plan` task's log); failed: {failures}")
    summary = summarise_day(
        plan["products"],
        DayRun.of(plan["day"], plan["data_root"]),
        models=plan["models"],
        sst=sst,
        failed_stages=failures,
        notes=plan["notes"],
    )
    problems = []
    if summary["failed"]:
        problems.append(f"{len(summary['failed'])} product(s) failed: {', '.join(summary['failed'])}")
    if failures:
        problems.append(f"failed stages: {', '.join(f'{name} ({state})' for name, state in failures.items())}")
    if problems:
        raise AirflowFailException("; ".join(problems))
    return summary


def list_training_products(plan: dict, run: dict) -> dict:
    """Write one kind's training file lists (the training plan's ``plan``, one of its ``runs``); return the run
    with the data root and the lists' counts: what the kind's train, register and promote steps read."""
    from cloud_tasks.pipeline import write_training_lists

    counts = write_training_lists(plan["data_root"], run["key"], plan["chunks"], plan["holdout_days"], run["kind"])
    return {**run, "data_root": plan["data_root"], "listed": counts}


def _registered(data_root: str, run: dict):
    """The version a kind's training run (``run``: its kind and key) was registered as."""
    from cloud_tasks.errors import CloudTasksError
    from cloud_tasks.registry import ModelRegistry

    for version in ModelRegistry(data_root).versions():
        if version.info.get("key") == run["key"]:
            return version
    raise CloudTasksError(f"the {run['kind']} training run {run['key']} is not registered in {data_root}")


def training_report(data_root: str, run: dict) -> dict:
    """A kind's registered version: its held-out scores beside its kind's production model's (logged as a table)."""
    import logging

    from cloud_tasks.registry import ModelRegistry

    version = _registered(data_root, run)
    card, production = version.files.card.read_text(), ModelRegistry(data_root).production_name(version.kind)
    logging.getLogger(__name__).info(
        "registered %s, a %s model (%s production: %s)\n%s", version.name, version.kind, version.kind, production, card
    )
    return {"version": version.name, "production": production, "model_card": str(version.files.card)}


def promote_version(context, run: dict) -> str:
    """Make a kind's registered version (``run``: data root, kind, key) its kind's production model, when the
    run's ``promote`` param says so."""
    from airflow.sdk.exceptions import AirflowSkipException

    from cloud_tasks.registry import ModelRegistry

    version = _registered(run["data_root"], run)
    context["kind"] = version.kind
    if not context["params"]["promote"]:
        raise AirflowSkipException(f"{version.name} registered; not promoted (the 'promote' param is off)")
    user = getattr(context["dag_run"], "triggering_user_name", None) or "airflow"
    reason = f"promoted by training run {context['ti'].run_id}"
    return ModelRegistry(run["data_root"]).promote(version.name, reason=reason, by=user)["version"]


def finish_training(context, plan: dict | None) -> dict:
    """The training run's verdict: fail when any stage of any kind failed, else log each kind's model card."""
    from airflow.sdk.exceptions import AirflowFailException

    failures = failed_stages(context)
    if failures or not plan:
        raise AirflowFailException(f"failed stages: {', '.join(f'{k} ({v})' for k, v in failures.items())}")
    return {run["kind"]: training_report(plan["data_root"], run) for run in plan["runs"]}


def compare_or_skip(context, plan: dict) -> dict:
    """The day's SST comparison (one asset event with the day); skipped when the day has no match-up table."""
    from airflow.sdk.exceptions import AirflowSkipException

    from cloud_tasks.pipeline import compare_day
    from cloud_tasks.planning import DayRun

    result = compare_day(DayRun.of(plan["day"], plan["data_root"]), plan["matchups"])
    if result is None:
        raise AirflowSkipException(f"no SST match-up table at {plan['matchups']}")
    emit(context, SST, day=plan["day"])
    return result


def catalogue_day(context, plan: dict) -> int:
    """STAC Items of the day's masks and of the registry's models (one asset event with the day)."""
    from cloud_tasks import catalogue

    items = catalogue.update(plan["data_root"], dt.date.fromisoformat(plan["day"]))
    emit(context, CATALOGUE, day=plan["day"], items=len(items))
    return len(items)
