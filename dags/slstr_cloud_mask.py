"""
### SLSTR cloud masks

Turns a day of Sentinel-3 SLSTR L1 RBT products from a CEDA-like archive into U-Net cloud
masks, and checks them against SST buoy match-ups (the STFC e2e benchmark, case 2).

**Stages:** `plan` (the day's products and the ML commands) -> `make_chunks` -> per chunk of products
(mapped): `extract` -> `convert` (NetCDF -> HDF5) -> `train` (U-Net) -> `inference` (masks + quicklooks) ->
`sst_comparison` -> `summary`.

**Which products:** each scheduled or backfilled run takes the products whose sensing start lies
in its data interval (one UTC day). A manual run uses, in this order, the `file_list` param,
the `date` param, or its data interval.

**Where outputs land** (keyed by date and product, never by run id, so re-runs and backfills
reuse finished work): `<data_root>/hdf/YYYY/MM/DD/{day,night}/<product>.h5`,
`<data_root>/models/YYYY/MM/DD/`, `<data_root>/masks/YYYY/MM/DD/<product>.{h5,png}`,
`<data_root>/sst/YYYY/MM/DD/summary.json`, `<data_root>/summaries/YYYY-MM-DD.json`.

**Failure policy:** a bad product (corrupt zip, broken NetCDF) fails only its own mapped
`extract`/`convert` instance, after its retries, and the instance stays red in the grid. The
other products are still converted, and `train`, `inference`, `sst_comparison` and `summary` run
on every product that converted (they run when all chunks are done, whatever their state).
`summary` writes the day's summary, listing the failed products, and then fails without retry,
so the run ends *failed* and the bad product is not missed.

**Runners:** `train` and `inference` run the `cloud_tasks` CLI in the GPU image through Docker
(`runner=docker`, pool `gpu`) or as a local process (`runner=local`), with the same command.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task, task_group

from cloud_tasks.ml.options import TrainOptions
from cloud_tasks.operators import DEFAULT_IMAGE, CloudTasksOperator
from cloud_tasks.pipeline import DEFAULT_CHUNK_SIZE

CONVERTED = Asset("slstr_converted_hdf")
MODELS = Asset("slstr_cloud_models")
MASKS = Asset("slstr_cloud_masks")
SST = Asset("slstr_sst_comparison")

DEFAULT_ARGS = {
    "owner": "cloud-masking",
    "retries": 2,
    # A transient fault (NFS hiccup, killed worker) costs one retry; tests shorten the wait.
    "retry_delay": dt.timedelta(seconds=float(os.environ.get("CLOUD_TASKS_RETRY_DELAY_SECONDS", "120"))),
    "retry_exponential_backoff": True,
}

TRAIN_PARAMS = ("epochs", "batch_size", "label", "seed")  # the training options a run may choose

PARAMS = {
    "archive_root": Param(
        os.environ.get("CLOUD_TASKS_ARCHIVE_ROOT", "/neodc"),
        type="string",
        pattern="^/",
        description="Root of the CEDA-like archive, absolute (<root>/sentinel3a/data/SLSTR/L1_RBT/YYYY/MM/DD).",
    ),
    "missions": Param(
        ["S3A", "S3B"],
        type="array",
        items={"type": "string", "enum": ["S3A", "S3B"]},
        minItems=1,
        uniqueItems=True,
        description="Missions to process.",
    ),
    "date": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Manual runs: the day (YYYY-MM-DD) to process instead of the data interval.",
    ),
    "file_list": Param(
        None,
        type=["null", "string"],
        pattern="^/",
        description="Manual runs: a text file (absolute path) listing product zips, one per line (the seed's way).",
    ),
    "data_root": Param(
        os.environ.get("CLOUD_TASKS_DATA_ROOT", "/opt/airflow/data"),
        type="string",
        pattern="^/",
        description="Absolute path where every stage writes its outputs (must be visible to the ML containers).",
    ),
    "train": Param(True, type="boolean", description="Train a model on the day's products (else use model_path)."),
    "model_path": Param(
        None, type=["null", "string"], pattern="^/", description="Existing model.keras used when train is off."
    ),
    # training options: names, defaults, bounds and help from cloud_tasks.ml.options, as the `train` CLI's
    **{name: Param(TrainOptions.default(name), **TrainOptions.json_schema(name)) for name in TRAIN_PARAMS},
    "matchups": Param(
        None,
        type=["null", "string"],
        pattern="^/",
        description="SST match-up table; default <archive_root>/matchups/sst_matchups_YYYYMMDD.h5.",
    ),
    "runner": Param(
        os.environ.get("CLOUD_TASKS_RUNNER", "docker"),
        type="string",
        enum=["docker", "local"],
        description="Run train/inference in the GPU image (docker) or as a local process.",
    ),
    "gpu": Param(True, type="boolean", description="Give the ML containers the host's GPUs."),
    "image": Param(os.environ.get("CLOUD_TASKS_IMAGE", DEFAULT_IMAGE), type="string", description="The ML image."),
    "chunk_size": Param(
        DEFAULT_CHUNK_SIZE,
        type="integer",
        minimum=1,
        maximum=1000,
        description="Products per mapped convert instance (at least).",
    ),
    "keep_extracted": Param(False, type="boolean", description="Keep extracted .SEN3 folders after conversion."),
}


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["slstr", "cloud-mask", "sentinel-3", "ml"],
    doc_md=__doc__,
)
def slstr_cloud_mask():
    @task(multiple_outputs=True)
    def plan() -> dict:
        """Plan the run: its day and products, the commands of the ML stages and what they read."""
        from cloud_tasks.pipeline import plan_run

        context = get_current_context()
        return plan_run(
            context["params"],
            data_interval_start=context.get("data_interval_start"),
            data_interval_end=context.get("data_interval_end"),
        ).as_xcom()

    @task_group
    def process_chunk(chunk: list[str], day: str, data_root: str):
        """Extract and convert one chunk of products."""

        @task(map_index_template="{{ chunk_label }}")
        def extract(chunk: list[str], day: str, data_root: str) -> list[str]:
            """Unzip the chunk's products (skipping those already converted)."""
            from cloud_tasks.pipeline import DayRun, chunk_label, extract_chunk

            get_current_context()["chunk_label"] = chunk_label(chunk)
            return extract_chunk(chunk, DayRun.of(day, data_root))

        @task(map_index_template="{{ chunk_label }}", trigger_rule="all_done", outlets=[CONVERTED])
        def convert(chunk: list[str], day: str, data_root: str) -> list[str]:
            """Convert the chunk's extracted products to HDF5; runs even if some extractions failed."""
            from cloud_tasks.pipeline import DayRun, chunk_label, convert_chunk

            context = get_current_context()
            context["chunk_label"] = chunk_label(chunk)
            run = DayRun.of(day, data_root)
            return convert_chunk(chunk, run, keep_extracted=context["params"]["keep_extracted"])

        extract(chunk, day, data_root) >> convert(chunk, day, data_root)

    @task
    def make_chunks(products: list[str]) -> list[list[str]]:
        """Group the products so that a run maps at most a few hundred instances (~2000 products a day)."""
        from cloud_tasks.pipeline import chunk_products

        return chunk_products(products, get_current_context()["params"]["chunk_size"])

    planned = plan()
    chunks = process_chunk.partial(day=planned["day"], data_root=planned["data_root"]).expand(
        chunk=make_chunks(planned["products"])
    )

    ml_step = {
        "runner": "{{ params.runner }}",
        "gpu": "{{ params.gpu }}",
        "image": "{{ params.image }}",
        "data_root": planned["data_root"],
        "pool": "gpu",
        "execution_timeout": dt.timedelta(hours=12),
    }
    train = CloudTasksOperator(
        task_id="train",
        arguments=planned["train_arguments"],
        read_only_mounts=planned["train_inputs"],
        trigger_rule="all_done",  # train on whatever converted, even if some products failed
        outlets=[MODELS],
        doc_md="Train the U-Net on the day's converted day-time products (skipped when `train` is off).",
        **ml_step,
    )
    inference = CloudTasksOperator(
        task_id="inference",
        arguments=planned["inference_arguments"],
        read_only_mounts=planned["inference_inputs"],
        trigger_rule="none_failed",  # runs after training, or with model_path when training is skipped
        outlets=[MASKS],
        doc_md="Write a cloud mask and a quicklook per day-time product.",
        **ml_step,
    )

    @task(outlets=[SST])
    def sst_comparison(day: str, data_root: str, matchups: str) -> dict:
        """Compare the model mask and the Bayesian mask against SST match-ups (median, robust SD)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from cloud_tasks.pipeline import DayRun, compare_day

        result = compare_day(DayRun.of(day, data_root), matchups)
        if result is None:
            raise AirflowSkipException(f"no SST match-up table at {matchups}")
        return result

    @task(trigger_rule="all_done")
    def summary(planned_products: list[str], day: str, data_root: str) -> dict:
        """Write and log the run summary: products converted, masked and failed, SST statistics."""
        from airflow.sdk.exceptions import AirflowFailException

        from cloud_tasks.pipeline import DayRun, summarise_day

        if day is None:  # a skip would end the run green although nothing was processed
            raise AirflowFailException("plan failed (see its log): no products to summarise")
        result = summarise_day(planned_products, DayRun.of(day, data_root))
        if result["failed"]:
            # the summary is written; failing here (without retries) marks the whole run failed
            raise AirflowFailException(f"{len(result['failed'])} product(s) failed: {', '.join(result['failed'])}")
        return result

    sst = sst_comparison(planned["day"], planned["data_root"], planned["matchups"])
    chunks >> train >> inference >> sst
    sst >> summary(planned["products"], planned["day"], planned["data_root"])


slstr_cloud_mask()
