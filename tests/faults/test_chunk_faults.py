"""Faults in one chunk of products, extracted and converted in one step (``pipeline.extract_and_convert``: one
mapped instance of the DAGs, and the ``pipeline`` command's step): the good products are converted, the chunk
fails naming each bad product with its own error, a full disk stops it (a retry, not a bad product), and a
re-run once the fault is gone completes the chunk without redoing the good products."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from products import SAMPLE_DATE

from cloud_tasks.convert import convert_product
from cloud_tasks.errors import BatchFailures, DiskFullError
from cloud_tasks.extract import extract_product
from cloud_tasks.naming import ProductName
from cloud_tasks.pipeline import convert_period, extract_and_convert
from cloud_tasks.planning import DayRun

from .conftest import files_below, leftovers, resize_tmpfs, truncate_member

PAGE = 4096


def stems(paths) -> list[str]:
    """The product names of zips or HDF5 files (each named after its product)."""
    return sorted(Path(p).stem for p in paths)


def test_a_corrupt_zip_and_a_broken_netcdf_fail_the_chunk_each_with_its_error(sample_archive, tmp_path, survivors):
    archive = Path(shutil.copytree(sample_archive, tmp_path / "archive"))
    zips = sorted(archive.rglob("*.zip"))
    not_a_zip, broken = zips[0], zips[1]
    originals = {path: path.read_bytes() for path in (not_a_zip, broken)}
    not_a_zip.write_bytes(b"not a zip at all")
    truncate_member(broken, "S7_BT_in.nc")
    run = DayRun.of(SAMPLE_DATE, tmp_path / "data")

    with pytest.raises(BatchFailures) as caught:
        extract_and_convert([str(z) for z in zips], run)

    bad_netcdf = run.data.extracted_product(run.day, ProductName.parse(broken).stem) / "S7_BT_in.nc"
    header, extraction, conversion = str(caught.value).splitlines()
    assert header == f"2 of {len(zips)} products failed to extract and convert:"
    assert extraction == f"  {not_a_zip}: not a zip archive (File is not a zip file)"
    assert conversion.startswith(f"  {bad_netcdf}: not a readable NetCDF file (")
    good = stems(zips[2:])
    assert stems(caught.value.done) == good and stems(files_below(run.data.hdf(run.day))) == good
    assert not list(run.data.extracted(run.day).iterdir()), "a re-run extracts a failed product again"
    survivors.guard(run.data.hdf(run.day))  # the good products' HDF5 files, kept by the re-run

    for path, data in originals.items():  # the operator replaces the bad files; the pipeline command re-runs
        path.write_bytes(data)
    convert_period([{"day": run.day.isoformat(), "products": [str(z) for z in zips]}], run.data.root)
    assert stems(files_below(run.data.hdf(run.day))) == stems(zips)
    assert survivors.lost() == [], "a re-run redid a converted product"
    assert not list(run.data.extracted(run.day).iterdir()) and leftovers(run.data.root) == []


def test_a_full_disk_stops_the_chunk_and_a_re_run_completes_it(sample_archive, tmp_path, tmpfs, survivors):
    zips = [str(z) for z in sorted(sample_archive.rglob("*.zip"))[:2]]
    extracted = [extract_product(z, tmp_path / "reference") for z in zips]
    references = [convert_product(p, tmp_path / "reference-hdf") for p in extracted]
    extracted_bytes = sum(-(-p.stat().st_size // PAGE) * PAGE for p in files_below(*extracted))
    disk = tmpfs(extracted_bytes + 64 * PAGE + references[0].stat().st_size // 2)  # no room for one HDF5 file
    run = DayRun.of(SAMPLE_DATE, disk / "data")

    with pytest.raises(DiskFullError, match="no space left on device"):
        extract_and_convert(zips, run)
    assert files_below(run.data.hdf(run.day)) == [] and leftovers(run.data.root) == []

    resize_tmpfs(disk, 4 * (extracted_bytes + sum(r.stat().st_size for r in references)))  # space freed
    done = extract_and_convert(zips, run)
    for path, reference in zip(sorted(done), sorted(references), strict=True):
        survivors.expect(Path(path), like=reference)
    assert survivors.lost() == [] and leftovers(run.data.root) == []
