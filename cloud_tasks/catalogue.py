"""``catalogue``: add or refresh the STAC catalogue of a data root (``cloud_tasks.product.stac``).

``python -m cloud_tasks catalogue DATA_ROOT [--day YYYY-MM-DD]`` adds an Item per mask product of the day (every
day with masks without ``--day``), with the converted HDF5 file as its source asset and the GeoTIFF and quicklook
beside the mask when they exist, then an Item per model version of the registry. In a process (the DAG's step
after the masks): ``catalogue.update(data_root, day)``.

Files are written atomically and only when their content changes: a re-run leaves the catalogue byte-identical,
and an Item added again replaces itself. A mask that cannot be read fails alone (the others are catalogued);
its error is raised at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

from cloud_tasks.errors import BatchFailures, DiskFullError, InputError, product_failure
from cloud_tasks.layout import DAY_SPLIT, DataRoot, converted_path

log = logging.getLogger(__name__)


def update(data_root: str | Path, day: dt.date | None = None) -> list[Path]:
    """Add or refresh the Items of ``day``'s masks (every day's when None) and of the registry's model versions;
    return the Items' paths (masks first)."""
    from cloud_tasks.product import stac

    data = DataRoot(data_root)
    if not data.root.is_dir():
        raise InputError(data.root, "data root does not exist")
    items, failures, total = [], [], 0
    for mask_day in [day] if day else data.mask_days():
        masks = data.masks(mask_day).masks()
        total += len(masks)
        for mask in masks:
            source = converted_path(data.hdf(mask_day), DAY_SPLIT, mask.stem)
            try:
                items.append(stac.add_mask_item(data.root, mask, source_hdf=source if source.is_file() else None))
            except DiskFullError:
                raise  # not the mask's fault: the next ones would fail too
            except Exception as exc:
                failures.append(product_failure(mask, exc))
                log.error("%s", failures[-1])
    models = stac.add_model_items(data.root)
    log.info("catalogue %s: %d mask item(s), %d model item(s)", data.catalogue.root, len(items), len(models))
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise BatchFailures("catalogue", failures, items, total)
    return items + models


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalogue",
        help="add or refresh the STAC catalogue of a data root (masks of a day, model versions)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data_root", metavar="DATA_ROOT", help="the data root (layout.DataRoot)")
    parser.add_argument("--day", type=_day, help="the day whose masks to catalogue (UTC), YYYY-MM-DD; default: all")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> None:
    for path in update(args.data_root, args.day):
        print(path)
