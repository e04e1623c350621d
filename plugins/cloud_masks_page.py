"""Airflow plugin: the "Cloud masks" page, where scientists see whether the pipeline's masks are good.

The API server mounts a FastAPI app at ``/cloud-masks``; an external view puts it in the UI's
navigation (the UI shows it in a frame). The page reads only what the pipeline wrote to the data
root (the deployment's first ``CLOUD_TASKS_DATA_ROOTS``, the DAGs' default): run summaries, SST summaries and PNGs.

Authentication is Airflow's: the UI session's JWT cookie or an ``Authorization: Bearer`` token,
validated by the auth manager as for Airflow's REST API; the user must also be allowed the custom
view "Cloud masks".

Routes, below the mount point:

- ``GET /``: the page; ``?page=N`` table page, ``?day=YYYY-MM-DD`` day in detail, ``?shots=N`` gallery page
- ``GET /api/days``: a page of day rows (JSON), newest first
- ``GET /api/days/{day}``: one day in detail (JSON): counts, the model's curves, the quicklooks
- ``GET /files/{path}``: a PNG, JSON, CSV or HDF5 file from inside the data root
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import logging
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar

import jinja2
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from markupsafe import Markup

from cloud_tasks.deployment import Deployment
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import DataRoot, MaskFiles, ModelFiles, inside

log = logging.getLogger(__name__)

URL_PREFIX = "/cloud-masks"
RESOURCE_NAME = "Cloud masks"  # the custom view the auth manager authorises
DAYS_PER_PAGE = 31
SHOTS_PER_PAGE = 12
SERVED_TYPES = {".png": "image/png", ".json": "application/json", ".csv": "text/csv", ".h5": "application/x-hdf5"}
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

    Both are resolved first: through a data root reached by a symbolic link, the paths that the
    pipeline recorded with the root's real path (a mask's ``model``) are still found inside it.
    """
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() if path.is_file() else None
    except (ValueError, OSError):
        return None


def model_used(data: DataRoot, day: dt.date, masks: list[Path]) -> ModelFiles:
    """The folder of the model that made the day's masks, from a mask file's ``model`` attribute (a run
    with training off uses an older model); the day's own model folder when no mask says, or when the
    attribute names a folder outside the data root (file contents never choose what the page reads)."""
    import h5py  # a dependency of cloud_tasks; only the detail of one day needs it

    for mask in masks[:1]:  # one run's model makes all of a day's masks
        try:
            with h5py.File(mask, "r") as f:
                model = f.attrs.get("model")
        except OSError as exc:
            log.warning("%s: cannot read the model attribute: %s", mask, exc)
            continue
        if isinstance(model, bytes | str) and model:
            folder = Path(model.decode(errors="replace") if isinstance(model, bytes) else model).parent
            try:
                return ModelFiles(inside(data.root, folder))
            except (CloudTasksError, OSError, ValueError):
                log.warning("%s: its model %s lies outside the data root: not shown", mask, folder)
    return data.model(day)


def day_detail(root: Path, day: dt.date, shots_page: int = 1) -> dict | None:
    """A day in detail: its row, failed products, the model's curves, the SST histogram, a page of quicklooks."""
    data = DataRoot(root)
    try:
        summary = json.loads(data.summary(day).read_text())
    except FileNotFoundError:
        return None
    masks = data.masks(day)
    quicklooks = masks.quicklooks()
    shots, shots_page, shot_pages = paginate(quicklooks, shots_page, SHOTS_PER_PAGE)
    model = model_used(data, day, masks.masks())
    history = _last_epoch(model.history_json)
    return {
        "row": day_row(summary),
        "failed_products": summary["failed"],
        "model": {
            "folder": str(model.folder),
            "training_curves": relative(root, model.curves),
            "history": relative(root, model.history_json),
            "last_epoch": history,
        },
        "sst_histogram": relative(root, data.sst(day).histogram),
        "sst_table": relative(root, data.sst(day).table),
        "quicklooks": {
            "total": len(quicklooks),
            "page": shots_page,
            "pages": shot_pages,
            "items": [
                {"product": p.stem, "png": relative(root, p), "mask": _mask_link(root, masks, p.stem)} for p in shots
            ],
        },
    }


def _mask_link(root: Path, masks: MaskFiles, stem: str) -> str | None:
    """The link to a quicklook's mask file; None when missing or reaching outside the folder (a symlink)."""
    try:
        return relative(root, masks.mask(stem))
    except CloudTasksError:
        return None


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
        """A result file from inside the data root."""
        found = safe_file(root, path)
        return FileResponse(
            found,
            media_type=SERVED_TYPES[found.suffix.lower()],
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"},
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
