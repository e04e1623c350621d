"""The L1 flag words of a generated product (``flags_in.nc`` and the exception flags), as the real product names them.

``confidence_in``: ``day`` where the solar zenith angle (tie points interpolated to the pixel) is < 90 deg and
``twilight`` where 90 <= SZA < 100 deg (the real product sets ``day`` up to 90 deg, not 85);
``ocean``/``land``/``coastline``, ``unfilled`` where the brightness temperatures are fill, ``summary_cloud``.
``bayes_in`` is non-zero exactly where the scene is cloudy (``single_low|dual_low``, plus the ``moderate`` bits
for thicker cloud).
"""

from __future__ import annotations

import numpy as np

from cloud_tasks.sample.scene import DAY_MAX_SZA, TWILIGHT_MAX_SZA, Scene

CONFIDENCE_MEANINGS = (
    "coastline ocean tidal land inland_water unfilled spare spare cosmetic duplicate day twilight sun_glint snow"
    " summary_cloud summary_pointing"
)
BAYES_MEANINGS = "single_low single_moderate dual_low dual_moderate spare spare spare spare"
CLOUD_MEANINGS = (
    "visible 1.37_threshold 1.6_small_histogram 1.6_large_histogram 2.25_small_histogram 2.25_large_histogram"
    " 11_spatial_coherence gross_cloud thin_cirrus medium_high fog_low_stratus 11_12_view_difference"
    " 3.7_11_view_difference thermal_histogram spare spare"
)
POINTING_MEANINGS = (
    "FlipMirrorAbsoluteError FlipMirrorIntegratedError FlipMirrorRMSError ScanMirrorAbsoluteError"
    " ScanMirrorIntegratedError ScanMirrorRMSError ScanTimeError Platform_Mode"
)
EXCEPTION_MEANINGS = (
    "ISP_absent pixel_absent not_decompressed no_signal saturation invalid_radiance no_parameters unfilled_pixel"
)


def bit(meanings: str, name: str) -> int:
    """The mask of flag ``name`` in a ``flag_meanings`` string (masks 1, 2, 4, ... in order)."""
    return 1 << meanings.split().index(name)


def _confidence(scene: Scene) -> np.ndarray:
    def c(name):
        return np.uint16(bit(CONFIDENCE_MEANINGS, name))

    confidence = np.where(scene.land, c("land"), c("ocean"))
    confidence |= np.where(scene.coast, c("coastline"), 0).astype(np.uint16)
    confidence |= np.where(np.isnan(scene.bt).any(axis=0), c("unfilled"), 0).astype(np.uint16)
    confidence |= np.where(scene.sza < DAY_MAX_SZA, c("day"), 0).astype(np.uint16)
    twilight = (scene.sza >= DAY_MAX_SZA) & (scene.sza < TWILIGHT_MAX_SZA)
    confidence |= np.where(twilight, c("twilight"), 0).astype(np.uint16)
    confidence |= np.where(scene.summary_cloud, c("summary_cloud"), 0).astype(np.uint16)
    return confidence


def bayes(scene: Scene) -> np.ndarray:
    """``bayes_in`` (uint8) of a scene."""

    def b(*names):
        return np.uint8(sum(bit(BAYES_MEANINGS, n) for n in names))

    flags = np.where(scene.cloudy, b("single_low", "dual_low"), b())
    flags |= np.where(scene.cloud > 0.4, b("single_moderate"), b())
    flags |= np.where(scene.cloud > 0.55, b("dual_moderate"), b())
    return flags


def _cloud_tests(scene: Scene) -> np.ndarray:
    def t(*names):
        return np.uint16(sum(bit(CLOUD_MEANINGS, n) for n in names))

    day = scene.sza < DAY_MAX_SZA
    cloud = np.where(scene.summary_cloud & (scene.cloud > 0.5), t("gross_cloud"), t("11_spatial_coherence"))
    cloud |= np.where(scene.summary_cloud & day, t("visible", "1.6_large_histogram"), t("thermal_histogram"))
    cloud[~scene.summary_cloud] = 0
    return cloud


def flag_words(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence_in uint16, bayes_in uint8, cloud_in uint16) of a scene."""
    return _confidence(scene), bayes(scene), _cloud_tests(scene)
