"""The arithmetic and the product cloning behind ``benchmarks.scale`` (its timings are never asserted)."""

import datetime as dt
import math
import zipfile

import pytest

from benchmarks.scale import clone_product, concurrency, growth, growth_exponent, idle_split, share
from cloud_tasks.naming import ProductName

T0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def at(*seconds: float) -> tuple[dt.datetime, ...]:
    return tuple(T0 + dt.timedelta(seconds=s) for s in seconds)


def test_idle_split_separates_the_wait_before_between_and_after_the_tasks():
    # run from 0 to 30; tasks 2-10 and 8-12 (overlapping), 15-20: idle 2 before, 3 between, 10 after
    split = idle_split([at(15, 20), at(2, 10), at(8, 12)], *at(0, 30))
    assert split == {"before": 2.0, "between": 3.0, "after": 10.0}


def test_idle_split_of_a_run_without_tasks_is_all_before():
    assert idle_split([], *at(0, 7)) == {"before": 7.0, "between": 0.0, "after": 0.0}


def test_concurrency_counts_the_seconds_at_each_number_of_running_tasks():
    # run 0-20; tasks 2-10, 4-6, 8-25 (clipped at 20): 0 running 2 s, 1: 2+2+10, 2: 2+2, 3: none
    seconds = concurrency([at(2, 10), at(4, 6), at(8, 25)], *at(0, 20))
    assert seconds == {0: 2.0, 1: 14.0, 2: 4.0}
    assert sum(seconds.values()) == 20.0
    assert concurrency([], *at(0, 5)) == {0: 5.0}


def test_growth_exponent_is_one_for_linear_and_two_for_quadratic_growth():
    sizes = [100, 500, 2000]
    assert growth_exponent(sizes, [3 * n for n in sizes]) == pytest.approx(1.0)
    assert growth_exponent(sizes, [0.01 * n * n for n in sizes]) == pytest.approx(2.0)
    assert growth_exponent(sizes, [5.0, 5.0, 5.0]) == pytest.approx(0.0)


def test_growth_exponent_fits_the_slope_of_noisy_points():
    # log-log points (0, 0), (1, 1.2), (2, 1.8): least-squares slope 0.9
    sizes = [1, math.e, math.e**2]
    assert growth_exponent(sizes, [1, math.exp(1.2), math.exp(1.8)]) == pytest.approx(0.9)


def test_growth_exponent_needs_two_sizes_and_positive_values():
    assert growth_exponent([100], [4.0]) is None
    assert growth_exponent([100, 100], [4.0, 5.0]) is None
    assert growth_exponent([100, 500], [4.0, 0.0]) is None


def test_share_and_growth():
    assert share(5, 50) == 10.0
    assert share(5, 0) == 0.0
    assert growth({"xcom": 2, "log": 7}, {"xcom": 10, "log": 7, "job": 1}) == {"xcom": 8, "log": 0, "job": 1}


def test_a_cloned_product_is_a_valid_product_under_its_new_name(tmp_path):
    from cloud_tasks.extract import extract_product
    from cloud_tasks.sample import make_sample_archive

    (source,) = make_sample_archive(tmp_path / "pool", "2024-06-01", 1, grid="small", seed=1)
    old = ProductName.parse(source)
    stem = old.stem.replace("20240601T", "20240515T")  # same product, sensed on another day
    new = ProductName.parse(stem)
    clone = clone_product(source, new, tmp_path / "archive")

    assert clone == new.archive_path(tmp_path / "archive")
    folder = extract_product(clone, tmp_path / "extracted")
    assert folder.name == new.sen3
    with zipfile.ZipFile(source) as original:
        members = sorted(info.filename.removeprefix(old.sen3) for info in original.infolist())
        manifest = original.read(f"{old.sen3}/xfdumanifest.xml").decode()
    assert sorted("/" + p.relative_to(folder).as_posix() for p in folder.rglob("*")) == sorted(
        m for m in members if m != "/"
    )
    cloned_manifest = (folder / "xfdumanifest.xml").read_text()
    assert new.stem in cloned_manifest and old.stem not in cloned_manifest
    assert cloned_manifest == manifest.replace(old.stem, new.stem)
