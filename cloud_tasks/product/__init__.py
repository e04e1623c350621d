"""Mask products people can use: CF-NetCDF masks, GeoTIFFs, swath footprints and the STAC catalogue.

| module | what |
|---|---|
| ``cf_mask`` | the CF-1.10 / ACDD-1.3 NetCDF-4 mask of a product: ``write_mask``, ``read_mask``, ``made_by`` |
| ``geotiff`` | a Cloud-Optimized GeoTIFF of a mask on a regular latitude/longitude grid: ``write_geotiff`` |
| ``footprint`` | a swath's footprint polygon (antimeridian and poles): ``swath_footprint`` |
| ``stac`` | the static STAC catalogue on the data root: ``add_mask_item``, ``add_model_items`` |

Each module's documentation starts with how to call it.
"""
