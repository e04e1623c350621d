"""Sentinel-3 SLSTR product names (ESA naming convention) and the CEDA archive layout."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from cloud_tasks.errors import InputError

MISSIONS = ("S3A", "S3B")
# CEDA keeps each mission's L1 RBT products under <root>/<dir>/YYYY/MM/DD/<product>.zip
CEDA_MISSION_DIRS = {
    "S3A": "sentinel3a/data/SLSTR/L1_RBT",
    "S3B": "sentinel3b/data/SLSTR/L1_RBT",
}
TIME_FORMAT = "%Y%m%dT%H%M%S"

_NAME_RE = re.compile(
    r"^(?P<mission>S3[AB])_SL_1_RBT____"
    r"(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_(?P<creation>\d{8}T\d{6})_"
    r"(?P<duration>\d{4})_(?P<cycle>\d{3})_(?P<orbit>\d{3})_(?P<frame>\d{4}|_{4})_"
    r"(?P<centre>[A-Z0-9]{3})_(?P<platform>[OFDR])_(?P<timeliness>NR|NT|ST)_(?P<baseline>\d{3})"
    r"(?:\.SEN3)?(?:\.zip)?$"
)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class ProductName:
    """The fields of an SLSTR L1 RBT product name, e.g. ``S3A_SL_1_RBT____20170315T113420_...``."""

    stem: str  # the name without ``.SEN3`` / ``.zip``
    mission: str
    start: dt.datetime
    stop: dt.datetime
    creation: dt.datetime
    duration_s: int
    cycle: int
    relative_orbit: int
    frame: str
    centre: str
    platform: str
    timeliness: str
    baseline: str

    @classmethod
    def parse(cls, name: str | Path) -> ProductName:
        """Parse a product name, a ``.SEN3`` folder or a ``.zip`` path; raise InputError if it does not parse."""
        base = Path(name).name
        match = _NAME_RE.match(base)
        if match is None:
            raise InputError(name, "not an SLSTR L1 RBT product name (MMM_SL_1_RBT____<start>_<stop>_...)")
        g = match.groupdict()
        try:
            start, stop, creation = _utc(g["start"]), _utc(g["stop"]), _utc(g["creation"])
        except ValueError as exc:
            raise InputError(name, f"product name holds an invalid time: {exc}") from None
        stem = base.removesuffix(".zip").removesuffix(".SEN3")
        return cls(
            stem=stem,
            mission=g["mission"],
            start=start,
            stop=stop,
            creation=creation,
            duration_s=int(g["duration"]),
            cycle=int(g["cycle"]),
            relative_orbit=int(g["orbit"]),
            frame=g["frame"],
            centre=g["centre"],
            platform=g["platform"],
            timeliness=g["timeliness"],
            baseline=g["baseline"],
        )

    @property
    def sen3(self) -> str:
        """The product's SAFE folder name."""
        return f"{self.stem}.SEN3"

    @property
    def zip(self) -> str:
        """The product's archive file name, as CEDA stores it."""
        return f"{self.stem}.zip"

    def archive_path(self, root: str | Path) -> Path:
        """Where CEDA keeps this product's zip below ``root`` (filed by sensing start date)."""
        day = self.start
        return Path(root) / CEDA_MISSION_DIRS[self.mission] / f"{day:%Y/%m/%d}" / self.zip


def stem_from_file(value, source: str | Path, what: str = "product_name") -> str:
    """A product stem read from inside a file (an attribute, a table cell), checked before any use as a
    file name: a bare, valid product name, never a path. Raise InputError naming ``source`` otherwise."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if not isinstance(text, str) or not _NAME_RE.match(text) or Path(text).name != text:
        raise InputError(source, f"{what} {str(value)[:200]!r} is not an SLSTR L1 RBT product name")
    return text.removesuffix(".zip").removesuffix(".SEN3")


def format_product_name(
    mission: str,
    start: dt.datetime,
    stop: dt.datetime,
    creation: dt.datetime,
    *,
    duration_s: int,
    cycle: int,
    relative_orbit: int,
    frame: int,
    centre: str = "SVL",
    timeliness: str = "NT",
    baseline: str = "004",
) -> str:
    """Build a product stem from its fields (the inverse of ``ProductName.parse``)."""
    return (
        f"{mission}_SL_1_RBT____{start:{TIME_FORMAT}}_{stop:{TIME_FORMAT}}_{creation:{TIME_FORMAT}}_"
        f"{duration_s:04d}_{cycle:03d}_{relative_orbit:03d}_{frame:04d}_{centre}_O_{timeliness}_{baseline}"
    )
