"""Fuzzing convert-hdf: a small generated product mutated at random (seeded), a few hundred cases.

Each case damages one file of the product (an attribute set to an absurd value or deleted, values
overwritten, dimensions re-declared, a variable renamed or retyped, bytes flipped) and converts it. For
every case: either the product converts, or a ``CloudTasksError`` names a file of the product; never another
exception, never a ``MemoryError`` (all cases run in one child process limited to 2 GB of address space), and
nothing written outside OUT (the working folder, TMPDIR and the product stay as they were). Every
``CLI_EVERY``-th case goes through the CLI's ``main()``: exit status 0, or 2 with one ``error: <file>: `` line.

Run by hand: ``python tests/faults/test_fuzz_convert.py PRODUCT.SEN3 WORKDIR SEED CASES`` prints one JSON
line per case (a case is reproduced by its seed and index alone).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

SEED, CASES, CLI_EVERY = 20261204, 300, 10
MEMORY_LIMIT = 2 * 2**30
FILES = ("flags_in.nc", "geometry_tn.nc", *(f"S{n}_radiance_an.nc" for n in range(1, 7)))
FILES += (*(f"S{n}_quality_an.nc" for n in range(1, 7)), *(f"S{n}_BT_in.nc" for n in (7, 8, 9)))
USED_ATTRIBUTES = ("scale_factor", "add_offset", "_FillValue", "flag_masks", "flag_meanings")
GLOBAL_ATTRIBUTES = ("track_offset", "start_offset", "resolution", "start_time", "stop_time")
USED_VARIABLES = ("_radiance_an", "_BT_in", "_solar_irradiance_an", "solar_zenith_tn", "confidence_in", "bayes_in")
TEXTS = ("abc", "", "[ 0 1000 ]", "[ 1000 ]", "[ -5 1e309 ]", "[ nan 1000 ]", "[ 1 2 3 ]", "1000", "day day", "é" * 9)


# ---------------------------------------------------------------- mutations (the files stay well formed)


def hostile_value(rng: np.random.Generator):
    """An absurd attribute value: text, non-finite, huge, tiny, negative, of any type, arrays of any length."""
    choices = [
        lambda: TEXTS[rng.integers(len(TEXTS))],
        lambda: "x" * int(rng.integers(5000, 20000)),
        lambda: [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300, -1e300, 1e-300][rng.integers(8)],
        lambda: np.array(rng.normal() * 10.0 ** rng.integers(-40, 40)),
        lambda: np.array(rng.integers(-(2**62), 2**62), np.int64),
        lambda: np.array(rng.integers(0, 256), np.uint8),
        lambda: rng.integers(-(2**31), 2**31, int(rng.integers(1, 40))).astype(np.int32),
        lambda: np.array([1, 2, 4, 8, 16, 32, 64, 256, 65536][: rng.integers(1, 10)], np.int64),
        lambda: np.zeros(int(rng.integers(1, 20)), np.uint16),
        lambda: np.full(16, -1, np.int16),
        lambda: rng.normal(size=int(rng.integers(1, 2000))),
    ]
    return choices[rng.integers(len(choices))]()


def pick_variable(ds, rng) -> str:
    """A variable of the file, mostly one the conversion reads."""
    names = [name for name in ds.variables if ds[name].ndim >= 1]
    used = [name for name in names if name.endswith(USED_VARIABLES) or name == "cloud_in"]
    return str(rng.choice(used if used and rng.random() < 0.8 else names))


def set_attribute(ds, rng) -> str:
    if rng.random() < 0.35:
        owner, where = ds, "global"
        name = str(rng.choice(GLOBAL_ATTRIBUTES if rng.random() < 0.7 else ds.ncattrs()))
    else:
        where = pick_variable(ds, rng)
        owner = ds[where]
        name = str(rng.choice(USED_ATTRIBUTES if rng.random() < 0.7 or not owner.ncattrs() else owner.ncattrs()))
    value = hostile_value(rng)
    if rng.random() < 0.15 and name in owner.ncattrs():
        owner.delncattr(name)
        return f"delete {where}:{name}"
    owner.setncattr(name, value)
    return f"set {where}:{name} = {str(value)[:60]!r}"


def set_values(ds, rng) -> str:
    name = pick_variable(ds, rng)
    var = ds[name]
    var.set_auto_maskandscale(False)
    dtype = var.dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iuf":
        return f"values of {name}: not numeric, left"
    window = tuple(slice(int(rng.integers(0, n)) if n else 0, None) for n in var.shape)
    shape = tuple(len(range(*s.indices(n))) for s, n in zip(window, var.shape, strict=True))
    if dtype.kind == "f":
        pool = np.array([np.nan, np.inf, -np.inf, 0.0, -1e300, 1e300, 91.0, -5.0, 181.0], dtype=np.float64)
        values = rng.choice(pool, size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=np.int64).astype(dtype)
        if rng.random() < 0.5:
            values[...] = info.min if rng.random() < 0.5 else info.max
    var[window] = values
    return f"values of {name}[{', '.join(f'{s.start}:' for s in window)}]"


def rewrite(path: Path, rng: np.random.Generator) -> str:
    """Re-declare a dimension's size, rename a variable or change its dtype (the file rewritten whole)."""
    import netCDF4

    original = path.rename(path.with_suffix(".orig"))
    with netCDF4.Dataset(original) as src:
        dims = {name: len(dim) for name, dim in src.dimensions.items()}
        dim = str(rng.choice(list(dims)))
        sizes = dict(dims)
        sizes[dim] = int(rng.choice([0, 1, 2, dims[dim] - 1, dims[dim] + 1, 2 * dims[dim], 10**6, 10**9]))
        kind = rng.choice(["dimension", "rename", "dtype"])
        target = str(rng.choice(list(src.variables)))
        dtype = np.dtype(str(rng.choice(["int8", "uint8", "int16", "uint16", "int32", "float32", "float64"])))
        with netCDF4.Dataset(path, "w") as dst:
            dst.setncatts({key: src.getncattr(key) for key in src.ncattrs()})
            for name, size in (sizes if kind == "dimension" else dims).items():
                dst.createDimension(name, size)
            for name, var in src.variables.items():
                copy_variable(dst, var, name, target, kind, dtype)
    original.unlink()
    return {
        "dimension": f"dimension {dim} = {sizes[dim]}",
        "rename": f"rename {target}",
        "dtype": f"{target} as {dtype}",
    }[kind]


def copy_variable(dst, var, name: str, target: str, kind: str, dtype: np.dtype) -> None:
    var.set_auto_maskandscale(False)
    attrs = {key: var.getncattr(key) for key in var.ncattrs()}
    fill = attrs.pop("_FillValue", None)
    new_dtype = dtype if kind == "dtype" and name == target else var.dtype
    if new_dtype is not var.dtype and fill is not None:
        fill = None
    new_name = f"{name}_renamed" if kind == "rename" and name == target else name
    shape = [len(dst.dimensions[d]) for d in var.dimensions]
    chunks = [min(max(n, 1), 512) for n in shape] if shape else None
    out = dst.createVariable(new_name, new_dtype, var.dimensions, zlib=True, chunksizes=chunks, fill_value=fill)
    out.set_auto_maskandscale(False)
    out.setncatts(attrs)
    corner = tuple(slice(0, min(a, b)) for a, b in zip(shape, var.shape, strict=True))
    if all(s.stop > 0 for s in corner):
        with np.errstate(all="ignore"):
            out[corner] = np.asarray(var[corner]).astype(new_dtype)


def flip_bytes(path: Path, rng: np.random.Generator) -> str:
    data = bytearray(path.read_bytes())
    start = int(rng.integers(0, len(data) - 64))
    data[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return f"64 random bytes at {start}"


def set_fill_value(path: Path, rng: np.random.Generator) -> str:
    """``_FillValue`` rewritten through HDF5 (netCDF4 refuses to change it once the variable exists)."""
    import h5py

    with h5py.File(path, "r+") as f:
        name = str(rng.choice([n for n in f if isinstance(f[n], h5py.Dataset) and "_FillValue" in f[n].attrs]))
        value = hostile_value(rng)
        f[name].attrs["_FillValue"] = value
    return f"set {name}:_FillValue = {str(value)[:60]!r} (HDF5)"


MUTATIONS = {  # kind -> (weight, mutation)
    "attribute": (0.55, lambda ds, path, rng: set_attribute(ds, rng)),
    "values": (0.2, lambda ds, path, rng: set_values(ds, rng)),
    "rewrite": (0.15, lambda ds, path, rng: rewrite(path, rng)),
    "fill value": (0.05, lambda ds, path, rng: set_fill_value(path, rng)),
    "bytes": (0.05, lambda ds, path, rng: flip_bytes(path, rng)),
}


def mutate(path: Path, pristine: Path, rng: np.random.Generator) -> str:
    """Apply one random mutation (another one if netCDF4 or HDF5 refuses to write it)."""
    import netCDF4

    kinds, weights = list(MUTATIONS), [weight for weight, _ in MUTATIONS.values()]
    for _ in range(10):
        kind = str(rng.choice(kinds, p=weights))
        try:
            if kind in ("attribute", "values"):
                with netCDF4.Dataset(path, "a") as ds:
                    return MUTATIONS[kind][1](ds, path, rng)
            return MUTATIONS[kind][1](None, path, rng)
        except Exception:  # a mutation the libraries refuse to write: draw another
            for leftover in (path, path.with_suffix(".orig")):
                leftover.unlink(missing_ok=True)
            shutil.copyfile(pristine, path)
    raise AssertionError(f"no mutation of {path.name} could be written")


# ---------------------------------------------------------------- one case


def state(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def convert_case(product: Path, out: Path, through_cli: bool) -> tuple[str, str]:
    """(outcome, detail): 'converted', 'refused' (a CloudTasksError naming a file of the product) or 'bug'."""
    from cloud_tasks.cli import main
    from cloud_tasks.convert import convert_product
    from cloud_tasks.errors import CloudTasksError

    if through_cli:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = main(["convert-hdf", str(product), str(out)])
        lines = [line for line in stderr.getvalue().splitlines() if line.startswith("error: ")]
        if status == 0 and not lines:
            return "converted", "cli"
        if status == 2 and len(lines) == 1 and lines[0].startswith(f"error: {product}"):
            return "refused", lines[0].removeprefix(f"error: {product}")
        return "bug", f"cli status {status}: {stderr.getvalue()[-2000:]}"
    try:
        convert_product(product, out)
    except CloudTasksError as exc:
        if str(exc).startswith(str(product)):
            return "refused", str(exc).removeprefix(str(product))
        return "bug", f"error not naming a file of the product: {exc}"
    except BaseException as exc:  # any other exception is what the fuzzing looks for
        return "bug", "".join(traceback.format_exception(exc))[-2000:]
    return "converted", "api"


def run_case(source: Path, work: Path, seed: int, index: int) -> dict:
    rng = np.random.default_rng([seed, index])
    product, out = work / "product" / source.name, work / "out"
    name = str(rng.choice(FILES))
    shutil.copyfile(source / name, product / name)  # the file pristine again, then damaged
    mutation = f"{name}: {mutate(product / name, source / name, rng)}"
    before, around = state(product), state(work / "cwd") | state(work / "tmp")
    outcome, detail = convert_case(product, out, through_cli=index % CLI_EVERY == 0)
    if state(product) != before or state(work / "cwd") | state(work / "tmp") != around:
        outcome, detail = "bug", "files written outside OUT"
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    if (outcome == "converted") != (len(written) == 1) or any(p.name.startswith(".") for p in written):
        outcome, detail = "bug", f"outputs {written} after {outcome}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copyfile(source / name, product / name)
    return {"case": index, "mutation": mutation, "outcome": outcome, "detail": " ".join(detail.split())[:300]}


def fuzz(source: Path, work: Path, seed: int, cases: int) -> None:
    """Run in the child process: every case, one JSON line each."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    for folder in ("cwd", "tmp", "product"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, work / "product" / source.name, dirs_exist_ok=True)
    os.chdir(work / "cwd")
    for index in range(cases):
        print(json.dumps(run_case(source, work, seed, index)), flush=True)


# ---------------------------------------------------------------- the test


def test_fuzzed_products_convert_or_fail_with_an_error_naming_a_file(sample_products, tmp_path):
    from test_convert import day_product

    source, work = day_product(sample_products), tmp_path / "fuzz"
    env = dict(os.environ, TMPDIR=str(work / "tmp"))
    (work / "tmp").mkdir(parents=True)
    child = subprocess.run(
        [sys.executable, __file__, str(source), str(work), str(SEED), str(CASES)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    results = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    bugs = [r for r in results if r["outcome"] == "bug"]
    outcomes = Counter(r["outcome"] for r in results)
    refusals = Counter(r["detail"].split(": ", 1)[-1][:45] for r in results if r["outcome"] == "refused")
    print(f"\nfuzz: {len(results)} cases (seed {SEED}, {len(results[::CLI_EVERY])} through the CLI): {dict(outcomes)}")
    print("fuzz: most frequent refusals:", refusals.most_common(6))
    assert child.returncode == 0 and len(results) == CASES, child.stderr[-3000:]
    assert bugs == [], json.dumps(bugs[:5], indent=1)
    assert min(outcomes["refused"], outcomes["converted"]) > CASES // 10, outcomes  # both ends exercised


if __name__ == "__main__":
    fuzz(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
