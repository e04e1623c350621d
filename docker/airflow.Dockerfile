# Airflow image of the deployment: Airflow 3 + the docker provider + cloud_tasks without TensorFlow
# (the ML steps run in the ML image, docker/Dockerfile).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}
COPY --chown=airflow:0 pyproject.toml README.md /opt/cloud-tasks/
COPY --chown=airflow:0 cloud_tasks /opt/cloud-tasks/cloud_tasks
RUN pip install --no-cache-dir "/opt/cloud-tasks[airflow]" "apache-airflow==${AIRFLOW_VERSION}"
