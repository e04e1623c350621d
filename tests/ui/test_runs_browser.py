"""In headless Chromium, on a real Airflow API server: the day a run of the daily DAG processed is shown
in the UI without opening its conf, because each mapped ``process_chunk`` instance is labelled
``"<day> <product>"`` (``cloud_tasks.planning.chunk_label``).

The run is a manual one with its logical date two days after the day its conf asks for (the issue's
case: a run named and dated by something else than what it processed), stored by ``airflow dags test``
in a fresh metadata DB; no model is registered, so it converts and skips masking (no TensorFlow).
The screenshots are kept in ``test-artifacts/``."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_cloud_masks_browser import AIRFLOW, ARTIFACTS, CHROMIUM_ARGS, REPO, chromium, stop, wait_until_healthy

from benchmarks.scheduler import free_port
from cloud_tasks.planning import chunk_label

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["chromium"]  # the fixture, shared with the "Cloud masks" page's browser test

DAG_ID = "slstr_cloud_mask"
DAY = dt.date(2024, 6, 3)  # the day the run processes (its conf's date)
LOGICAL_DATE = dt.date(2024, 6, 5)  # neither the day nor in the run's data interval [06-04, 06-05)
MAPPED_TASKS = ("process_chunk",)  # one mapped instance per chunk: extract and convert


def run_airflow(*args: str, env: dict, log: Path, timeout: float) -> None:
    """One ``airflow`` command on the test's home; its output goes to ``log``, shown if it fails."""
    with log.open("w") as out:
        result = subprocess.run([AIRFLOW, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"airflow {' '.join(args[:2])} exited with status {result.returncode}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory) -> dict:
    """A fresh Airflow home holding one finished run of the daily DAG on a two-product day."""
    from cloud_tasks.sample import make_sample_archive

    base = tmp_path_factory.mktemp("runs-ui")
    home, archive, data_root = base / "airflow", base / "archive", base / "data"
    zips = make_sample_archive(archive, DAY, 2, grid="small", seed=3)
    home.mkdir()
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    # the deployment settings (CLOUD_TASKS_*) of tests/conftest.py stay; the Airflow ones are this home's
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),
    )
    conf = {
        "archive_root": str(archive),
        "data_root": str(data_root),
        "date": DAY.isoformat(),
        "runner": "local",
        "chunk_size": 1,
    }
    run_airflow("db", "migrate", env=env, log=home / "migrate.log", timeout=600)
    run_airflow("pools", "set", "gpu", "1", "ML steps", env=env, log=home / "pool.log", timeout=300)
    test_args = ("dags", "test", DAG_ID, LOGICAL_DATE.isoformat(), "--conf", json.dumps(conf))
    run_airflow(*test_args, env=env, log=home / "dags-test.log", timeout=1200)
    labels = [chunk_label({"day": DAY.isoformat(), "products": [str(path)]}) for path in zips]
    return {"env": env, "home": home, "password": password, "labels": labels}


@pytest.fixture(scope="module")
def api_server(daily_run):
    """``airflow api-server`` (the UI and the REST API) on the run's metadata DB."""
    port = free_port()
    log = daily_run["home"] / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=daily_run["env"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stop() reaches its workers too
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/api/v2/monitor/health", process, log, timeout=300)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def api_get(url: str, password: str, path: str) -> dict:
    """A REST API answer, with a token obtained as a client does (``POST /auth/token``)."""
    login = json.dumps({"username": "admin", "password": password}).encode()
    request = urllib.request.Request(f"{url}/auth/token", login, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        token = json.load(response)["access_token"]
    request = urllib.request.Request(f"{url}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def test_the_processed_day_is_shown_on_the_runs_mapped_instances(daily_run, api_server, chromium):
    from playwright.sync_api import expect, sync_playwright

    runs = api_get(api_server, daily_run["password"], f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
    assert len(runs) == 1, runs
    assert runs[0]["logical_date"].startswith(LOGICAL_DATE.isoformat())
    run_page = f"{api_server}/dags/{DAG_ID}/runs/{urllib.parse.quote(runs[0]['dag_run_id'], safe='')}"
    labels = daily_run["labels"]
    assert len(labels) == 2 and all(label.startswith(f"{DAY.isoformat()} S3") for label in labels), labels
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=120_000)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.set_default_timeout(60_000)
            page.set_default_navigation_timeout(120_000)
            page.goto(api_server)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(daily_run["password"])
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("button", name="Sign in")).to_have_count(0)  # signed in

            # the run's page: its task instances, each mapped one with its label
            page.goto(run_page)
            for label in labels:
                expect(page.get_by_role("link", name=label, exact=True)).to_have_count(len(MAPPED_TASKS))
            page.screenshot(path=ARTIFACTS / "run-processed-day.png")

            # one mapped task's instances, listed by their labels
            page.goto(f"{run_page}/tasks/{MAPPED_TASKS[0]}/mapped")
            expect(page.get_by_text(f"{len(labels)} Task Instances")).to_be_visible()
            for label in labels:
                expect(page.get_by_role("link", name=label, exact=True)).to_be_visible()
            page.screenshot(path=ARTIFACTS / "mapped-instances-processed-day.png")
        finally:
            browser.close()
