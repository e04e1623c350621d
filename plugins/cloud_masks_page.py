"""Airflow plugin: the "Cloud masks" page, where scientists see whether the pipeline's masks are good.

The API server mounts a FastAPI app at ``/cloud-masks``; an external view puts it in the UI's
navigation (the UI shows it in a sandboxed frame). The page reads only what the pipeline wrote to the data
root (the deployment's first ``CLOUD_TASKS_DATA_ROOTS``, the DAGs' default): run summaries, SST summaries,
the mask products (``cf_mask.read_mask``: cloud fraction over valid pixels, the models that made them), PNGs,
the registry's model versions and the STAC catalogue; and, from Airflow's metadata DB, the runs of the daily
DAG that processed a day (``planning.run_day`` decides which day a run processed), linked to the UI's run and
log pages.

Authentication is Airflow's: the UI session's JWT cookie or an ``Authorization: Bearer`` token,
validated by the auth manager as for Airflow's REST API; the user must also be allowed the custom
view "Cloud masks".

Routes, below the mount point:

- ``GET /``: the page; ``?page=N`` table page, ``?day=YYYY-MM-DD`` day in detail, ``?shots=N`` gallery page
- ``GET /api/days``: a page of day rows (JSON), newest first
- ``GET /api/days/{day}``: one day in detail (JSON): counts, its runs, the models, the products with their files
- ``GET /files/{path}``: a file from inside the data root: PNGs shown inline, every other type as a download
  (``Content-Disposition: attachment``)
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import logging
import math
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, ClassVar

import jinja2
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from markupsafe import Markup

from cloud_tasks.deployment import Deployment
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import (
    GEOTIFF_SUFFIX,
    HDF_SUFFIX,
    JSON_SUFFIX,
    NETCDF_SUFFIX,
    QUICKLOOK_SUFFIX,
    DataRoot,
    MaskFiles,
)
from cloud_tasks.naming import ProductName

log = logging.getLogger(__name__)

URL_PREFIX = "/cloud-masks"
RESOURCE_NAME = "Cloud masks"  # the custom view the auth manager authorises
DAYS_PER_PAGE = 31
SHOTS_PER_PAGE = 12
SERVED_TYPES = {
    QUICKLOOK_SUFFIX: "image/png",
    JSON_SUFFIX: "application/json",
    ".csv": "text/csv",
    HDF_SUFFIX: "application/x-hdf5",
    NETCDF_SUFFIX: "application/x-netcdf",
    GEOTIFF_SUFFIX: "image/tiff",
}
SHOWN_INLINE = {QUICKLOOK_SUFFIX}  # images the page shows; every other file is served as a download
# The daily DAG (dags/slstr_cloud_mask.py), whose runs made the days shown, and the tasks whose logs a day links to.
DAG_ID = "slstr_cloud_mask"
LOGGED_TASKS = ("plan", "mask", "sst_comparison", "summary")
MAPPED_CONVERSION = "process_chunk"  # one instance per chunk of products (extract and convert), labelled with the day
RUNS_SHOWN = 20  # a day's runs listed at most (re-runs and backfills of one day are few)
# The Airflow UI, relative to this page (<base>/cloud-masks/): right whatever path a proxy serves Airflow below.
UI = "../"
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True, trim_blocks=True
)
TEMPLATES.filters["num"] = lambda value, spec=".3f": "–" if value is None else format(value, spec)


def configured_root() -> Path:
    """The data root the DAG writes to by default; read per request, so a changed setting needs no restart."""
    return Path(Deployment.from_env().data_roots[0])


# --- reading the data root ----------------------------------------------------------------------------


def day_row(summary: dict) -> dict:
    """One table row from a run summary (the format of ``cloud_tasks.pipeline.summarise_day``)."""
    sst = summary["sst"] or {}  # None when the day had no match-up table

    def stats(mask: str) -> dict:
        values = sst.get(mask) or {}
        return {key: values.get(key) for key in ("median", "robust_sd", "clear")}

    return {
        "date": summary["date"],
        "products": summary["products"],
        "converted_day": summary["converted"]["day"],
        "converted_night": summary["converted"]["night"],
        "masked": summary["masked"],
        "failed": len(summary["failed"]),
        "bayesian": stats("bayesian"),
        "model": stats("model"),
        "agreement": sst.get("agreement"),
        "matchups": sst.get("counts", {}).get("rows_matched"),
        "airflow_runs": runs_lists(dt.date.fromisoformat(summary["date"]))["runs_dated"],
    }


@functools.lru_cache(maxsize=8192)
def _cached_row(path: str, mtime_ns: int, size: int) -> dict:
    """A summary's row; mtime and size are part of the key, so a re-run's new summary is read again.

    Callers share the returned dict: never modify it.
    """
    return day_row(json.loads(Path(path).read_text()))


def load_days(root: Path) -> list[dict]:
    """Every processed day's row, oldest first; a summary that cannot be read is left out (and logged)."""
    rows = []
    for path in DataRoot(root).summary_files():
        try:
            stat = path.stat()
            rows.append(_cached_row(str(path), stat.st_mtime_ns, stat.st_size))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: not a run summary, left out: %s: %s", path, type(exc).__name__, exc)
    return rows


def paginate(items: list, page: int, per_page: int) -> tuple[list, int, int]:
    """The items of a page (clamped to the pages there are), the page and the number of pages."""
    pages = max(1, math.ceil(len(items) / per_page))
    page = min(max(page, 1), pages)
    return items[(page - 1) * per_page : page * per_page], page, pages


def relative(root: Path, path: Path) -> str | None:
    """``path`` relative to the data root (how the page links to it), None if missing or outside it.

    Both are resolved first: a data root reached by a symbolic link still holds its files, and a link inside
    the root to a file outside it is not followed out.
    """
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() if path.is_file() else None
    except (ValueError, OSError):
        return None


def day_detail(root: Path, day: dt.date, shots_page: int = 1) -> dict | None:
    """A day in detail: its row, failed products, its runs in Airflow, the models that made its masks, the SST
    figures, and a page of its products (mask, quicklook, GeoTIFF, STAC item, cloud fraction)."""
    data = DataRoot(root)
    try:
        summary = json.loads(data.summary(day).read_text())
    except FileNotFoundError:
        return None
    masks = data.masks(day)
    every = masks.masks()
    shown, shots_page, shot_pages = paginate(every, shots_page, SHOTS_PER_PAGE)
    products = [product_entry(root, masks, path) for path in shown]
    sst = summary.get("sst") or {}
    return {
        "row": day_row(summary),
        "failed_products": summary["failed"],
        "airflow": {"runs": day_runs(day), **runs_lists(day)},
        "run_model": (summary.get("model") or {}).get("version"),
        "models": [model_entry(root, name) for name in models_of(summary, products)],
        "sst_histogram": relative(root, data.sst(day).histogram),
        "sst_table": relative(root, data.sst(day).table),
        "sst_by_daylight": sst.get("by_daylight"),
        "products": {"total": len(every), "page": shots_page, "pages": shot_pages, "items": products},
    }


def product_entry(root: Path, masks: MaskFiles, mask: Path) -> dict:
    """A product of the day: links to its mask, quicklook, GeoTIFF and STAC item (None when missing), and what
    its mask says (``mask_facts``)."""
    stem = mask.stem
    item = stac_item_path(root, stem)
    return {
        "product": stem,
        "mask": relative(root, mask),
        "quicklook": relative(root, masks.quicklook(stem)),
        "geotiff": relative(root, masks.geotiff(stem)),
        "stac_item": None if item is None else relative(root, item),
        **mask_facts(mask),
    }


def stac_item_path(root: Path, stem: str) -> Path | None:
    """The STAC Item of a product's mask, where ``stac.add_mask_item`` files it (the day of its sensing start);
    None for a file not named as a product."""
    from cloud_tasks.product.stac import MASKS

    try:
        return DataRoot(root).catalogue.item(MASKS, stem, ProductName.parse(stem).start.date())
    except CloudTasksError:
        return None


def mask_facts(path: Path) -> dict:
    """What a mask product says: cloud fraction over its valid pixels, valid share, threshold and models (all None
    when it cannot be read: logged, and the page still shows the product's other files)."""
    try:
        stat = path.stat()
        return _mask_facts(str(path), stat.st_mtime_ns, stat.st_size)
    except (CloudTasksError, OSError) as exc:
        log.warning("%s: mask not shown: %s", path, exc)
        return {"cloud_fraction": None, "valid_fraction": None, "threshold": None, "models": []}


@functools.lru_cache(maxsize=4096)
def _mask_facts(path: str, mtime_ns: int, size: int) -> dict:
    """``mask_facts`` of one version of a file (mtime and size are part of the key). Callers share the dict."""
    from cloud_tasks.product.cf_mask import read_mask

    mask = read_mask(path)
    return {
        "cloud_fraction": mask.cloud_fraction,
        "valid_fraction": float(mask.valid.mean()),
        "threshold": mask.threshold,
        "models": [{"version": m.version, "kind": m.kind, "sha256": m.sha256} for m in mask.models],
    }


def models_of(summary: dict, products: list[dict]) -> list[str]:
    """The model versions that made the day's masks: the run's (its summary), then those of the products shown."""
    recorded = [model.get("version") for model in summary.get("models") or [] if isinstance(model, dict)]
    recorded = recorded or [(summary.get("model") or {}).get("version")]  # a summary from before thermal models
    names = [name for name in recorded if isinstance(name, str)]
    for product in products:
        names += [model["version"] for model in product["models"] if model["version"] not in names]
    return names


def model_entry(root: Path, name: str) -> dict:
    """A model version: its kind and SHA-256, training curves, last epoch and STAC item, from the registry (only
    the version's name when the registry does not hold it)."""
    from cloud_tasks.product.stac import MODELS
    from cloud_tasks.registry import ModelRegistry

    entry = dict.fromkeys(("kind", "sha256", "training_curves", "history", "last_epoch", "stac_item"))
    try:
        version = ModelRegistry(root).version(name)  # a name read from a file: only vN names are looked up
    except CloudTasksError as exc:
        log.warning("model %r of a mask is not in the registry: %s", name, exc)
        return {"version": name, **entry}
    files = version.files
    return {
        "version": version.name,
        "kind": version.kind,
        "sha256": version.sha256,
        "training_curves": relative(root, files.curves),
        "history": relative(root, files.history_json),
        "last_epoch": _last_epoch(files.history_json),
        "stac_item": relative(root, DataRoot(root).catalogue.item(MODELS, version.name)),
    }


# --- the day's runs in Airflow --------------------------------------------------------------------------------


def ui_link(path: str, **query: str) -> str:
    """A link to a page of Airflow's UI (React Router routes of Airflow 3: ``dags/<dag>/runs``, ...)."""
    return UI + path + (f"?{urllib.parse.urlencode(query)}" if query else "")


def runs_lists(day: dt.date) -> dict[str, str]:
    """The UI's run lists of the daily DAG that hold the day's runs: those dated that day (scheduled and
    backfill runs, whose data interval starts at the day's midnight, and manual runs triggered that day), and
    those whose conf names it (manual runs for that day, triggered later)."""
    runs = f"dags/{DAG_ID}/runs"
    return {
        "runs_dated": ui_link(runs, logical_date_gte=f"{day}T00:00:00Z", logical_date_lte=f"{day}T23:59:59.999999Z"),
        "runs_naming": ui_link(runs, conf_contains=day.isoformat()),
    }


def day_runs(day: dt.date) -> list[dict] | None:
    """The daily DAG's runs that processed ``day`` (newest first) with links to their pages and task logs, from
    Airflow's metadata DB; None when it cannot be read (the page then links to the UI's run lists only)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        runs = _runs_around(day)
    except (ImportError, RuntimeError, SQLAlchemyError) as exc:
        log.warning("the runs of %s cannot be read from Airflow's metadata DB: %s: %s", day, type(exc).__name__, exc)
        return None
    return [_run_entry(run) for run in runs if _processed_day(run) == day]


def _runs_around(day: dt.date) -> list[dict]:
    """The daily DAG's runs dated that day, with a data interval starting that day, or whose conf names it."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import Text, and_, cast, or_, select

    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    query = (
        select(DagRun)
        .where(
            DagRun.dag_id == DAG_ID,
            or_(
                and_(DagRun.logical_date >= start, DagRun.logical_date < end),
                and_(DagRun.data_interval_start >= start, DagRun.data_interval_start < end),
                cast(DagRun.conf, Text).contains(day.isoformat()),
            ),
        )
        .order_by(DagRun.run_after.desc())
        .limit(RUNS_SHOWN)
    )
    fields = ("run_id", "run_type", "state", "conf", "logical_date", "data_interval_start", "data_interval_end")
    with create_session() as session:
        runs = session.scalars(query).all()
        return [{field: getattr(run, field) for field in (*fields, "start_date", "end_date")} for run in runs]


def _processed_day(run: dict) -> dt.date | None:
    """The day a run processed, as the run itself decided it (``planning.run_day``); None if it could not."""
    from cloud_tasks.planning import run_day

    conf = run["conf"] if isinstance(run["conf"], dict) else {}
    interval = (run["data_interval_start"], run["data_interval_end"])
    try:
        return run_day(conf, str(run["run_type"]), run["logical_date"], interval)[0]
    except (CloudTasksError, ValueError, TypeError):
        return None


def _run_entry(run: dict) -> dict:
    """A run, its page and the pages (logs first) of its tasks."""
    page = f"dags/{DAG_ID}/runs/{urllib.parse.quote(run['run_id'], safe='')}"
    return {
        "run_id": run["run_id"],
        "run_type": str(run["run_type"]),
        "state": None if run["state"] is None else str(run["state"]),
        **{key: _iso(run[key]) for key in ("logical_date", "start_date", "end_date")},
        "url": ui_link(page),
        "logs": {task: ui_link(f"{page}/tasks/{task}") for task in LOGGED_TASKS},
        "conversions": ui_link(f"{page}/tasks/{MAPPED_CONVERSION}/mapped"),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _last_epoch(path: Path) -> dict | None:
    """The metrics of the last epoch in a Keras ``history.json`` (metric -> values by epoch)."""
    try:
        history = json.loads(path.read_text())
        # loss and metrics; the timings the training adds (epoch_seconds, ...) say nothing about the model
        return {key: values[-1] for key, values in history.items() if values and not key.endswith("seconds")}
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def safe_file(root: Path, relative_path: str) -> Path:
    """The file at ``relative_path`` below the data root, or 404: symbolic links and ``..`` are resolved
    first, so nothing outside the root (nor a type not in ``SERVED_TYPES``) is ever served."""
    try:
        base = root.resolve(strict=True)
        path = (base / relative_path).resolve(strict=True)
    except (OSError, ValueError, RuntimeError):  # missing, a NUL byte, a symlink loop
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such file") from None
    if not path.is_relative_to(base) or path.suffix.lower() not in SERVED_TYPES or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such file")
    return path


# --- plots --------------------------------------------------------------------------------------------

COLOURS = {
    "Bayesian mask": "#1f77b4",
    "model mask": "#d62728",
    "agreement": "#2ca02c",
    "converted": "#1f77b4",
    "masked": "#2ca02c",
    "failed": "#d62728",
}


def line_chart(
    title: str, dates: list[dt.date], series: dict[str, list[float | None]], *, from_zero: bool = False
) -> Markup:
    """An inline SVG line chart of values by day; a day without a value breaks its line.

    Dots (with the value as a tooltip) only while there are few days: a year stays a few kB.
    """
    width, height, left, right, top, bottom = 660, 180, 52, 122, 22, 26
    values = [v for vs in series.values() for v in vs if v is not None]
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">']
    parts.append(f'<text x="{left}" y="14" class="title">{html.escape(title)}</text>')
    if not dates or not values:
        parts.append(f'<text x="{left}" y="{height // 2}">no values yet</text></svg>')
        return Markup("".join(parts))
    levels = nice_ticks(min([*values, 0] if from_zero else values), max(values))
    low, high = levels[0], levels[-1]
    span = max((dates[-1] - dates[0]).days, 1)

    def x(day: dt.date) -> float:
        return left + (day - dates[0]).days / span * (width - left - right)

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    for value in levels:  # horizontal grid lines with their values
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" class="tick" text-anchor="end">{value:g}</text>')
    ticks = sorted({dates[round(i * (len(dates) - 1) / 4)] for i in range(5)})
    for day in ticks:
        parts.append(f'<text x="{x(day):.1f}" y="{height - 6}" class="tick" text-anchor="middle">{day}</text>')
    for n, (name, vs) in enumerate(series.items()):
        colour = COLOURS.get(name, "#555")
        for run in _runs(dates, vs):
            points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in run)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        if len(dates) <= 62:
            for d, v in zip(dates, vs, strict=True):
                if v is not None:
                    tooltip = f"<title>{d} {html.escape(name)}: {v:.4g}</title>"
                    parts.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">{tooltip}</circle>')
        legend_y = top + 14 + 18 * n
        parts.append(f'<rect x="{width - right + 12}" y="{legend_y - 9}" width="14" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 32}" y="{legend_y - 4}" class="tick">{html.escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2, 2.5 or 5 times a power of ten apart) from below ``low`` to above ``high``."""
    if high - low < 1e-12:
        low, high = low - (abs(low) * 0.1 or 1.0), high + (abs(high) * 0.1 or 1.0)
    raw = (high - low) / (count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 12) + 0.0 for i in range(first, last + 1)]  # + 0.0: no -0


def _runs(dates: list[dt.date], values: list[float | None]) -> list[list[tuple[dt.date, float]]]:
    """The stretches of consecutive days that have a value."""
    runs: list[list[tuple[dt.date, float]]] = [[]]
    for day, value in zip(dates, values, strict=True):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((day, value))
    return [run for run in runs if run]


def charts(rows: list[dict]) -> list[Markup]:
    """Every day at a glance: the SST comparison (medians, robust SDs, the masks' agreement) and the products."""
    dates = [dt.date.fromisoformat(row["date"]) for row in rows]
    products = {
        "converted": [r["converted_day"] + r["converted_night"] for r in rows],
        "masked": [r["masked"] for r in rows],
        "failed": [r["failed"] for r in rows],
    }

    def pair(key: str) -> dict[str, list[float | None]]:
        return {"Bayesian mask": [r["bayesian"][key] for r in rows], "model mask": [r["model"][key] for r in rows]}

    agreement = [None if r["agreement"] is None else 100 * r["agreement"] for r in rows]
    return [
        line_chart("Median of satellite - buoy SST over clear pixels (K)", dates, pair("median")),
        line_chart("Robust SD of satellite - buoy SST over clear pixels (K)", dates, pair("robust_sd")),
        line_chart("Agreement of the model mask with the Bayesian mask (%)", dates, {"agreement": agreement}),
        line_chart("Products per day", dates, products, from_zero=True),
    ]


# --- the app --------------------------------------------------------------------------------------------


async def authorized_user(request: Request) -> Any:
    """The request's user, authenticated and authorised by Airflow's auth manager, else 401/403.

    Airflow's own ``get_user`` takes a Bearer token, else the UI session's JWT cookie (signature, expiry
    and revocation checked). It is imported here, not at the top: the other processes that load plugins
    (scheduler, workers) need not import the API server's modules.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    user = await get_user(request, _oauth_token=None, bearer_credentials=await bearer_scheme(request))
    if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=RESOURCE_NAME, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    return user


async def login_first(request: Request, exc: HTTPException):
    """A browser without a session goes to Airflow's login form (and back here); other clients get the 401."""
    if "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def data_root(request: Request) -> Path:
    """The app's data root: the one it was made with, else the configured one."""
    return request.app.state.data_root or configured_root()


Root = Annotated[Path, Depends(data_root)]
Page = Annotated[int, Query(ge=1)]


def create_app(root: str | Path | None = None) -> FastAPI:
    """The page's app; ``root`` None reads ``CLOUD_TASKS_DATA_ROOT`` per request."""
    app = FastAPI(
        title="Cloud masks",
        description="Results of the SLSTR cloud-mask pipeline",
        dependencies=[Depends(authorized_user)],
        exception_handlers={status.HTTP_401_UNAUTHORIZED: login_first},
    )
    app.state.data_root = Path(root) if root is not None else None

    @app.get("/api/days")
    def api_days(root: Root, page: Page = 1, per_page: Annotated[int, Query(ge=1, le=366)] = DAYS_PER_PAGE):
        """A page of processed days, newest first."""
        rows = load_days(root)
        days, page, pages = paginate(rows[::-1], page, per_page)
        return {"data_root": str(root), "total": len(rows), "page": page, "pages": pages, "days": days}

    @app.get("/api/days/{day}")
    def api_day(root: Root, day: dt.date, shots: Page = 1):
        """One day in detail; ``shots`` is the page of quicklooks."""
        detail = day_detail(root, day, shots)
        if detail is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No run summary for {day}")
        return detail

    @app.get("/files/{path:path}")
    def files(root: Root, path: str):
        """A result file from inside the data root: a PNG inline, any other file as a download."""
        found = safe_file(root, path)
        suffix = found.suffix.lower()
        return FileResponse(
            found,
            media_type=SERVED_TYPES[suffix],
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"},
            # a download is saved, never opened in the page's frame; filename= makes it an attachment
            filename=None if suffix in SHOWN_INLINE else found.name,
        )

    @app.get("/", response_class=HTMLResponse)
    def index(root: Root, page: Page = 1, day: dt.date | None = None, shots: Page = 1):
        """The page: plots across days, a page of the days' table, one day in detail (default: the latest)."""
        rows = load_days(root)
        table, page, pages = paginate(rows[::-1], page, DAYS_PER_PAGE)
        if day is None and rows:
            day = dt.date.fromisoformat(rows[-1]["date"])
        context = {
            "root": root,
            "rows": rows,
            "table": table,
            "page": page,
            "pages": pages,
            "day": day,
            "detail": day_detail(root, day, shots) if day else None,
            "charts": charts(rows) if rows else [],
        }
        return TEMPLATES.get_template("cloud_masks.html").render(context)

    return app


class CloudMasksPagePlugin(AirflowPlugin):
    """The "Cloud masks" page: its app, and its entry in the UI's navigation."""

    name = "cloud_masks_page"
    fastapi_apps: ClassVar[list[dict]] = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": RESOURCE_NAME}]
    # The UI frames href at /plugin/<url_route>. href is relative to the UI's <base href>, so it stays
    # right when a proxy serves Airflow below a path.
    external_views: ClassVar[list[dict]] = [
        {"name": RESOURCE_NAME, "href": URL_PREFIX.lstrip("/") + "/", "url_route": "cloud-masks", "destination": "nav"}
    ]
