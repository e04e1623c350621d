"""Fixtures of the "Cloud masks" page's tests: pipeline results in a data root, and Airflow's own
auth manager (with a migrated metadata DB: token validation checks the revoked-token table)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from ui_results import DAYS, write_day

# A key long enough for HS512, so PyJWT does not warn; the Airflow processes of a test share it.
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))


@pytest.fixture(scope="session")
def results(tmp_path_factory) -> Path:
    """A data root with five processed days (what is special about each: ``ui_results.DAYS``)."""
    root = tmp_path_factory.mktemp("ui") / "data"
    write_day(root, DAYS["plain"])
    write_day(root, DAYS["failed"], products=5, failed=1)
    write_day(root, DAYS["no_sst"], sst=False)
    write_day(root, DAYS["many"], products=15, night=0)
    write_day(root, DAYS["new_model"])
    return root


@pytest.fixture(scope="session")
def auth_manager(airflow_db):
    """Airflow's configured auth manager (the simple one), initialised as the API server does."""
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


@pytest.fixture(scope="session")
def token(auth_manager) -> Callable[..., str]:
    """Make a JWT as Airflow's login does, for a user of the given role."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    def make(role: str | None = "viewer", **kwargs) -> str:
        return auth_manager.generate_jwt(SimpleAuthManagerUser(username="scientist", role=role), **kwargs)

    return make


@pytest.fixture(scope="session")
def client(results, token):
    """The page's app on the results, as a viewer (the least role Airflow lets see a custom view)."""
    from cloud_masks_page import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(results), headers={"Authorization": f"Bearer {token()}"}) as test_client:
        yield test_client
