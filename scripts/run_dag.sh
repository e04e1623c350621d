#!/usr/bin/env bash
# The main job: generate a sample archive and run the product flow over it end to end with Airflow
# (`airflow dags test`, embedded SQLite metadata DB, local runner): the training DAG trains, registers and
# promotes a first model of each kind (day, thermal); the daily DAG masks the day with them. Then print where every
# output is.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-$REPO/.venv}
WORKDIR=${WORKDIR:-$REPO/runs/sample}
DATE=${DATE:-2024-06-01}
PRODUCTS=${PRODUCTS:-6}
EPOCHS=${EPOCHS:-5}

export AIRFLOW_HOME=${AIRFLOW_HOME:-$REPO/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$REPO/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$REPO/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# The deployment settings (cloud_tasks/deployment.py): runs may only touch the sample's work folder.
export CLOUD_TASKS_ARCHIVE_ROOTS=$WORKDIR CLOUD_TASKS_DATA_ROOTS=$WORKDIR CLOUD_TASKS_RUNNERS=local CLOUD_TASKS_GPU=false
# A per-machine secret, kept out of the repository.
if [ ! -s "$AIRFLOW_HOME/jwt_secret" ]; then
  mkdir -p "$AIRFLOW_HOME"
  "$VENV/bin/python" -c "import secrets; print(secrets.token_urlsafe(64))" > "$AIRFLOW_HOME/jwt_secret"
fi
export AIRFLOW__API_AUTH__JWT_SECRET=$(cat "$AIRFLOW_HOME/jwt_secret")
export PATH=$VENV/bin:$PATH

airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1
airflow pools set gpu 1 "ML steps on the GPUs" > /dev/null
python -m cloud_tasks make-sample "$WORKDIR/archive" --date "$DATE" --products "$PRODUCTS" --grid small

# 1. The training DAG: train a first model of each kind on the day, register them as versions and promote them.
conf=$(python - "$WORKDIR" "$EPOCHS" "$DATE" <<'PY'
import datetime as dt, json, sys
workdir, epochs, date = sys.argv[1], int(sys.argv[2]), dt.date.fromisoformat(sys.argv[3])
print(json.dumps({"archive_root": f"{workdir}/archive", "data_root": f"{workdir}/data", "runner": "local",
                  "start": date.isoformat(), "end": (date + dt.timedelta(days=1)).isoformat(),
                  "epochs": epochs, "batch_size": 8, "promote": True}))
PY
)
airflow dags test slstr_train_model "$DATE" --conf "$conf" > "$WORKDIR/train-dag-test.log" 2>&1 \
  || { tail -50 "$WORKDIR/train-dag-test.log"; echo "training run failed: see $WORKDIR/train-dag-test.log" >&2; exit 1; }

# 2. The daily DAG: mask the day with the production models, compare with SST match-ups, catalogue the masks.
conf=$(python - "$WORKDIR" "$DATE" <<'PY'
import json, sys
workdir, date = sys.argv[1], sys.argv[2]
print(json.dumps({"archive_root": f"{workdir}/archive", "data_root": f"{workdir}/data", "date": date,
                  "runner": "local"}))
PY
)
airflow dags test slstr_cloud_mask "$DATE" --conf "$conf" > "$WORKDIR/dag-test.log" 2>&1 \
  || { tail -50 "$WORKDIR/dag-test.log"; echo "DAG run failed: see $WORKDIR/dag-test.log" >&2; exit 1; }

python - "$WORKDIR/data" "$DATE" <<'PY'
import datetime as dt, json, sys
from cloud_tasks.layout import DataRoot
from cloud_tasks.sst import format_summary
data, day = DataRoot(sys.argv[1]), dt.date.fromisoformat(sys.argv[2])
summary = json.loads(data.summary(day).read_text())
registry = data.registry
for model in summary["models"]:
    print(f"{model['kind']} model {model['version']} (production): {registry.version(model['version']).folder}")
names = " + ".join(model["version"] for model in summary["models"]) or "no model"
print(f"DAG run of {day}: {summary['products']} products, converted {summary['converted']}, "
      f"masked {summary['masked']} with {names}, failed {len(summary['failed'])}")
for note in summary["notes"]:
    print(f"  note: {note}")
if summary["sst"]:
    print("\n".join("  " + line for line in format_summary(summary["sst"]).splitlines()))
print(f"masks (CF-NetCDF) and quicklooks: {summary['masks']}/*.nc, *.png")
print(f"STAC catalogue: {data.catalogue.root}")
print(f"SST comparison: {data.sst(day).folder}")
print(f"run summary: {data.summary(day)}")
PY
