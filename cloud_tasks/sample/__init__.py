"""Synthetic Sentinel-3 SLSTR L1 RBT products and SST match-ups: sample data for the whole pipeline.

``python -m cloud_tasks make-sample OUT --date YYYY-MM-DD --products N [--missions S3A,S3B] [--grid small|full]``
writes ``N`` zipped products in the CEDA layout (``OUT/sentinel3a/data/SLSTR/L1_RBT/YYYY/MM/DD/<name>.zip``)
and the day's match-up table (``layout.matchups_path``: ``OUT/matchups/sst_matchups_YYYYMMDD.h5``).
``python -m cloud_tasks make-sample PRODUCT.SEN3 --complete`` adds the files a partial real product lacks
(``S1..S6_radiance_an.nc``, ``geodetic_an.nc``, ``geodetic_in.nc``), consistent with the files it has.

Geolocation: every product (generated or completed) carries ``geodetic_tx.nc`` (tie points, float64 degrees)
and, interpolated from it through unit vectors (safe across the poles and 180 deg), ``geodetic_an.nc`` (0.5 km)
and ``geodetic_in.nc`` (1 km: ``latitude_in``/``longitude_in`` int32 micro-degrees, ``scale_factor`` 1e-6,
``_FillValue`` -2**31, as real SLSTR; ``elevation_in`` int16 m). The 1 km pixel (y, x) lies where the 0.5 km
pixel (2y, 2x) does, so ``geodetic_in[y, x]`` equals ``geodetic_an[2y, 2x]``; the match-up table's
``latitude_an``/``longitude_an`` are those values at its pixel ``(y_cems, x_cems)``.

Scene model (``scene``), one smooth random field per quantity, every draw from the product's seed:

- Products cycle day, night, twilight, day, day (``specs``): day SZA 20-75 deg, night > 100 deg, twilight
  crossing 90 deg in the frame (reflectances only where SZA < 90 deg).
- Surface: sea with SST by latitude plus eddies; no land in 40 % of the products, else 2-12 % in patches,
  6 K warmer than the sea by day, 5 K colder at night (+-2.5 K).
- Clear sky: water vapour lowers the thermal channels (more in humid air and along slant paths; 12 um 1.6 x and
  3.7 um 0.6 x the 11 um deficit), so the clear split-window difference S8-S9 is 0.4-4 K (nadir to swath
  edge, dry to humid air).
- Clouds: a field thresholded at the product's cloud fraction (10-70 %) gives opacity 0.25-1 (thin at the
  edges); ``bayes_in`` marks every cloudy pixel (the label); a height field (0..1) sets the top temperature.
- Day brightness temperatures (the first model, kept byte for byte): opacity mixes clear sky with a top
  6-46 K colder than the sea; at 3.7 um clouds also reflect sunlight. Clouds show in the reflectances too.
- Night and twilight brightness temperatures, as in nature, for a thermal-only mask: tops 2-50 K below the
  sea, seen through the vapour above them; humid plumes widen the clear S8-S9 over tens of km. Ice clouds
  (height > 0.55) are often thin cirrus: cold tops, a small drop in S8 but a split-window difference S8-S9 of
  0.5-3 K more than clear sky, and S7 warmer than S8. Water clouds emit less at 3.7 um (S7 colder than S8 by up
  to 4 K: the fog test), large droplets less so. The hard ones: low water clouds of large droplets (tops 2-5 K
  below the sea, no 3.7 um signal), thin edges, cirrus in humid plumes. S7's noise grows at cold scenes (few
  3.7 um photons). Measured on held-out night products: a per-pixel classifier of the thermal inputs reaches
  0.90, the U-Net of ``train --kind thermal`` 0.93 (``tests/test_thermal.py``); the majority class is ~0.60.

Generated products copy the real product's variable names, dtypes, dimensions, attributes, global
attributes and compression (zlib level 2 + shuffle, one chunk per variable). The modules, each documenting
its own decisions and simplifications:

| module | what |
|---|---|
| ``grid`` | the 1 km, 0.5 km and tie-point grids; interpolation from tie points |
| ``specs`` | the products of an archive: names, sensing times, orbits, illumination kind, seeds |
| ``scene`` | scene physics: geometry, surface, SST, clouds, brightness temperatures, reflectance |
| ``flags`` | the L1 flag words (``confidence_in``, ``bayes_in``, ``cloud_in``, exceptions) |
| ``netcdf`` | writing NetCDF files like the real ones; radiance and geodetic (``an``, ``in``) files |
| ``product`` | every file of a generated ``.SEN3`` folder (``manifest``: its ``xfdumanifest.xml``) |
| ``archive`` | zipped products in the CEDA layout and the day's match-ups |
| ``matchups`` | the SST buoy match-up table of the day products |
| ``complete`` | completion of a partial real product |
| ``cli`` | ``register`` and ``run_cli`` of ``make-sample`` |
"""

from cloud_tasks.sample.archive import make_sample_archive, write_product_zip
from cloud_tasks.sample.cli import register, run_cli
from cloud_tasks.sample.complete import COMPLETED_FILES, complete_product
from cloud_tasks.sample.grid import GRIDS, GridSpec
from cloud_tasks.sample.matchups import MATCHUP_COLUMNS, cems_path, matchups_for_scene, write_matchups
from cloud_tasks.sample.product import PRODUCT_FILES, write_product
from cloud_tasks.sample.scene import Scene, make_scene
from cloud_tasks.sample.specs import ProductSpec, product_specs

__all__ = [
    "COMPLETED_FILES",
    "GRIDS",
    "MATCHUP_COLUMNS",
    "PRODUCT_FILES",
    "GridSpec",
    "ProductSpec",
    "Scene",
    "cems_path",
    "complete_product",
    "make_sample_archive",
    "make_scene",
    "matchups_for_scene",
    "product_specs",
    "register",
    "run_cli",
    "write_matchups",
    "write_product",
    "write_product_zip",
]
