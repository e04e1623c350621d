"""End to end in headless Chromium: a real Airflow API server with the plugin loaded and results on
disk; log in through the UI's form, open "Cloud masks" from the navigation, see the table's values,
the model version and a quicklook loaded; a mask product downloads without leaving the page, and a day's
runs open in the UI itself (out of the page's sandboxed frame). The screenshot is kept in ``test-artifacts/``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ui_results import DAYS

from benchmarks.scheduler import free_port
from cloud_tasks.layout import DataRoot

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
AIRFLOW = Path(sys.executable).with_name("airflow")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing (as root; skipped otherwise)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if path := shutil.which("chromium"):
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("Chromium is missing and cannot be installed here: run `apt-get install -y chromium` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        subprocess.run(command, env=env, check=True, timeout=900, capture_output=True)
    return shutil.which("chromium") or pytest.fail("apt-get installed chromium, but it is not on PATH")


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Poll the API server's health endpoint until it answers, the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the API server exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"the API server did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop the server and the workers it started: its own process group (it leads it), by its pid."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def airflow_server(results, tmp_path_factory):
    """``airflow api-server`` (the UI, the API, the plugins) on a migrated DB, reading ``results``."""
    home = tmp_path_factory.mktemp("airflow-server")
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),
        CLOUD_TASKS_DATA_ROOTS=str(results),
    )
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, timeout=300, capture_output=True)
    log = home / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stop() reaches its workers too
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/api/v2/monitor/health", process, log)
        yield {"url": f"http://127.0.0.1:{port}", "password": password}
    finally:
        stop(process)


def test_log_in_open_cloud_masks_and_see_results(airflow_server, chromium, results):
    from playwright.sync_api import expect, sync_playwright

    day = DAYS["new_model"]  # the latest day, shown in detail
    written = json.loads(DataRoot(results).summary(day).read_text())
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.set_default_timeout(30_000)
            page.goto(airflow_server["url"])
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow_server["password"])
            page.get_by_role("button", name="Sign in").click()

            page.get_by_role("link", name="Cloud masks").click()
            expect(page).to_have_url(re.compile(r"/plugin/cloud-masks$"))
            frame = page.frame_locator("iframe")
            row = frame.locator(f'#days tr[data-date="{day}"] td')
            expect(row.nth(4)).to_have_text(str(written["masked"]))
            expect(row.nth(6)).to_have_text(f"{written['sst']['bayesian']['median']:.3f}")
            expect(row.nth(12)).to_have_text(f"{written['sst']['agreement']:.1%}")

            quicklook = frame.locator("img[alt^='quicklook of']").first
            quicklook.scroll_into_view_if_needed()
            expect(quicklook).to_have_js_property("complete", True)
            assert quicklook.evaluate("img => img.naturalWidth") > 0, "the quicklook did not load"
            expect(frame.locator("figure.model").first).to_contain_text("v2 (day model): the run's model")
            frame.locator("h1").scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "cloud-masks-page.png")

            # A mask product is saved as a download; the page stays in its frame.
            with page.expect_download() as download:
                frame.get_by_role("link", name="NetCDF").first.click()
            product = frame.locator("figure[data-product]").first.get_attribute("data-product")
            assert download.value.suggested_filename == DataRoot("").masks(day).mask(product).name
            # (the UI mirrors the frame's location into its own: /plugin/cloud-masks/<path in the frame>)
            expect(page).to_have_url(re.compile(r"/plugin/cloud-masks(/cloud-masks/)?$"))
            expect(frame.locator("h1")).to_have_text("Cloud masks")
            # The day's runs open in the UI itself, not inside the frame.
            frame.locator(f'#days tr[data-date="{day}"]').get_by_role("link", name="runs").click()
            expect(page).to_have_url(re.compile(rf"/dags/slstr_cloud_mask/runs\?logical_date_gte={day}T00"))
            expect(page.locator("iframe")).to_have_count(0)
        finally:
            browser.close()
