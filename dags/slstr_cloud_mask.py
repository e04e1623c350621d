"""
### SLSTR cloud masks, daily

Masks each day of Sentinel-3 SLSTR L1 RBT products from a CEDA-like archive with the **production
models** of the model registry (day and thermal) (trained and registered by `slstr_train_model`, promoted by a person),
and checks the masks against SST buoy match-ups.

**Stages:** `plan` (waits for the day's products; decides the model) -> `process_chunk` (one mapped
instance per chunk of products, labelled with the day and product: extract, then convert NetCDF -> HDF5)
-> `converted` -> `mask` (inference with the models) -> [`sst_comparison`, `catalogue`] -> `summary`.

**Which day:** a scheduled or backfill run processes its own data interval (one UTC day); a `date` in
its conf naming another day is refused. A manual run takes the `date` param (or the `file_list`), else
the day of its logical date. Each mapped instance's label starts with the day.

**Late data:** `plan` waits for the day's first products (rescheduling itself: no worker slot held) up
to `CLOUD_TASKS_PRODUCT_WAIT_HOURS` (deployment setting), then ends the run with one message.

**Which models:** the `model` param names the day model (nine channels), `thermal_model` the thermal one
(brightness temperatures: night products and twilight pixels without reflectances): `production` (default)
or a version (`v3`); `thermal_model` may be `none`. Each pixel is masked by the model of its domain, and
the masks record which (`model_used`) and both versions with their SHA-256; a mask made by other versions
is made again, one made by the same kept. With no day model in production yet, `mask` is skipped; with no
thermal model, night products are not masked; the summary says so.

**Failure policy:** a bad product fails its chunk's `process_chunk` instance at once, naming each bad
product with its own error (no retry: a retry cannot fix a corrupt file); transient faults are retried
with a bounded back-off. The other products go on. `summary` always runs, writes the day's summary
(what was converted and masked by this run's model, each failed stage and product) and fails when
anything failed, so the run's state is the truth. After fixing an input, clear the failed instances:
`converted` and everything after them wait for the re-run.

**Outputs** (keyed by date and product, never by run id): see `cloud_tasks/layout.py`.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, get_current_context, task

from cloud_tasks.dag_parts import (
    CATALOGUE,
    CONVERTED,
    DEFAULT_ARGS,
    MASKS,
    SCIENCE,
    SST,
    emit,
    make_chunks,
    missions_param,
    ml_step_settings,
    operation_params,
    process_chunk,
)
from cloud_tasks.operators import CloudTasksOperator
from cloud_tasks.registry import MODEL_NAME_PATTERN, OPTIONAL_MODEL_NAME_PATTERN, PRODUCTION

PRODUCT_WAIT = dt.timedelta(hours=float(os.environ.get("CLOUD_TASKS_PRODUCT_WAIT_HOURS", "12")))
POKE_INTERVAL = dt.timedelta(minutes=float(os.environ.get("CLOUD_TASKS_PRODUCT_POKE_MINUTES", "10")))

PARAMS = {
    "date": Param(
        None,
        type=["null", "string"],
        format="date",
        section=SCIENCE,
        description="Manual runs: the day (YYYY-MM-DD) to process (default: the day of the logical date).",
    ),
    "missions": missions_param(),
    "model": Param(
        PRODUCTION,
        type="string",
        pattern=MODEL_NAME_PATTERN,
        section=SCIENCE,
        description="The registered day model (nine channels): 'production' or a version (v1, v2, ...).",
    ),
    "thermal_model": Param(
        PRODUCTION,
        type="string",
        pattern=OPTIONAL_MODEL_NAME_PATTERN,
        section=SCIENCE,
        description="The registered thermal model (night, twilight pixels without reflectances): 'production' "
        "(none promoted: night not masked), a version, or 'none'.",
    ),
    "geotiff": Param(
        False,
        type="boolean",
        section=SCIENCE,
        description="Also write each mask as a Cloud-Optimized GeoTIFF on a lat/lon grid (the NetCDF is the record).",
    ),
    "matchups": Param(
        None,
        type=["null", "string"],
        pattern="^/",
        section=SCIENCE,
        description="SST match-up table; default <archive_root>/matchups/sst_matchups_YYYYMMDD.h5.",
    ),
    "file_list": Param(
        None,
        type=["null", "string"],
        pattern="^/",
        section=SCIENCE,
        description="Manual runs: a text file listing product zips, one per line (instead of the archive's day).",
    ),
    **operation_params(),
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
    @task.sensor(poke_interval=POKE_INTERVAL, timeout=PRODUCT_WAIT * 2, mode="reschedule")
    def plan() -> PokeReturnValue:
        """Plan the run (its day, products and models); wait, rescheduling, until the day has products."""
        from cloud_tasks.dag_parts import plan_or_fail

        return plan_or_fail(get_current_context(), PRODUCT_WAIT)

    @task(outlets=[CONVERTED], multiple_outputs=True, trigger_rule="all_done_min_one_success")
    def converted(plan: dict) -> dict:
        """Conversion of the day done (one asset event per run, with the day): what the mask step will do."""
        from cloud_tasks.dag_parts import mask_step

        step = mask_step(plan)
        emit(get_current_context(), CONVERTED, day=plan["day"], day_products=step["day_products"])
        return step

    planned = plan()
    chunks = process_chunk.expand(chunk=make_chunks(planned))
    done = converted(planned)
    mask = CloudTasksOperator(
        task_id="mask",
        arguments=done["arguments"],
        read_only_mounts=done["read_only_mounts"],
        skip_reason=done["skip_reason"],
        event=done["event"],
        outlets=[MASKS],
        doc_md="Mask the day's products with the plan's registered models (a cloud mask and a quicklook each).",
        **ml_step_settings(done["data_root"]),
    )

    @task(outlets=[SST])
    def sst_comparison(plan: dict) -> dict:
        """Compare the model mask and the Bayesian mask against SST match-ups (median, robust SD)."""
        from cloud_tasks.dag_parts import compare_or_skip

        return compare_or_skip(get_current_context(), plan)

    @task(trigger_rule="all_done", retries=0)
    def summary() -> dict:
        """Write the day's summary (what this run converted and masked, what failed); fail if anything failed."""
        from cloud_tasks.dag_parts import finish_day

        return finish_day(get_current_context())

    @task(outlets=[CATALOGUE])
    def catalogue(plan: dict) -> int:
        """Add the day's mask products and the registry's models to the STAC catalogue (idempotent)."""
        from cloud_tasks.dag_parts import catalogue_day

        return catalogue_day(get_current_context(), plan)

    sst = sst_comparison(planned)
    finished = summary()
    chunks >> done >> mask >> [sst, catalogue(planned)] >> finished
    chunks >> finished  # after clearing failed instances, the verdict waits for their re-run


slstr_cloud_mask()
