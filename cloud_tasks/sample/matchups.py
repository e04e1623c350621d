"""SST match-ups of the generated day products: the table ``sst-comp`` reads (``layout.matchups_path``).

A pandas HDF table (key ``matchups``), one row per buoy match-up: day products' on their sunlit pixels, night and
twilight products' anywhere (night retrievals use the night algorithms N2, N3R, N3):

| column | meaning |
|---|---|
| ``isst`` | buoy SST, deg C (a few rows <= 0: failing the seed's ``isst > 0`` filter) |
| ``slat``, ``slon`` | buoy position, deg (most within 0.004/0.008 deg of the pixel, ~5 % far) |
| ``latitude_an``, ``longitude_an`` | the product's ``geodetic_an`` value at 0.5 km pixel ``(2 y_cems, 2 x_cems)`` |
| ``satzan``, ``satzao`` | nadir (from ``geometry_tn``) and oblique satellite zenith angles, deg |
| ``quality_level`` | 0-5 (~85 % are 5) |
| ``sst_algorithm_type`` | 1 N2, 2 N3R, 3 N3, 4 D2 (~85 %), 5 D3 |
| ``sat_sst_0..3`` | satellite SST, K, algorithms N2, N3, D2, D3: truth + noise, several K cold where cloudy |
| ``cems_path`` | ``/neodc/<CEDA mission dir>/YYYY/MM/DD/<product>.SEN3`` |
| ``x_cems``, ``y_cems`` | column and row of the pixel on the 1 km grid |
| ``pcloudn``, ``pcloudo`` | Bayesian cloud probabilities (nadir, oblique); mostly > 0.9 where cloudy |
| ``bayes_in`` | the product's ``bayes_in`` flag word at the pixel |

Every draw comes from the product's match-up stream (``ProductSpec.rng(1)``), in a fixed order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud_tasks.atomic import atomic_file
from cloud_tasks.naming import ProductName
from cloud_tasks.sample.flags import bayes
from cloud_tasks.sample.grid import GRIDS
from cloud_tasks.sample.scene import DAY_MAX_SZA, Scene
from cloud_tasks.sst import TABLE_KEY

MATCHUP_COLUMNS = (
    *("isst", "slat", "slon", "latitude_an", "longitude_an", "satzan", "satzao", "quality_level"),
    *("sst_algorithm_type", "sat_sst_0", "sat_sst_1", "sat_sst_2", "sat_sst_3", "cems_path", "x_cems", "y_cems"),
    *("pcloudn", "pcloudo", "bayes_in"),
)


# sst_algorithm_type (1 N2, 2 N3R, 3 N3, 4 D2, 5 D3) by night: D2 -> N3, D3 -> N3R; by day N3 (3.7 um, unusable in
# sunlight) -> D3
NIGHT_ALGORITHM = np.array([0, 1, 2, 3, 3, 2])
DAY_ALGORITHM = np.array([0, 1, 2, 5, 4, 5])


def cems_path(name: ProductName, root: str = "/neodc") -> str:
    """The product's path as the match-up files name it (CEDA's ``/neodc`` tree, ``.SEN3``)."""
    return str(name.archive_path(root).with_name(name.sen3))


def _pixels(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Flat 1 km indices of the match-ups: 30-100 per small grid, on sea (lit sea for a day product), 30-60 % of
    them cloudy."""
    g = scene.spec.grid
    n = round(rng.integers(30, 101) * g.rows * g.columns / (GRIDS["small"].rows * GRIDS["small"].columns))
    usable = ~scene.land & ~np.isnan(scene.bt).any(axis=0)
    if scene.spec.kind == "day":
        usable &= scene.sza < DAY_MAX_SZA
    cloudy, clear = np.flatnonzero(usable & scene.cloudy), np.flatnonzero(usable & ~scene.cloudy)
    n_cloudy = min(len(cloudy), round(n * np.clip(scene.cloud_fraction, 0.3, 0.6)))
    n_clear = min(len(clear), n - n_cloudy)
    flat = np.concatenate([rng.choice(cloudy, n_cloudy, replace=False), rng.choice(clear, n_clear, replace=False)])
    flat.sort()
    return flat


def _buoys(rng: np.random.Generator, truth: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """Buoy SST (deg C, ~3 % bad) and position (~5 % far from the pixel)."""
    n = len(truth)
    isst = truth - 273.15 + rng.normal(0, 0.15, n)
    bad = rng.random(n) < 0.03  # bad buoys / ice: fail isst > 0
    isst[bad] = -rng.uniform(0.1, 1.5, bad.sum())
    far = rng.random(n) < 0.05
    slat = lat + rng.uniform(-0.004, 0.004, n) + far * rng.choice([-1, 1], n) * rng.uniform(0.01, 0.05, n)
    slon = lon + rng.uniform(-0.008, 0.008, n) + far * rng.choice([-1, 1], n) * rng.uniform(0.02, 0.1, n)
    return {"isst": isst, "slat": slat, "slon": slon}


def _retrievals(rng: np.random.Generator, truth: np.ndarray, is_cloudy: np.ndarray, opacity: np.ndarray, night) -> dict:
    """Oblique zenith angle, quality level, algorithm (a night one at ``night`` pixels) and the four satellite SSTs
    (cold where cloudy)."""
    n = len(truth)
    satzao = rng.uniform(51, 55, n)
    oblique = rng.random(n) < 0.04
    satzao[oblique] = rng.uniform(55.5, 60, oblique.sum())
    quality = np.where(rng.random(n) < 0.85, 5, rng.integers(0, 5, n))
    algorithm = np.where(rng.random(n) < 0.85, 4, rng.choice([1, 2, 3, 5], n))
    # no draw: the streams stay as they were
    algorithm = np.where(night, NIGHT_ALGORITHM[algorithm], DAY_ALGORITHM[algorithm])
    contamination = is_cloudy * (2 + 8 * opacity) * rng.uniform(0.5, 1.5, n)  # cloud makes retrievals cold
    sat_sst = {
        f"sat_sst_{k}": truth + rng.normal(bias, sd, n) - contamination
        for k, (bias, sd) in enumerate(((0.1, 0.35), (0.05, 0.3), (-0.05, 0.22), (0.0, 0.25)))
    }
    return {
        "satzao": satzao,
        "quality_level": quality.astype(np.int64),
        "sst_algorithm_type": algorithm.astype(np.int64),
        **sat_sst,
    }


def _cloud_probabilities(rng: np.random.Generator, is_cloudy: np.ndarray) -> dict[str, np.ndarray]:
    """Bayesian cloud probabilities: mostly > 0.9 where cloudy, mostly < 0.3 where clear."""
    n = len(is_cloudy)
    likely = rng.random(n)
    pcloudn = np.where(
        is_cloudy,
        np.where(likely < 0.9, rng.uniform(0.9, 1.0, n), rng.uniform(0.5, 0.9, n)),
        np.where(likely < 0.94, rng.uniform(0.0, 0.3, n), rng.uniform(0.3, 1.0, n)),
    )
    pcloudo = np.clip(pcloudn + rng.normal(0, 0.04, n), 0, 1)
    return {"pcloudn": pcloudn, "pcloudo": pcloudo}


def matchups_for_scene(scene: Scene):
    """SST buoy match-ups of a product (a pandas DataFrame with ``MATCHUP_COLUMNS``)."""
    import pandas as pd

    rng = scene.spec.rng(1)
    flat = _pixels(scene, rng)
    y, x = np.unravel_index(flat, (scene.spec.grid.rows, scene.spec.grid.columns))
    is_cloudy = scene.cloudy.flat[flat]
    truth = scene.sst.flat[flat].astype(np.float64)
    lat_i, lon_i = scene.geodetic_an
    lat, lon = lat_i[2 * y, 2 * x] * 1e-6, lon_i[2 * y, 2 * x] * 1e-6
    table = {
        **_buoys(rng, truth, lat, lon),
        "latitude_an": lat,
        "longitude_an": lon,
        "satzan": scene.vza.flat[flat],
        **_retrievals(
            rng, truth, is_cloudy, scene.cloud.flat[flat].astype(np.float64), scene.sza.flat[flat] >= DAY_MAX_SZA
        ),
        **_cloud_probabilities(rng, is_cloudy),
        "cems_path": cems_path(scene.spec.name),
        "x_cems": x.astype(np.int64),
        "y_cems": y.astype(np.int64),
        "bayes_in": bayes(scene).flat[flat].astype(np.int64),
    }
    return pd.DataFrame(table, columns=list(MATCHUP_COLUMNS))


def write_matchups(path: str | Path, table) -> Path:
    """Write a match-up DataFrame as a pandas HDF table (key ``matchups``), atomically; return the path."""
    missing = [c for c in MATCHUP_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"match-up table lacks column(s) {', '.join(missing)}")
    path = Path(path)
    with atomic_file(path) as tmp:
        table[list(MATCHUP_COLUMNS)].to_hdf(tmp, key=TABLE_KEY, mode="w", format="table", index=False)
    return path
