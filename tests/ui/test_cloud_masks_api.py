"""The "Cloud masks" page's app: its API and page on results the pipeline's code wrote, Airflow's
authentication in front of it, file serving that never leaves the data root, and a year of days."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from fastapi.testclient import TestClient
from ui_results import DAY_VERSIONS, DAYS, VERSIONS, product_names, write_summaries

from cloud_tasks.layout import DataRoot
from cloud_tasks.product import cf_mask


def summary(root: Path, day: dt.date) -> dict:
    return json.loads(DataRoot(root).summary(day).read_text())


LINKS = DataRoot("")  # the layout below the data root: paths as the page links them
CURVES = {name: LINKS.registry.version(name).curves.as_posix() for name in VERSIONS}  # of each registered version


def test_days_newest_first_with_each_summarys_figures(client, results):
    body = client.get("/api/days").json()
    assert body["total"] == len(DAYS) and body["data_root"] == str(results)
    assert [row["date"] for row in body["days"]] == sorted((d.isoformat() for d in DAYS.values()), reverse=True)
    row = next(row for row in body["days"] if row["date"] == DAYS["failed"].isoformat())
    written = summary(results, DAYS["failed"])
    assert (row["products"], row["failed"], row["masked"]) == (5, 1, written["masked"])
    assert {"day": row["converted_day"], "night": row["converted_night"]} == written["converted"]
    for mask in ("bayesian", "model"):
        assert row[mask] == {key: written["sst"][mask][key] for key in ("median", "robust_sd", "clear")}
    assert row["agreement"] == written["sst"]["agreement"]
    assert row["matchups"] == written["sst"]["counts"]["rows_matched"] > 0


def test_day_without_sst_comparison_has_no_figures(client, results):
    row = client.get(f"/api/days/{DAYS['no_sst']}").json()["row"]
    assert summary(results, DAYS["no_sst"])["sst"] is None
    assert row["bayesian"]["median"] is None and row["agreement"] is None and row["matchups"] is None
    page = client.get("/", params={"day": DAYS["no_sst"].isoformat()}).text
    assert "No SST comparison for this day" in page


def test_days_are_paginated_and_a_page_past_the_end_is_the_last(client):
    first = client.get("/api/days", params={"per_page": 2}).json()
    assert (first["page"], first["pages"], len(first["days"])) == (1, 3, 2)
    last = client.get("/api/days", params={"per_page": 2, "page": 99}).json()
    assert (last["page"], [row["date"] for row in last["days"]]) == (3, [DAYS["plain"].isoformat()])
    assert client.get("/api/days", params={"page": 0}).status_code == 422


def test_day_detail_links_each_product_to_its_files(client, results):
    detail = client.get(f"/api/days/{DAYS['plain']}").json()
    assert detail["sst_histogram"] == LINKS.sst(DAYS["plain"]).histogram.as_posix()
    masks = DataRoot(results).masks(DAYS["plain"])
    items = detail["products"]["items"]
    assert [item["product"] for item in items] == [path.stem for path in masks.masks()] and len(items) == 3
    for item in items:
        files = LINKS.masks(DAYS["plain"])
        assert item["mask"] == files.mask(item["product"]).as_posix()
        assert item["quicklook"] == files.quicklook(item["product"]).as_posix()
        stac_item = json.loads((results / item["stac_item"]).read_text())  # the product's item in the catalogue
        assert stac_item["id"] == item["product"] and stac_item["type"] == "Feature"
        assert item["models"] == [{"version": "v1", "kind": "day", "sha256": detail["models"][0]["sha256"]}]
    (with_geotiff,) = [item for item in items if item["geotiff"]]  # the first masked product's only
    assert with_geotiff["product"] == product_names(DAYS["plain"], 4)[1]
    assert with_geotiff["geotiff"] == LINKS.masks(DAYS["plain"]).geotiff(with_geotiff["product"]).as_posix()
    assert client.get("/api/days/2023-01-01").status_code == 404


def test_cloud_fraction_counts_valid_pixels_only(client, results):
    items = client.get(f"/api/days/{DAYS['plain']}").json()["products"]["items"]
    with_no_data = 0
    for item in items:
        with netCDF4.Dataset(results / item["mask"]) as ds:  # read here without the page's reader
            values = np.asarray(ds["cloud_mask"][:].filled(cf_mask.NO_DATA))
        valid = values != cf_mask.NO_DATA
        assert item["cloud_fraction"] == pytest.approx((values == cf_mask.CLOUDY).sum() / valid.sum())
        assert item["valid_fraction"] == pytest.approx(valid.mean())
        with_no_data += not valid.all()
    assert with_no_data  # a product with no-data pixels, whose fraction over all pixels would differ


def test_products_are_paginated(client):
    pages = [client.get(f"/api/days/{DAYS['many']}", params={"shots": n}).json()["products"] for n in (1, 2)]
    assert [(p["total"], p["page"], p["pages"], len(p["items"])) for p in pages] == [(15, 1, 2, 12), (15, 2, 2, 3)]
    assert not {s["product"] for s in pages[0]["items"]} & {s["product"] for s in pages[1]["items"]}


def test_models_shown_are_those_that_made_the_masks(client, results):
    for key in ("plain", "many", "new_model"):
        detail = client.get(f"/api/days/{DAYS[key]}").json()
        names = list(DAY_VERSIONS.get(DAYS[key], ("v1",)))
        assert [model["version"] for model in detail["models"]] == names and detail["run_model"] == names[0]
        for model in detail["models"]:
            assert model["kind"] == VERSIONS[model["version"]] and model["training_curves"] == CURVES[model["version"]]
            history = json.loads((results / LINKS.registry.version(model["version"]).history_json).read_text())
            assert model["last_epoch"] == {key: values[-1] for key, values in history.items()}
            assert json.loads((results / model["stac_item"]).read_text())["id"] == model["version"]
    kinds = {m["kind"] for item in detail_items(client, "many") for m in item["models"]}
    assert kinds == {"day", "thermal"}  # the day's masks record both models
    page = client.get("/", params={"day": DAYS["many"].isoformat()}).text
    assert "<strong>v1</strong> (day model): the run's model" in page and "<strong>v3</strong> (thermal model)" in page
    assert page.count("model v1 (day), v3 (thermal)") == 12  # each product of the page


def detail_items(client, key: str) -> list[dict]:
    return client.get(f"/api/days/{DAYS[key]}").json()["products"]["items"]


def test_data_root_through_a_symbolic_link_finds_its_files(results, token, tmp_path):
    from cloud_masks_page import create_app

    (tmp_path / "link").symlink_to(results)
    with TestClient(create_app(tmp_path / "link"), headers={"Authorization": f"Bearer {token()}"}) as linked:
        detail = linked.get(f"/api/days/{DAYS['new_model']}").json()
        assert detail["models"][0]["training_curves"] == CURVES["v2"]
        assert linked.get(f"/files/{detail['products']['items'][0]['quicklook']}").status_code == 200


def test_page_shows_table_plots_and_the_latest_days_gallery(client, results):
    page = client.get("/").text
    latest = summary(results, DAYS["new_model"])
    row = re.search(r'<tr class="selected" data-date="2024-06-06">(.*?)</tr>', page, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[1:6] == [str(v) for v in (4, latest["converted"]["day"], 1, latest["masked"], 0)]
    assert cells[6] == f"{latest['sst']['bayesian']['median']:.3f}" and cells[12] == f"{latest['sst']['agreement']:.1%}"
    assert page.count("<svg") == 4 and page.count("<polyline") >= 8
    shots = re.findall(r'<img src="files/(masks/2024/06/06/[^"]+\.png)"', page)
    assert len(shots) == latest["masked"] and all((results / shot).is_file() for shot in shots)
    assert f'src="files/{CURVES["v2"]}"' in page and "the run's model" in page


def test_files_are_served_from_the_data_root(client, results):
    relative = LINKS.sst(DAYS["plain"]).histogram.as_posix()
    response = client.get(f"/files/{relative}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == (results / relative).read_bytes()
    assert client.get(f"/files/summaries/{DAYS['plain']}.json").json() == summary(results, DAYS["plain"])


@pytest.fixture(scope="module")
def outside(results) -> Path:
    """A file next to the data root, and a symbolic link to it from inside."""
    secret = results.parent / "secret.png"
    secret.write_bytes(b"\x89PNG not for the page")
    (results / "link.png").symlink_to(secret)
    (results / "notes.txt").write_text("not a result type")
    return secret


@pytest.mark.parametrize(
    "path",
    [
        "..%2Fsecret.png",  # percent-encoded: reaches the app as ../secret.png
        "masks%2F..%2F..%2Fsecret.png",
        "%2E%2E%2Fsecret.png",
        "link.png",  # a link inside the root to a file outside it
        "notes.txt",  # inside, but not a type the page serves
        "missing.png",
        "bad%00name.png",
    ],
)
def test_nothing_outside_the_data_root_is_served(client, outside, path):
    response = client.get(f"/files/{path}")
    assert response.status_code == 404 and outside.read_bytes() not in response.content


def test_absolute_path_is_not_served(client, outside):
    assert client.get(f"/files/{outside}").status_code == 404
    assert client.get(f"/files/%2F{str(outside).lstrip('/')}").status_code == 404


# --- authentication -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anonymous(results, auth_manager):
    from cloud_masks_page import create_app

    with TestClient(create_app(results)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/api/days", f"/api/days/{DAYS['plain']}", f"/files/summaries/{DAYS['plain']}.json"])
def test_unauthenticated_requests_get_401_and_no_data(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 401 and response.json() == {"detail": "Not authenticated"}


def test_unauthenticated_browser_is_sent_to_airflows_login(anonymous):
    response = anonymous.get("/?day=2024-06-01", headers={"Accept": "text/html"}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/auth/login?next=http%3A%2F%2Ftestserver%2F%3Fday%3D2024-06-01"


def test_bad_tokens_are_refused(anonymous, token):
    def status(credential: str) -> int:
        return anonymous.get("/api/days", headers={"Authorization": f"Bearer {credential}"}).status_code

    assert status("not-a-jwt") == 403  # as Airflow's REST API answers an invalid token
    assert status(token()[:-4] + "AAAA") == 403  # signature no longer matches
    assert status(token(expiration_time_in_seconds=-60)) == 401
    assert status(token(role=None)) == 403  # authenticated, but no role may see the view


def test_the_ui_sessions_cookie_is_accepted(anonymous, token):
    anonymous.cookies.set("_token", token())
    try:
        assert anonymous.get("/api/days").status_code == 200
        assert "Cloud masks" in anonymous.get("/").text
    finally:
        anonymous.cookies.clear()


# --- in Airflow ---------------------------------------------------------------------------------------


def test_airflow_mounts_the_page_and_lists_it_in_the_navigation(results, token, monkeypatch):
    """Airflow's own API app, from its plugin manager, serves the page on the configured data root."""
    from airflow.api_fastapi.app import create_app

    monkeypatch.setenv("CLOUD_TASKS_DATA_ROOTS", str(results))
    with TestClient(create_app(apps="core"), headers={"Authorization": f"Bearer {token()}"}) as airflow:
        assert airflow.get("/cloud-masks/api/days").json()["total"] == len(DAYS)
        plugins = airflow.get("/api/v2/plugins").json()["plugins"]
        (view,) = [v for p in plugins if p["name"] == "cloud_masks_page" for v in p["external_views"]]
        assert (view["name"], view["href"], view["url_route"]) == ("Cloud masks", "cloud-masks/", "cloud-masks")
        airflow.headers.pop("Authorization")
        assert airflow.get("/cloud-masks/api/days").status_code == 401


# --- a year of days -----------------------------------------------------------------------------------


def test_page_time_with_a_year_of_days(tmp_path, token, capsys):
    """Prints how long the page and the API take on 365 days (cold: summaries parsed; warm: cached)."""
    from cloud_masks_page import create_app

    root = tmp_path / "data"
    write_summaries(root, dt.date(2023, 1, 1), 365, template_day=dt.date(2023, 12, 31))
    with TestClient(create_app(root), headers={"Authorization": f"Bearer {token()}"}) as year:
        timings = {}
        requests = [("page, cold", "/"), ("page, warm", "/"), ("API", "/api/days"), ("day", "/api/days/2023-12-31")]
        for name, path in requests:
            start = time.perf_counter()
            response = year.get(path)
            timings[name] = time.perf_counter() - start
            assert response.status_code == 200
        size = len(year.get("/").content)
    report = ", ".join(f"{name} {1000 * seconds:.0f} ms" for name, seconds in timings.items())
    with capsys.disabled():
        print(f"\n365 days: {report}; page {size / 1024:.0f} kB")


# --- plots --------------------------------------------------------------------------------------------


def test_a_day_without_a_value_breaks_the_line_and_ticks_are_round():
    from cloud_masks_page import line_chart, nice_ticks

    days = [dt.date(2024, 6, d) for d in (1, 2, 3, 5)]
    svg = line_chart("median", days, {"model mask": [0.1, None, -0.2, -0.3]})
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 3
    assert nice_ticks(-0.489, -0.0499) == [-0.6, -0.4, -0.2, 0.0]
    assert nice_ticks(58.5, 72.8) == [55, 60, 65, 70, 75]


# --- downloads and links ------------------------------------------------------------------------------


def test_files_other_than_images_are_served_as_downloads(client, results):
    item = detail_items(client, "plain")[0]
    for link, media_type in ((item["mask"], "application/x-netcdf"), (item["stac_item"], "application/json")):
        response = client.get(f"/files/{link}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
        assert response.headers["content-disposition"] == f'attachment; filename="{Path(link).name}"'
        assert response.content == (results / link).read_bytes()
    assert "content-disposition" not in client.get(f"/files/{item['quicklook']}").headers  # shown in the page


def test_page_links_files_as_downloads_and_airflow_pages_outside_its_frame(client):
    page = client.get("/", params={"day": DAYS["plain"].isoformat()}).text
    links = re.findall(r"<a ([^>]*)>", page)
    files = [link for link in links if 'href="files/' in link]
    assert len(files) >= 12 and all(link.endswith(" download") for link in files)  # NetCDF, GeoTIFF, STAC, PNG...
    ui = [link for link in links if 'href="../' in link]
    assert len(ui) >= 3 and all('target="_top"' in link for link in ui)
    assert f'href="../dags/slstr_cloud_mask/runs?logical_date_gte={DAYS["plain"]}T00' in page


# --- the day's runs in Airflow ------------------------------------------------------------------------


RUNS_DAY = DAYS["no_sst"]  # a day no other test runs the daily DAG for: its runs' logical dates are free
HOUR = dt.timedelta(hours=1)


def make_run(run_id: str, run_type: str, logical: dt.datetime, *, conf=None, interval: bool = False):
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState

    span = (logical, logical + dt.timedelta(days=1)) if interval else None
    return DagRun(
        dag_id="slstr_cloud_mask", run_id=run_id, run_type=run_type, logical_date=logical, run_after=logical,
        data_interval=span, conf=conf, state=DagRunState.SUCCESS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def airflow_runs(auth_manager) -> dict[str, bool]:
    """Runs of the daily DAG in the metadata DB: run id -> whether it processed RUNS_DAY."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    midnight = dt.datetime.combine(RUNS_DAY, dt.time(), tzinfo=dt.UTC)
    later = midnight + dt.timedelta(days=2, hours=7)
    runs = {
        make_run("ui__scheduled", "scheduled", midnight, interval=True): True,
        make_run("ui__manual_for_the_day", "manual", later, conf={"date": RUNS_DAY.isoformat()}): True,
        make_run("ui__manual_that_day", "manual", midnight + dt.timedelta(hours=15)): True,
        make_run("ui__next_day", "scheduled", midnight + dt.timedelta(days=1), interval=True): False,
        # a scheduled run processes its interval, whatever its conf says (planning refuses the conf)
        make_run("ui__conf_names_it", "scheduled", later + HOUR, conf={"date": str(RUNS_DAY)}, interval=True): False,
    }
    with create_session() as session:
        session.add_all(runs)
    yield {run.run_id: processed for run, processed in runs.items()}
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.run_id.in_([run.run_id for run in runs])))


def test_a_day_lists_the_runs_that_processed_it_with_their_logs(client, airflow_runs):
    listed = client.get(f"/api/days/{RUNS_DAY}").json()["airflow"]
    ours = [run for run in listed["runs"] if run["run_id"] in airflow_runs]
    assert sorted(run["run_id"] for run in ours) == sorted(name for name, day in airflow_runs.items() if day)
    assert ours[0]["run_id"] == "ui__manual_for_the_day"  # newest first
    run = next(run for run in ours if run["run_id"] == "ui__scheduled")
    assert run["url"] == "../dags/slstr_cloud_mask/runs/ui__scheduled" and run["state"] == "success"
    assert run["logs"]["mask"] == "../dags/slstr_cloud_mask/runs/ui__scheduled/tasks/mask"
    assert run["conversions"] == "../dags/slstr_cloud_mask/runs/ui__scheduled/tasks/process_chunk/mapped"
    assert listed["runs_naming"] == f"../dags/slstr_cloud_mask/runs?conf_contains={RUNS_DAY}"
    page = client.get("/", params={"day": RUNS_DAY.isoformat()}).text
    assert 'href="../dags/slstr_cloud_mask/runs/ui__manual_for_the_day/tasks/summary" target="_top"' in page


def test_the_tasks_linked_are_the_daily_dags():
    from airflow.models import DagBag
    from cloud_masks_page import DAG_ID, LOGGED_TASKS, MAPPED_CONVERSION

    dag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags")).dags[DAG_ID]
    assert {*LOGGED_TASKS, MAPPED_CONVERSION} <= set(dag.task_ids)
