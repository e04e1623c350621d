"""``python -m cloud_tasks make-sample``: write a sample archive, or complete a partial product."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

from cloud_tasks.archive import check_missions
from cloud_tasks.errors import InputError
from cloud_tasks.naming import MISSIONS
from cloud_tasks.sample.archive import make_sample_archive
from cloud_tasks.sample.complete import complete_product
from cloud_tasks.sample.grid import GRIDS

log = logging.getLogger(__name__)


def _missions(text: str) -> tuple[str, ...]:
    try:
        return check_missions(text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(subparsers) -> None:
    """Add the ``make-sample`` sub-command."""
    from cloud_tasks import sample

    parser = subparsers.add_parser(
        "make-sample",
        help="write synthetic SLSTR products and match-ups, or complete a partial product",
        description=sample.__doc__.splitlines()[0],
    )
    parser.add_argument(
        "out", type=Path, metavar="OUT", help="archive root to write, or a PRODUCT.SEN3 with --complete"
    )
    parser.add_argument("--date", type=_date, help="sensing date (UTC), YYYY-MM-DD")
    parser.add_argument("--products", type=int, help="number of products")
    parser.add_argument("--missions", type=_missions, default=MISSIONS, help="e.g. S3A,S3B (alternating)")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="small", help="product size (default small)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--complete", action="store_true", help="add the missing radiance/geodetic files to OUT")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> list[Path]:
    """Handler of ``make-sample``."""
    if args.complete:
        return complete_product(args.out, seed=args.seed)
    if args.date is None or args.products is None:
        raise InputError(args.out, "make-sample needs --date and --products (or --complete)")
    if args.products < 1:
        raise InputError(args.out, f"--products must be >= 1, not {args.products}")
    zips = make_sample_archive(args.out, args.date, args.products, args.missions, args.grid, args.seed)
    log.info("%d products under %s", len(zips), args.out)
    return zips
