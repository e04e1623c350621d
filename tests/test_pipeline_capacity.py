"""The input-pipeline capacity benchmark, run end to end on two small products (no figure is asserted)."""

from __future__ import annotations

import json

from ml_data import write_products

from benchmarks import pipeline_capacity


def test_capacity_benchmark_measures_every_pipeline(tmp_path, capsys):
    write_products(tmp_path / "hdf", 2, shape=(512, 512))  # 4 patches of 256 px each
    out = tmp_path / "capacity.json"
    arguments = ["--hdf", str(tmp_path / "hdf"), "--batch-sizes", "3", "--repeats", "2", "--epochs-per-repeat", "1"]
    pipeline_capacity.main([*arguments, "--json", str(out)])
    results = json.loads(out.read_text())
    assert (results["products"], results["patches"]) == (2, 8)
    names = [row["pipeline"] for row in results["rows"]]
    assert names[:4] == [
        "HDF5, first epoch (fills the cache)",
        "cached",
        "cached, as numpy",
        "streamed from HDF5 (no cache)",
    ]
    assert len(names) == 6 and all(name.startswith("what-if") for name in names[4:])
    for row in results["rows"]:
        assert row["batch"] == 3 and row["patches_per_s_min"] <= row["patches_per_s"] <= row["patches_per_s_max"]
    table = capsys.readouterr().out
    assert "| cached | 3 |" in table and "2 products, 8 patches of 256 px" in table
