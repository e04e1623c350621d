"""Shared fixtures: the real partial product (completed), and a small generated sample archive."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from products import REAL_PRODUCT, SAMPLE_DATE, writable_copy

REPO = Path(__file__).resolve().parents[1]
# Airflow reads its configuration when first imported: point it at a throw-away home with this
# repository's dags/ and plugins/ before any test imports it.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["CLOUD_TASKS_RETRY_DELAY_SECONDS"] = "1"
os.environ["CLOUD_TASKS_PRODUCT_WAIT_HOURS"] = "0"  # a day without products ends its run at once
# The deployment's allowed roots (cloud_tasks.deployment): the tests' archives and data roots are temporary folders.
os.environ["CLOUD_TASKS_ARCHIVE_ROOTS"] = os.environ["CLOUD_TASKS_DATA_ROOTS"] = tempfile.gettempdir()
os.environ["CLOUD_TASKS_RUNNERS"] = "local,docker"
os.environ["CLOUD_TASKS_IMAGES"] = "cloud-tasks-ml:latest,cloud-tasks-ml:test"  # docker/test-engine.sh builds :test
os.environ["CLOUD_TASKS_GPU"] = "false"


@pytest.fixture(scope="session")
def real_product(tmp_path_factory) -> Path:
    """The real partial product, completed with synthetic radiance and geodetic files."""
    from cloud_tasks.sample import complete_product

    product = writable_copy(REAL_PRODUCT, tmp_path_factory.mktemp("real") / REAL_PRODUCT.name)
    complete_product(product, seed=0)
    return product


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory) -> Path:
    """A small CEDA-like archive of 6 products (day, night and twilight) with match-ups."""
    from cloud_tasks.sample import make_sample_archive

    root = tmp_path_factory.mktemp("archive")
    make_sample_archive(root, SAMPLE_DATE, 6, grid="small", seed=1)
    return root


@pytest.fixture(scope="session")
def sample_products(sample_archive, tmp_path_factory) -> list[Path]:
    """The sample archive's products, extracted."""
    from cloud_tasks.extract import extract_products
    from cloud_tasks.paths import expand_inputs

    return extract_products(expand_inputs([sample_archive], ".zip"), tmp_path_factory.mktemp("extracted"))


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB in the throw-away AIRFLOW_HOME (dag.test() needs one)."""
    from airflow.utils import db

    db.resetdb()
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory) -> Path:
    """A real day U-Net ``.keras`` file of this package (weights untrained: enough to test inference plumbing)."""
    from models import untrained

    return untrained(tmp_path_factory.mktemp("model"), "day")


@pytest.fixture(scope="session")
def untrained_thermal_model(tmp_path_factory) -> Path:
    """A real thermal U-Net ``.keras`` file (5 inputs) beside the ``params.json`` that says so, untrained."""
    from models import untrained

    return untrained(tmp_path_factory.mktemp("thermal-model"), "thermal")
