"""The "Cloud masks" page's app: its API and page on results the pipeline's code wrote, Airflow's
authentication in front of it, file serving that never leaves the data root, and a year of days."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_results import DAYS, write_summaries

from cloud_tasks.layout import DataRoot


def summary(root: Path, day: dt.date) -> dict:
    return json.loads(DataRoot(root).summary(day).read_text())


LINKS = DataRoot("")  # the layout below the data root: paths as the page links them
CURVES = LINKS.model(DAYS["plain"]).curves.as_posix()  # the first day's own model made the later days' masks


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


def test_day_detail_has_curves_histogram_and_quicklooks_with_masks(client, results):
    detail = client.get(f"/api/days/{DAYS['plain']}").json()
    assert detail["model"]["training_curves"] == CURVES
    history = json.loads((results / LINKS.model(DAYS["plain"]).history_json).read_text())
    assert detail["model"]["last_epoch"] == {key: values[-1] for key, values in history.items()}
    assert detail["sst_histogram"] == LINKS.sst(DAYS["plain"]).histogram.as_posix()
    pngs = sorted(p.relative_to(results).as_posix() for p in DataRoot(results).masks(DAYS["plain"]).quicklooks())
    assert [shot["png"] for shot in detail["quicklooks"]["items"]] == pngs
    assert all(shot["mask"] == shot["png"].removesuffix(".png") + ".h5" for shot in detail["quicklooks"]["items"])
    assert client.get("/api/days/2023-01-01").status_code == 404


def test_quicklook_gallery_is_paginated(client):
    pages = [client.get(f"/api/days/{DAYS['many']}", params={"shots": n}).json()["quicklooks"] for n in (1, 2)]
    assert [(p["total"], p["page"], p["pages"], len(p["items"])) for p in pages] == [(15, 1, 2, 12), (15, 2, 2, 3)]
    assert not {s["product"] for s in pages[0]["items"]} & {s["product"] for s in pages[1]["items"]}


def test_training_curves_are_those_of_the_model_that_made_the_masks(client):
    detail = client.get(f"/api/days/{DAYS['old_model']}").json()
    assert detail["model"]["training_curves"] == CURVES


def test_data_root_through_a_symbolic_link_finds_the_recorded_model(results, token, tmp_path):
    from cloud_masks_page import create_app

    (tmp_path / "link").symlink_to(results)
    with TestClient(create_app(tmp_path / "link"), headers={"Authorization": f"Bearer {token()}"}) as linked:
        detail = linked.get(f"/api/days/{DAYS['old_model']}").json()
        assert detail["model"]["training_curves"] == CURVES
        assert linked.get(f"/files/{detail['quicklooks']['items'][0]['png']}").status_code == 200


def test_page_shows_table_plots_and_the_latest_days_gallery(client, results):
    page = client.get("/").text
    latest = summary(results, DAYS["old_model"])
    row = re.search(r'<tr class="selected" data-date="2024-06-06">(.*?)</tr>', page, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[1:6] == [str(v) for v in (4, latest["converted"]["day"], 1, latest["masked"], 0)]
    assert cells[6] == f"{latest['sst']['bayesian']['median']:.3f}" and cells[12] == f"{latest['sst']['agreement']:.1%}"
    assert page.count("<svg") == 4 and page.count("<polyline") >= 8
    shots = re.findall(r'<img src="files/(masks/2024/06/06/[^"]+\.png)"', page)
    assert len(shots) == latest["masked"] and all((results / shot).is_file() for shot in shots)
    assert f'src="files/{CURVES}"' in page


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
