"""A full disk: outputs written into a small tmpfs until it fills. The command stops with an error naming the
output and "no space left", no partial file lies under a final name, the earlier outputs are intact, and
once space is freed the same command completes."""

from __future__ import annotations

from pathlib import Path

from cloud_tasks.cli import main
from cloud_tasks.convert import convert_product
from cloud_tasks.extract import extract_product

from .conftest import files_below, leftovers, resize_tmpfs

PAGE = 4096


def space_for(*sizes: int) -> int:
    """tmpfs bytes holding files of these sizes (each rounded up to whole pages), plus a page per folder."""
    return sum(-(-size // PAGE) * PAGE for size in sizes) + 8 * PAGE


def expect_disk_full(capsys, argv: list, output: Path) -> None:
    status = main([str(a) for a in argv])
    stderr = capsys.readouterr().err
    assert status == 2
    assert stderr == (
        f"error: {output}: no space left on device in {output.parent}; "
        "the partial output was removed, earlier outputs kept\n"
    )


def test_conversion_into_a_full_disk(sample_products, tmp_path, tmpfs, capsys, survivors):
    first, second = sample_products[:2]
    references = [convert_product(p, tmp_path / "reference") for p in (first, second)]
    disk = tmpfs(space_for(references[0].stat().st_size) + references[1].stat().st_size // 2)
    out = disk / "hdf"
    finals = [out / r.relative_to(tmp_path / "reference") for r in references]

    expect_disk_full(capsys, ["convert-hdf", first, second, out], finals[1])
    survivors.expect(finals[0], like=references[0])
    assert survivors.lost() == []
    assert files_below(out) == [finals[0]] and leftovers(out) == []

    resize_tmpfs(disk, 4 * sum(r.stat().st_size for r in references))  # space freed
    assert main(["convert-hdf", str(first), str(second), str(out)]) == 0
    survivors.expect(finals[1], like=references[1])
    assert survivors.lost() == [] and sorted(files_below(out)) == sorted(finals)


def test_extraction_into_a_full_disk(sample_archive, tmp_path, tmpfs, capsys, survivors):
    zips = sorted(sample_archive.rglob("*.zip"))[:2]
    references = [extract_product(z, tmp_path / "reference") for z in zips]
    sizes = [[p.stat().st_size for p in files_below(r)] for r in references]
    disk = tmpfs(space_for(*sizes[0]) + sum(sizes[1]) // 2)
    out = disk / "extracted"

    expect_disk_full(capsys, ["extract", *zips, out], out / references[1].name)
    for path in files_below(references[0]):
        survivors.expect(out / path.relative_to(tmp_path / "reference"), like=path)
    assert survivors.lost() == []
    assert [p.name for p in out.iterdir()] == [references[0].name]  # no half product, no temporary

    resize_tmpfs(disk, 4 * sum(map(sum, sizes)))
    assert main(["extract", *map(str, zips), str(out)]) == 0
    for path in files_below(references[1]):
        survivors.expect(out / path.relative_to(tmp_path / "reference"), like=path)
    assert survivors.lost() == [] and leftovers(out) == []


def test_disk_full_in_a_worker_process_is_named_too(sample_products, tmp_path, tmpfs, capsys):
    """The error crosses the process boundary of ``--workers`` intact (it must unpickle)."""
    reference = convert_product(sample_products[0], tmp_path / "reference")
    out = tmpfs(reference.stat().st_size // 2) / "hdf"
    final = out / reference.relative_to(tmp_path / "reference")
    expect_disk_full(capsys, ["convert-hdf", "--workers", 2, sample_products[0], out], final)
    assert files_below(out) == [] and leftovers(out) == []
