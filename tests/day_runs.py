"""``dag.test()`` runs of the daily DAG over the sample day with the local runner: what its DAG-level tests share.

A plain module, not ``conftest`` (see ``products``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from products import SAMPLE_DATE

# A manual run at this logical date processes the day before it: [SAMPLE_DATE, SAMPLE_DATE + 1 day).
SAMPLE_LOGICAL_DATE = dt.datetime.combine(SAMPLE_DATE + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def run_sample_day(dag, archive: Path, data_root: Path, **conf):
    """One run of the sample day, one product per chunk; returns the run and its task instances by (task, map index)."""
    run_conf = {
        "archive_root": str(archive),
        "data_root": str(data_root),
        "date": SAMPLE_DATE.isoformat(),
        "runner": "local",
        "chunk_size": 1,
        **conf,
    }
    dag_run = dag.test(logical_date=SAMPLE_LOGICAL_DATE, run_conf=run_conf)
    return dag_run, {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}
