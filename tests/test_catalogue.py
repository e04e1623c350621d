"""The ``catalogue`` command (``cloud_tasks.catalogue``) on a data root of real mask files: the masks of a day or
of every day, the registry's model versions, idempotent re-runs, and one clear error per bad mask."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from test_product_cf_mask import STEM
from test_product_stac import DAY, STEM_CROSSING, STEM_NEXT_DAY, documents, make_masks, register_versions, snapshot

from cloud_tasks import catalogue
from cloud_tasks.cli import main
from cloud_tasks.errors import BatchFailures, InputError
from cloud_tasks.layout import DataRoot
from cloud_tasks.product import stac

NEXT_DAY = DAY + dt.timedelta(days=1)


def item_ids(paths) -> list[str]:
    return sorted(p.stem for p in paths)


def test_a_day_or_every_day_and_the_model_versions(tmp_path):
    make_masks(tmp_path)  # two masks of DAY, one of the next day, each with its converted file
    register_versions(tmp_path, [{"reflectance": "r - 0.5", "brightness_temperature": "(T - 270) / 22"}])
    assert item_ids(catalogue.update(tmp_path, DAY)) == sorted([STEM, STEM_CROSSING, "v1"])
    assert not DataRoot(tmp_path).catalogue.item(stac.MASKS, STEM_NEXT_DAY, NEXT_DAY).exists()
    assert DataRoot(tmp_path).mask_days() == [DAY, NEXT_DAY]
    assert item_ids(catalogue.update(tmp_path)) == sorted([STEM, STEM_CROSSING, STEM_NEXT_DAY, "v1"])
    item = documents(tmp_path)[DataRoot(tmp_path).catalogue.item(stac.MASKS, STEM, DAY)]
    assert set(item["assets"]) == {"data", "geotiff", "overview", "source"}


def test_re_runs_leave_the_catalogue_byte_identical(tmp_path, capsys):
    make_masks(tmp_path)
    assert main(["catalogue", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3 and all(path.endswith(".json") for path in printed)
    before = snapshot(tmp_path)
    assert main(["catalogue", str(tmp_path), "--day", DAY.isoformat()]) == 0
    assert main(["catalogue", str(tmp_path)]) == 0
    assert snapshot(tmp_path) == before


def test_bad_masks_fail_alone_and_are_named(tmp_path, capsys):
    made = make_masks(tmp_path)
    made[STEM].write_text("not a NetCDF file")
    assert main(["catalogue", str(tmp_path), "--day", DAY.isoformat()]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {made[STEM]}: cannot be read as NetCDF") and "Traceback" not in err
    day = json.loads(DataRoot(tmp_path).catalogue.day_catalogue(stac.MASKS, DAY).read_text())
    assert [link["href"].split("/")[0] for link in day["links"] if link["rel"] == "item"] == [STEM_CROSSING]
    made[STEM_CROSSING].write_bytes(b"")
    with pytest.raises(BatchFailures, match=r"(?s)2 of 2 products failed to catalogue") as caught:
        catalogue.update(tmp_path, DAY)
    assert sorted(str(e).split(":")[0] for e in caught.value.failures) == sorted(
        map(str, (made[STEM], made[STEM_CROSSING]))
    )


def test_a_missing_data_root_or_bad_day_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(InputError, match="data root does not exist"):
        catalogue.update(tmp_path / "absent")
    assert main(["catalogue", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'absent'}: data root does not exist"
    with pytest.raises(SystemExit) as exit_status:
        main(["catalogue", str(tmp_path), "--day", "2024-02-31"])
    assert exit_status.value.code == 2 and "not a date (YYYY-MM-DD): '2024-02-31'" in capsys.readouterr().err
    assert catalogue.update(tmp_path, DAY) == [], "a day without masks and no registry: nothing to add"
