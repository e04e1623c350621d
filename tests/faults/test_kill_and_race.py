"""Killed and concurrent writers, with real processes: SIGKILL mid-write, and two workers writing one output.

The kill of ``train`` mid-run and of ``extract`` mid-way are in tests/test_ml.py and tests/test_extract.py
(see ``reused.py``).
"""

from __future__ import annotations

import signal
import zipfile
from pathlib import Path

import pytest

from cloud_tasks.convert import convert_product
from cloud_tasks.extract import extract_product
from cloud_tasks.paths import expand_inputs

from .conftest import digest, files_below, leftovers, reaped, run_cli_process, start_cli, wait_until_writing


@pytest.fixture(scope="module")
def reference(real_product, tmp_path_factory) -> Path:
    """The real product (1198 x 1500 pixels, a 73 MB HDF5 file: long enough to catch its writer) converted once."""
    return convert_product(real_product, tmp_path_factory.mktemp("reference"))


def test_convert_killed_mid_write_leaves_no_final_file_and_a_rerun_completes(
    real_product, reference, sample_products, tmp_path, survivors
):
    out = tmp_path / "hdf"
    earlier = convert_product(sample_products[0], out)
    survivors.guard(earlier)
    final = out / reference.relative_to(reference.parents[1])

    with reaped(start_cli("convert-hdf", real_product, out)) as (writer,):
        wait_until_writing(writer, out)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    if final.exists():  # renamed in the instant before the kill: then it is complete
        assert digest(final) == digest(reference)
    else:
        assert leftovers(out), "the kill did not land mid-write"
    # what the next stages would pick up: only complete files, never the killed writer's temporary
    assert expand_inputs([out], ".h5") == sorted({earlier, final} & set(files_below(out)))

    rerun = run_cli_process("convert-hdf", real_product, out)  # the task's retry
    assert rerun.returncode == 0, rerun.stderr
    survivors.expect(final, like=reference)
    assert survivors.lost() == []
    assert expand_inputs([out], ".h5") == sorted([earlier, final])


def test_two_workers_converting_one_product_at_once(real_product, reference, tmp_path, survivors):
    """Worker A is stopped mid-write while worker B converts the same product and renames it into place;
    A then resumes and renames its own (identical) file over B's: readers only ever see a complete file."""
    out = tmp_path / "hdf"
    final = out / reference.relative_to(reference.parents[1])
    with reaped(start_cli("convert-hdf", real_product, out)) as (first,):
        wait_until_writing(first, out)
        first.send_signal(signal.SIGSTOP)
        second = run_cli_process("convert-hdf", real_product, out)
        assert second.returncode == 0, second.stderr
        assert "already converted" not in second.stderr, "the second worker must have converted too"
        assert digest(final) == digest(reference)  # B's complete file, while A is still mid-write
        inode = final.stat().st_ino
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0
    assert final.stat().st_ino != inode, "A's rename should have replaced B's file"
    survivors.expect(final, like=reference)
    assert survivors.lost() == [] and files_below(out) == [final] and leftovers(out) == []


STEM = "S3A_SL_1_RBT____20170315T113420_20170315T113720_20170315T135348_0179_015_237_1439_SVL_O_NR_002"


@pytest.fixture(scope="module")
def large_zip(tmp_path_factory) -> Path:
    """A product zip of 64 MB of incompressible members (stored), slow enough to catch its extraction."""
    import os

    path = tmp_path_factory.mktemp("large") / f"{STEM}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(4):
            zf.writestr(f"{STEM}.SEN3/S{i + 1}_radiance_an.nc", os.urandom(16 * 2**20))
    return path


def test_two_workers_extracting_one_zip_at_once(large_zip, tmp_path, survivors):
    """Worker A is stopped mid-extraction while B extracts the same zip; A then resumes, finds the product
    folder in place and discards its own: one complete folder, no temporary left."""
    out = tmp_path / "extracted"
    reference = extract_product(large_zip, tmp_path / "reference")
    final = out / reference.name
    with reaped(start_cli("extract", large_zip, out)) as (first,):
        wait_until_writing(first, out)
        first.send_signal(signal.SIGSTOP)
        second = run_cli_process("extract", large_zip, out)
        assert second.returncode == 0, second.stderr
        assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == [final.name]
        inode = final.stat().st_ino
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0
    assert final.stat().st_ino == inode, "B's complete folder stays in place"
    for path in files_below(reference):
        survivors.expect(final / path.relative_to(reference), like=path)
    assert survivors.lost() == [] and len(files_below(out)) == 4 and leftovers(out) == []
