# Airflow image of the deployment: Airflow 3 + the docker provider + cloud_tasks without TensorFlow
# (the ML steps run in the ML image, docker/Dockerfile). cloud_tasks' own dependencies (pyproject.toml) come
# with it: the workers convert (netCDF4, h5py, isal) and compare SST; the API server's "Cloud masks" page reads
# the NetCDF masks; the catalogue step needs shapely, pystac, pyresample and rasterio. Checked by importing them.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}
COPY --chown=airflow:0 pyproject.toml README.md /opt/cloud-tasks/
COPY --chown=airflow:0 cloud_tasks /opt/cloud-tasks/cloud_tasks
RUN pip install --no-cache-dir "/opt/cloud-tasks[airflow]" "apache-airflow==${AIRFLOW_VERSION}" \
    && python -c "import isal, netCDF4, pyresample, pystac, rasterio, shapely; from pystac.extensions.mlm import MLMExtension; from cloud_tasks.product import cf_mask, geotiff, stac; import cloud_tasks.sst"
