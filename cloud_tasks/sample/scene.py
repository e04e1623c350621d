"""Scene physics: the truth of one generated product (geometry, surface, SST, clouds, brightness temperatures).

Illumination kind by product index (``specs``): day SZA 20-75 deg, night SZA > 100 deg everywhere, twilight
crossing 90 deg inside the frame. Clouds are a smooth random field thresholded at a per-product cloud fraction
(10-70 %); the L1 ``summary_cloud`` test uses a slightly lower threshold, so it flags a few % more pixels.
Reflectance ``R`` mixes a surface class (sea, land, snow/ice) with thick cloud in proportion to opacity.
Brightness temperatures: day scenes keep the first, simple model (``_day_clouds``); night and twilight scenes
have clouds recognisable from the thermal channels alone (``_dark_sky``, ``_dark_clouds``, ``_noise``; the
package docstring gives the scene model).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cloud_tasks.sample.grid import (
    IN_RESOLUTION,
    TN_RESOLUTION,
    GridSpec,
    an_positions,
    geodetic_on_grid,
    in_positions,
    micro_degrees,
    resample,
)
from cloud_tasks.sample.specs import ProductSpec

DAY_MAX_SZA, TWILIGHT_MAX_SZA = 90.0, 100.0
ICE_HEIGHT = 0.55  # night and twilight clouds above this height (0..1) are ice
# Reflectance by surface class (sea, land, snow/ice) and of thick cloud, channels S1..S6.
_SURFACE_REFLECTANCE = np.array(
    [
        [0.055, 0.035, 0.015, 0.002, 0.006, 0.003],
        [0.07, 0.09, 0.28, 0.004, 0.24, 0.14],
        [0.85, 0.82, 0.75, 0.01, 0.08, 0.04],
    ],
    dtype=np.float32,
).T
_CLOUD_REFLECTANCE = np.array([0.8, 0.78, 0.76, 0.0, 0.48, 0.3], dtype=np.float32)  # S4 depends on cloud height


@dataclass
class Scene:
    """The truth of one generated product: tie-point and 1 km fields its files are made from."""

    spec: ProductSpec
    tie_points: dict[str, np.ndarray]  # geometry_tn / geodetic_tx variables, (rows, tp_columns) float64
    sza: np.ndarray  # 1 km solar zenith angle, deg (float64)
    vza: np.ndarray  # 1 km nadir satellite zenith angle, deg
    land: np.ndarray  # bool
    coast: np.ndarray  # bool
    elevation: np.ndarray  # metres, float32
    sst: np.ndarray  # sea surface temperature, K (float32)
    cloud: np.ndarray  # cloud opacity 0..1, > 0 exactly where cloudy
    summary_cloud: np.ndarray  # bool: the L1 summary cloud test (slightly different threshold)
    cloud_height: np.ndarray  # 0..1
    bt: np.ndarray  # (3, rows, columns) float32 K, NaN where fill

    @property
    def cloudy(self) -> np.ndarray:
        return self.cloud > 0

    @property
    def cloud_fraction(self) -> float:
        return float(self.cloudy.mean())

    @functools.cached_property
    def sza_an(self) -> np.ndarray:
        """Solar zenith angle on the 0.5 km grid (float64), interpolated from the tie points."""
        return resample(self.tie_points["solar_zenith_tn"], *an_positions(self.spec.grid))

    @functools.cached_property
    def sunlight_an(self) -> tuple[np.ndarray, np.ndarray]:
        """(cos(SZA), dark) on the 0.5 km grid."""
        return sunlight(self.sza_an)

    @functools.cached_property
    def geodetic_an(self) -> tuple[np.ndarray, np.ndarray]:
        """``latitude_an``/``longitude_an`` as written: int32 micro-degrees."""
        return self._geodetic(an_positions(self.spec.grid))

    @functools.cached_property
    def geodetic_in(self) -> tuple[np.ndarray, np.ndarray]:
        """``latitude_in``/``longitude_in`` as written: int32 micro-degrees, equal to ``geodetic_an`` at (2y, 2x)."""
        return self._geodetic(in_positions(self.spec.grid))

    def _geodetic(self, positions: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        lat, lon = geodetic_on_grid(self.tie_points["latitude_tx"], self.tie_points["longitude_tx"], *positions)
        return micro_degrees(lat), micro_degrees(lon)


def sunlight(sza: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos(SZA) as float32, 0 where dark; dark = SZA >= 90 deg or unknown) of a solar zenith field."""
    dark = ~(sza < DAY_MAX_SZA)
    mu0 = np.cos(np.radians(np.where(dark, 90.0, sza))).astype(np.float32)
    mu0[dark] = 0
    return mu0, dark


def reflectance_of(surface: np.ndarray, cloud: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(6, rows, columns) float32 reflectance: surface class 0 sea, 1 land, 2 snow/ice, mixed with cloud."""
    surf = _SURFACE_REFLECTANCE[:, surface]
    thick = np.broadcast_to(_CLOUD_REFLECTANCE[:, None, None], surf.shape).copy()
    thick[3] = 0.02 + 0.3 * height  # 1.375 um sees high cloud only
    return surf + (thick - surf) * cloud


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """A smooth random float32 field of unit variance: white noise on ``cell``-pixel cells, upsampled."""
    coarse = rng.standard_normal((int(shape[0] / cell) + 3, int(shape[1] / cell) + 3), dtype=np.float32)
    phase = rng.uniform(0, 1, 2)
    field = resample(coarse, np.arange(shape[0]) / cell + phase[0], np.arange(shape[1]) / cell + phase[1])
    field -= field.mean()
    field /= field.std()
    return field


def _solar_zenith_tp(kind: str, g: GridSpec, rng: np.random.Generator) -> np.ndarray:
    """A smooth solar zenith field on the tie points: linear across and along track plus a little curvature."""
    scale = IN_RESOLUTION[0] / TN_RESOLUTION[0]
    lo, hi = (
        -g.track_offset_in * scale + g.track_offset_tn,
        (g.columns - 1 - g.track_offset_in) * scale + g.track_offset_tn,
    )
    x = 2 * (np.arange(g.tp_columns) - lo) / (hi - lo) - 1  # -1..1 over the image columns
    y = np.arange(g.rows) / max(g.rows - 1, 1) - 0.5
    sign = rng.choice([-1.0, 1.0])
    base, across, along = {
        "day": (rng.uniform(35, 58), rng.uniform(0, 10), rng.uniform(-3, 3)),
        "night": (rng.uniform(115, 140), rng.uniform(0, 8), rng.uniform(-3, 3)),
        "twilight": (rng.uniform(87, 93), rng.uniform(8, 12), rng.uniform(-2, 2)),
    }[kind]
    sza = base + sign * across * x[None, :] + along * y[:, None] + 1.5 * x[None, :] ** 2
    return np.clip(sza, 0.0, 180.0)


def _tie_point_fields(spec: ProductSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """geometry_tn and geodetic_tx variables on the tie-point grid (NaN beyond the valid columns for geometry)."""
    g = spec.grid
    col = np.arange(g.tp_columns, dtype=np.float64)
    row = np.arange(g.rows, dtype=np.float64)
    scale = IN_RESOLUTION[0] / TN_RESOLUTION[0]
    half_width = max(g.track_offset_in, g.columns - 1 - g.track_offset_in) * scale
    across_km = np.broadcast_to((col - g.track_offset_tn) * TN_RESOLUTION[0] / 1000, (g.rows, g.tp_columns))
    along_km = np.broadcast_to(row[:, None] * TN_RESOLUTION[1] / 1000, (g.rows, g.tp_columns))
    heading = np.radians(348.0 if spec.kind == "night" else 192.0)  # ascending at night, descending by day
    lat0, lon0 = rng.uniform(-60, 60), rng.uniform(-180, 180)
    north = along_km * np.cos(heading) - across_km * np.sin(heading)
    east = along_km * np.sin(heading) + across_km * np.cos(heading)
    lat = lat0 + north / 111.195
    lon = (lon0 + east / (111.195 * np.cos(np.radians(lat))) + 180) % 360 - 180
    sza = _solar_zenith_tp(spec.kind, g, rng)
    saa = (rng.uniform(0, 360) + 20 * (col / g.tp_columns)[None, :] + 5 * (row / g.rows)[:, None]) % 360
    offset = np.abs(col - g.track_offset_tn)[None, :] / half_width
    vza = np.broadcast_to(61.0 * offset, sza.shape).copy()
    vaa = np.broadcast_to(np.where(col >= g.track_offset_tn, 102.0, 282.0)[None, :], sza.shape).copy()
    fields = {
        "sat_azimuth_tn": vaa,
        "sat_path_tn": np.zeros_like(sza),
        "sat_zenith_tn": vza,
        "solar_azimuth_tn": saa,
        "solar_path_tn": np.full_like(sza, 1.4878e11),
        "solar_zenith_tn": sza,
    }
    for values in fields.values():
        values[:, g.tp_valid_columns :] = np.nan
    return fields | {"latitude_tx": lat, "longitude_tx": lon}


def _surface(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(land, coast, elevation in metres): no land in 40 % of the products, else 2-12 % land in smooth patches."""
    land_fraction = 0.0 if rng.random() < 0.4 else rng.uniform(0.02, 0.12)
    land_field = _smooth_field(rng, shape, rng.uniform(48, 96))
    land_threshold = np.quantile(land_field, 1 - land_fraction) if land_fraction else np.inf
    land = land_field > land_threshold
    sea_neighbour = np.zeros_like(land)
    for axis in (0, 1):
        for shift in (1, -1):
            sea_neighbour |= ~np.roll(land, shift, axis)
    coast = land & sea_neighbour
    elevation = np.where(land, 20 + 400 * (land_field - land_threshold), 0).astype(np.float32)
    return land, coast, elevation


def _temperatures(rng, shape, lat: np.ndarray, land: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(SST, surface temperature) in K: SST by latitude plus eddies; land warmer by day, colder by night."""
    sst = np.clip(29 * np.cos(np.radians(lat)) ** 2 - 1, -1.8, 30.5).astype(np.float32) + np.float32(273.15)
    sst += 0.8 * _smooth_field(rng, shape, 64) + 0.15 * _smooth_field(rng, shape, 6)
    land_offset = {"day": 6.0, "night": -5.0, "twilight": 0.0}[kind]
    surface_t = np.where(land, sst + land_offset + 2.5 * _smooth_field(rng, shape, 24), sst)
    return sst, surface_t


def _clouds(rng: np.random.Generator, shape: tuple[int, int]):
    """(opacity, summary_cloud, height, cell size): a smooth field thresholded at a random cloud fraction."""
    cell = rng.uniform(16, 40)
    field = 0.8 * _smooth_field(rng, shape, cell) + 0.45 * _smooth_field(rng, shape, cell / 4)
    threshold = np.quantile(field, 1 - rng.uniform(0.1, 0.7))
    strength = np.clip((field - threshold) / 0.8, 0, 1)
    cloud = np.where(field > threshold, 0.25 + 0.75 * strength, 0).astype(np.float32)
    summary_cloud = field > threshold - 0.1
    height = np.clip(0.5 + 0.35 * _smooth_field(rng, shape, 2 * cell), 0, 1)
    return cloud, summary_cloud, height, cell


@dataclass
class _ClearSky:
    """Clear-sky brightness temperatures (K) at the top of the atmosphere, and what a cloud changes in them."""

    bt37: np.ndarray
    bt11: np.ndarray
    bt12: np.ndarray
    absorption: np.ndarray  # water-vapour deficit of the 11 um channel, K (12 um: 1.6 x, 3.7 um: 0.6 x)
    mu0: np.ndarray  # cos(SZA), 0 where dark


def _clear_sky(rng, shape, sza, vza, sst, surface_t, land) -> _ClearSky:
    """Surface temperature less the water vapour's absorption (more in humid air and along slant paths);
    3.7 um also sees reflected sunlight where lit."""
    mu0 = np.cos(np.radians(np.minimum(sza, 90))).astype(np.float32)
    path = (1 / np.cos(np.radians(vza))).astype(np.float32)
    wet = np.clip(0.3 + 0.5 * (sst - 273.15) / 30 + 0.1 * _smooth_field(rng, shape, 48), 0.1, 1.0)
    absorption = (0.4 + 2.6 * wet) * path
    bt11 = surface_t - absorption
    bt12 = surface_t - 1.6 * absorption
    bt37 = surface_t - 0.6 * absorption + mu0 * np.where(land, 6.0, 1.5)
    return _ClearSky(bt37, bt11, bt12, absorption, mu0)


def _reflected_37(rng, sky: _ClearSky, cell: float) -> np.ndarray:
    """Sunlight a cloud reflects at 3.7 um, K: up to 21 K x cos(SZA), patchy (an unpredictable warm term)."""
    return sky.mu0 * 14 * np.clip(0.5 + 0.5 * _smooth_field(rng, sky.mu0.shape, cell / 2), 0, 1.5)


def _day_clouds(rng, sky: _ClearSky, sst, cloud, height, cell) -> np.ndarray:
    """Day scenes' clouds (the first model, kept so that day products stay byte-identical): opacity mixes the
    clear sky with a cloud top 6-46 K colder than the sea, which also reflects sunlight at 3.7 um."""
    cloud_top = sst - (6 + 40 * height)
    reflected = _reflected_37(rng, sky, cell)
    return np.stack(
        [
            (1 - cloud) * sky.bt37 + cloud * (cloud_top + 1 + reflected),
            (1 - cloud) * sky.bt11 + cloud * cloud_top,
            (1 - cloud) * sky.bt12 + cloud * (cloud_top - 0.3) - 1.5 * cloud * (1 - cloud),
        ]
    )


def _dark_sky(rng, sky: _ClearSky, cell: float) -> _ClearSky:
    """The clear sky of night and twilight scenes: humid plumes, more vapour and a wider split-window difference
    over tens of km, where thin cirrus hides."""
    plume = np.clip(0.9 * _smooth_field(rng, sky.mu0.shape, 3 * cell), -0.6, None)
    return _ClearSky(sky.bt37 - 0.6 * plume, sky.bt11 - plume, sky.bt12 - 1.6 * plume, sky.absorption + plume, sky.mu0)


def _dark_clouds(rng, sky: _ClearSky, sst, cloud, height, cell) -> np.ndarray:
    """Night and twilight scenes' clouds, recognisable from the thermal channels alone (see the package docstring).

    A cloud of emissivity ``e`` shows ``(1 - e) x clear sky + e x (top seen through the vapour above)`` in each
    channel (linear in brightness temperature: a simplification): tops ``2 + 48 h^1.5`` K below the sea (``h``
    the height, 0..1), ice above ``ICE_HEIGHT``. Ice clouds are often thin (cirrus: ``e`` = opacity x 0.12..1)
    and absorb more at 12 than at 11 um (``e12 = 1 - (1 - e11)^1.4``: the split-window difference S8-S9 grows)
    and less at 3.7 um (S7 warmer); water clouds emit less at 3.7 um than at 11 um (S7 colder by up to 4 K x
    ``e``, the night fog test, less for large droplets). Low water clouds with large droplets are within a few
    K of the sea and show no fog signal: the hard ones.
    """
    ice = height > ICE_HEIGHT
    top = sst - (2 + 48 * height**1.5)
    above = sky.absorption * (1 - height) ** 2  # the vapour above the top: all of it for a cloud at the surface
    thinness = np.clip(0.4 + 0.45 * _smooth_field(rng, cloud.shape, cell), 0.12, 1.0)
    e11 = np.where(ice, cloud * thinness, cloud)
    e12 = 1 - (1 - e11) ** np.where(ice, 1.4, 1.05)
    e37 = e11 * np.where(ice, 0.7, 1.0)
    reflected = _reflected_37(rng, sky, cell)
    droplets = np.clip(0.55 + 0.45 * _smooth_field(rng, cloud.shape, cell), 0, 1)
    fog_deficit = np.where(ice, 0.0, 4.0 * droplets)
    return np.stack(
        [
            (1 - e37) * sky.bt37 + e37 * (top - 0.6 * above - fog_deficit + reflected),
            (1 - e11) * sky.bt11 + e11 * (top - above),
            (1 - e12) * sky.bt12 + e12 * (top - 1.6 * above),
        ]
    )


def _noise(rng, bt: np.ndarray, dark: bool) -> np.ndarray:
    """Detector noise (K): 0.08, 0.04, 0.05 K in S7, S8, S9; at night S7's grows at cold scenes (few 3.7 um
    photons: x2 at 256 K, x7 at 230 K)."""
    noise = rng.standard_normal(bt.shape, dtype=np.float32) * np.array([0.08, 0.04, 0.05], np.float32)[:, None, None]
    if dark:
        noise[0] *= np.exp(np.clip((270 - bt[0]) / 20, 0, 4))
    return noise


def make_scene(spec: ProductSpec) -> Scene:
    """Generate the scene of one product (deterministic for its seed and index)."""
    g = spec.grid
    rng = spec.rng(0)  # every draw below comes from this one stream, in this order
    shape = (g.rows, g.columns)
    tie = _tie_point_fields(spec, rng)
    pos = in_positions(g)
    sza, vza, lat = (resample(tie[name], *pos) for name in ("solar_zenith_tn", "sat_zenith_tn", "latitude_tx"))
    land, coast, elevation = _surface(rng, shape)
    sst, surface_t = _temperatures(rng, shape, lat, land, spec.kind)
    cloud, summary_cloud, height, cell = _clouds(rng, shape)
    sky = _clear_sky(rng, shape, sza, vza, sst, surface_t, land)
    dark = spec.kind != "day"
    if dark:
        sky = _dark_sky(rng, sky, cell)
    bt = (_dark_clouds if dark else _day_clouds)(rng, sky, sst, cloud, height, cell).astype(np.float32)
    bt += _noise(rng, bt, dark)
    if rng.random() < 0.5:  # one partly lost scan line in the three thermal channels
        row, length = rng.integers(g.rows), int(rng.integers(g.columns // 8, g.columns // 2))
        first = int(rng.integers(0, g.columns - length))
        bt[:, row, first : first + length] = np.nan
    return Scene(spec, tie, sza, vza, land, coast, elevation, sst, cloud, summary_cloud, height, bt)
