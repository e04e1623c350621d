"""Hostile values inside well-formed files, given to ``train`` and ``inference`` (issue 13, the ML stages).

Real HDF5 products made here (``tests/ml_data.py``) with one value made hostile each, and tiny real Keras
models of the wrong shape. Every case must end with exit status 2, one ``error: <file>: <problem>`` line and
no traceback, nothing written outside OUT, and bounded memory: the cases that declare huge sizes run the CLI
in a child process under an address-space limit.
"""

from __future__ import annotations

import fcntl
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from ml_data import product_name, write_declared_product, write_product

from cloud_tasks.cli import main
from cloud_tasks.layout import MaskFiles, ModelFiles
from cloud_tasks.ml.train import _history_rows, _repair_history
from cloud_tasks.slstr import MAX_COLUMNS, MAX_ROWS

from .conftest import CLI, REPO, files_below
from .test_hostile_io import read_only_folder  # noqa: F401 (a fixture: a folder not even root writes into)

# TensorFlow maps ~1.6 GiB of address space once imported (measured: VmPeak of an import and a small
# prediction); a 20000 x 20000 product would need ~17 GB read, so this limit catches any unchecked read.
LIMIT_AS_BYTES = 3 * 2**30
# Small training settings the 128 x 128 products of ml_data allow.
TRAIN_ARGS = ("--patch-size=64", "--clip-offset=8", "--batch-size=4")


# ---------------------------------------------------------------- helpers


def run_limited(*argv: str | Path) -> subprocess.CompletedProcess:
    """``python -m cloud_tasks ARGV`` in a child process whose address space is limited to ``LIMIT_AS_BYTES``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS_BYTES, LIMIT_AS_BYTES))

    command = [*CLI, *map(str, argv)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=limit)


def assert_refused(returncode: int, stderr: str, path: Path, problem: str) -> None:
    """Exit status 2, no traceback, and exactly one error line: ``error: <path>: <problem>`` (a regex)."""
    assert "Traceback" not in stderr, stderr
    assert returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert re.fullmatch(f"error: {re.escape(str(path))}: {problem}", errors[0]), errors[0]


def outside(root: Path, out: Path) -> dict[Path, int]:
    """Every file below ``root`` but outside ``out``, with its modification time."""
    return {p: p.stat().st_mtime_ns for p in files_below(root) if out not in p.parents}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A small real U-Net of this package (untrained: the plumbing is what is tested)."""
    import keras

    from cloud_tasks.ml.model import build_unet, save_model

    keras.utils.set_random_seed(0)
    return save_model(build_unet(filters=(4, 8, 16), bottleneck=16), tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture
def sandbox(tmp_path) -> Path:
    """A folder holding the inputs (``in/``) and, two levels down, OUT (``a/b/out``): a ``../../x`` from OUT
    stays in the sandbox, where the test can see it."""
    (tmp_path / "in").mkdir()
    return tmp_path


def out_of(sandbox: Path) -> Path:
    return sandbox / "a" / "b" / "out"


# ---------------------------------------------------------------- hostile values, each command


def set_attribute(name: str, value) -> Callable[[h5py.File], None]:
    return lambda f: f.attrs.__setitem__(name, value)


def replace_dataset(name: str, make: Callable[[h5py.File], object]) -> Callable[[h5py.File], None]:
    """Put ``make(f)`` (an array or a link) in place of the dataset ``name``."""

    def damage(f: h5py.File) -> None:
        replacement = make(f)
        del f[name]
        f[name] = replacement

    return damage


def group_in_place_of(name: str) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        del f[name]
        f.create_group(name)

    return damage


def stored_elsewhere(name: str) -> Callable[[h5py.File], None]:
    """The dataset's raw data kept in another file (HDF5 external storage): a reader would read that file."""

    def damage(f: h5py.File) -> None:
        data = f[name][()]
        other = Path(f.filename).with_suffix(".raw")
        other.write_bytes(data.tobytes())
        del f[name]
        f.create_dataset(name, shape=data.shape, dtype=data.dtype, external=[(str(other), 0, data.nbytes)])

    return damage


def linked_elsewhere(name: str) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        other = Path(f.filename).with_suffix(".other.h5")
        with h5py.File(other, "w") as g:
            g[name] = f[name][()]
        del f[name]
        f[name] = h5py.ExternalLink(str(other), name)

    return damage


HOSTILE = {
    "product_name climbs out of OUT": (
        set_attribute("product_name", "../../x"),
        r"product_name '\.\./\.\./x' is not an SLSTR L1 RBT product name",
    ),
    "product_name an absolute path": (
        lambda f: f.attrs.__setitem__("product_name", str(Path(f.filename).parent / "x")),
        r"product_name '/.*/x' is not an SLSTR L1 RBT product name",
    ),
    "product_name a product in a folder": (
        set_attribute("product_name", f"sub/{product_name(0)}"),
        r"product_name 'sub/S3A_SL_1_RBT_.*' is not an SLSTR L1 RBT product name",
    ),
    "product_name a number": (
        set_attribute("product_name", 5),
        r"product_name '5' is not an SLSTR L1 RBT product name",
    ),
    "grid_shape text": (set_attribute("grid_shape", "big"), r"grid_shape attribute 'big' is not two integer sizes"),
    "grid_shape of three": (
        set_attribute("grid_shape", np.array([128, 128, 1])),
        r"grid_shape attribute '\[128, 128, 1\]' is not two integer sizes",
    ),
    "grid_shape floats": (
        set_attribute("grid_shape", np.array([128.0, 128.0])),
        r"grid_shape attribute '\[128\.0, 128\.0\]' is not two integer sizes",
    ),
    "grid_shape missing": (lambda f: f.attrs.__delitem__("grid_shape"), r"grid_shape attribute 'None' is not two .*"),
    "grid_shape negative": (
        set_attribute("grid_shape", np.array([-128, 128])),
        r"empty product: grid_shape -128 x 128 holds no pixel",
    ),
    "grid_shape huge": (
        set_attribute("grid_shape", np.array([2**62, 128])),
        rf"grid_shape {2**62} x 128 exceeds an SLSTR product's 1 km grid \(at most .* rows, .* columns, .* pixels\)",
    ),
    "grid_shape smaller than the data": (
        set_attribute("grid_shape", np.array([64, 64])),
        r"dataset refs has shape \(128, 128, 6\), not \(64, 64, 6\) \(grid_shape\)",
    ),
    "refs one channel short": (
        replace_dataset("refs", lambda f: f["refs"][..., :5]),
        r"dataset refs has shape \(128, 128, 5\), not \(128, 128, 6\) \(grid_shape\)",
    ),
    "refs float64": (
        replace_dataset("refs", lambda f: f["refs"][()].astype(np.float64)),
        r"dataset refs has dtype float64, not float32",
    ),
    "bts integers": (
        replace_dataset("bts", lambda f: np.nan_to_num(f["bts"][()]).astype(np.int32)),
        r"dataset bts has dtype int32, not float32",
    ),
    "label floats": (
        replace_dataset("bayes", lambda f: f["bayes"][()].astype(np.float32)),
        r"dataset bayes has dtype float32, not integer",
    ),
    "bts missing": (lambda f: f.__delitem__("bts"), r"not a converted product: missing dataset\(s\) bts"),
    "refs a group": (group_in_place_of("refs"), r"refs is not a dataset stored in this file"),
    "refs a soft link": (replace_dataset("refs", lambda f: h5py.SoftLink("/bts")), r"refs is not a dataset .*"),
    "refs an external link": (linked_elsewhere("refs"), r"refs is not a dataset stored in this file"),
    "refs stored in another file": (stored_elsewhere("refs"), r"dataset refs keeps its data in other files"),
}


def hostile_product(folder: Path, damage: Callable[[h5py.File], None]) -> Path:
    path = write_product(folder, 0)
    with h5py.File(path, "a") as f:
        damage(f)
    return path


@pytest.mark.parametrize("command", ["inference", "train"])
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_value_is_one_clear_error(case, command, sandbox, model, survivors, capsys):
    damage, problem = HOSTILE[case]
    product, out = hostile_product(sandbox / "in", damage), out_of(sandbox)
    before = outside(sandbox, out)
    survivors.guard(sandbox / "in")
    argv = ["inference", model, product, out] if command == "inference" else ["train", product, out, *TRAIN_ARGS]
    returncode = main(list(map(str, argv)))
    assert_refused(returncode, capsys.readouterr().err, product, problem)
    assert outside(sandbox, out) == before, "nothing written outside OUT"
    assert not survivors.lost(), "the input is only read"
    assert not MaskFiles(out).masks() and not ModelFiles(out).model.exists()
    if command == "train":
        assert not out.exists(), "OUT is made once the inputs are known good"


# Hostile geolocation: only inference reads it (training needs no latitude or longitude).
HOSTILE_GEOLOCATION = {
    "no latitude/longitude (an older conversion)": (
        lambda f: (f.__delitem__("latitude"), f.__delitem__("longitude")),
        r"has no latitude/longitude \(converted without them\): convert it again \(--force\)",
    ),
    "latitude missing": (
        lambda f: f.__delitem__("latitude"),
        r"not a converted product: missing dataset\(s\) latitude",
    ),
    "longitude float32": (
        replace_dataset("longitude", lambda f: f["longitude"][()].astype(np.float32)),
        r"dataset longitude has dtype float32, not float64",
    ),
    "latitude of another grid": (
        replace_dataset("latitude", lambda f: f["latitude"][:64]),
        r"dataset latitude has shape \(64, 128\), not \(128, 128\) \(grid_shape\)",
    ),
    "latitude an external link": (linked_elsewhere("latitude"), r"latitude is not a dataset stored in this file"),
    "longitude stored in another file": (stored_elsewhere("longitude"), r"dataset longitude keeps its data in .*"),
    "no latitude known": (
        replace_dataset("latitude", lambda f: np.full(f["latitude"].shape, np.nan)),
        r"no usable geolocation: .*",
    ),
    "sensing_start not a time": (
        set_attribute("sensing_start", "yesterday"),
        r"sensing_start 'yesterday' is not an ISO 8601 time",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_GEOLOCATION)
def test_hostile_geolocation_is_one_clear_error(case, sandbox, model, survivors, capsys):
    damage, problem = HOSTILE_GEOLOCATION[case]
    product, out = hostile_product(sandbox / "in", damage), out_of(sandbox)
    survivors.guard(sandbox / "in")
    returncode = main(["inference", str(model), str(product), str(out)])
    assert_refused(returncode, capsys.readouterr().err, product, problem)
    assert not survivors.lost(), "the input is only read"
    assert not [p for p in out.iterdir()], "no mask, no quicklook"


# ---------------------------------------------------------------- declared sizes, bounded memory


def test_the_memory_limit_catches_an_unchecked_read(sandbox):
    """Control: reading the declared datasets without the check does not fit under the limit."""
    product = write_declared_product(sandbox / "in", shape=(20000, 20000))
    code = f"import h5py; h5py.File({str(product)!r})['refs'][()]"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS_BYTES, LIMIT_AS_BYTES))

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit)
    assert result.returncode != 0 and "MemoryError" in result.stderr


DECLARED = {
    "20000 x 20000 declared": ({"shape": (20000, 20000)}, r"grid_shape 20000 x 20000 exceeds an SLSTR .*"),
    "each side within bounds, too many pixels": (
        {"shape": (MAX_ROWS, MAX_COLUMNS)},
        rf"grid_shape {MAX_ROWS} x {MAX_COLUMNS} exceeds an SLSTR product's 1 km grid .*",
    ),
    "20000 x 20000 under a 128 x 128 grid_shape": (
        {"shape": (20000, 20000), "grid_shape": (128, 128)},
        r"dataset refs has shape \(20000, 20000, 6\), not \(128, 128, 6\) \(grid_shape\)",
    ),
    "empty product": ({"shape": (0, 0)}, r"empty product: grid_shape 0 x 0 holds no pixel"),
}


@pytest.mark.parametrize("command", ["inference", "train"])
@pytest.mark.parametrize("case", DECLARED)
def test_declared_size_is_refused_before_reading(case, command, sandbox, model):
    """A 7 KB file declaring 20000 x 20000 pixels: refused from its header, in a child under the memory limit."""
    declared, problem = DECLARED[case]
    product, out = write_declared_product(sandbox / "in", **declared), out_of(sandbox)
    assert product.stat().st_size < 64 * 1024
    before = outside(sandbox, out)
    argv = ["inference", model, product, out] if command == "inference" else ["train", product, out, *TRAIN_ARGS]
    result = run_limited(*argv)
    assert_refused(result.returncode, result.stderr, product, problem)
    assert outside(sandbox, out) == before


def test_escaping_product_name_in_a_child_writes_nothing_outside_out(sandbox, model):
    product, out = hostile_product(sandbox / "in", set_attribute("product_name", "../../x")), out_of(sandbox)
    good = write_product(sandbox / "in", 1)
    before = outside(sandbox, out)
    result = run_limited("inference", model, product, good, out)
    assert_refused(result.returncode, result.stderr, product, r"product_name '\.\./\.\./x' is not an SLSTR .*")
    assert outside(sandbox, out) == before
    assert [p.stem for p in MaskFiles(out).masks()] == [good.stem], "the good product of the batch is masked"


# ---------------------------------------------------------------- models of the wrong shape


def _save(model, folder: Path, name: str) -> Path:
    from cloud_tasks.ml.model import save_model

    return save_model(model, folder / f"{name}.keras")


def wrong_models(folder: Path) -> dict[str, tuple[Path, str]]:
    """Tiny real Keras models that are not cloud-mask U-Nets, with the problem each must be refused for."""
    import keras
    from keras import layers

    def image(channels: int = 9, side: int | None = None):
        return keras.Input((side, side, channels))

    x = image()
    scalar = keras.Model(x, layers.Dense(1)(layers.GlobalAveragePooling2D()(x)))
    x = image()
    strided = keras.Model(x, layers.Conv2D(1, 3, strides=2, padding="same", activation="sigmoid")(x))
    x = image(channels=3)
    three_channels = keras.Model(x, layers.Conv2D(1, 1, activation="sigmoid")(x))
    x = image(side=64)
    fixed_size = keras.Model(x, layers.Conv2D(1, 1, activation="sigmoid")(x))
    return {
        "scalar output": (_save(scalar, folder, "scalar"), r"model maps a \(1, 32, 32, 9\) image to \(1, 1\), .*"),
        "strided output": (
            _save(strided, folder, "strided"),
            r"model maps a \(1, 32, 32, 9\) image to \(1, 16, 16, 1\), .*",
        ),
        "3 input channels": (_save(three_channels, folder, "three"), r"model takes 3 channels, not 9"),
        "fixed input size": (_save(fixed_size, folder, "fixed"), r"model input shape \(None, 64, 64, 9\): .*"),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return wrong_models(tmp_path_factory.mktemp("wrong-models"))


@pytest.mark.parametrize("case", ["scalar output", "strided output", "3 input channels", "fixed input size"])
def test_model_of_the_wrong_shape_is_refused(case, models, sandbox):
    path, problem = models[case]
    product, out = write_product(sandbox / "in", 0), out_of(sandbox)
    before = outside(sandbox, out)
    result = run_limited("inference", path, product, out)
    assert_refused(result.returncode, result.stderr, path, problem)
    assert outside(sandbox, out) == before and not out.exists(), "OUT is made once the model is known good"


# ---------------------------------------------------------------- bad output locations


@pytest.mark.parametrize("command", ["inference", "train"])
@pytest.mark.parametrize("where", ["an existing file", "a read-only folder", "below a read-only folder"])
def test_bad_out_is_one_clear_error(command, where, sandbox, model, request):
    product = write_product(sandbox / "in", 0)
    if where == "an existing file":
        out, problem = sandbox / "in" / "out.txt", "output folder is an existing file, not a folder"
        out.write_text("keep me")
    elif where == "a read-only folder":
        out, problem = request.getfixturevalue("read_only_folder"), "output folder is not writable"
    else:
        out, problem = request.getfixturevalue("read_only_folder") / "out", "cannot create the output folder: .*"
    before = outside(sandbox, out)
    argv = ["inference", model, product, out] if command == "inference" else ["train", product, out, *TRAIN_ARGS]
    result = run_limited(*argv)
    assert_refused(result.returncode, result.stderr, out, problem)
    assert outside(sandbox, out) == before


# ---------------------------------------------------------------- concurrent training, damaged history


def test_second_training_run_into_the_same_out_refuses_at_once(sandbox):
    """Another process holds OUT's lock (as a running ``train`` does): the second run refuses, touching nothing."""
    product, out = write_product(sandbox / "in", 0), out_of(sandbox)
    files = ModelFiles(out)
    out.mkdir(parents=True)
    with files.lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        before = {p: p.stat().st_mtime_ns for p in files_below(sandbox)}
        result = run_limited("train", product, out, *TRAIN_ARGS)
    assert_refused(result.returncode, result.stderr, out, "another training run holds it")
    assert {p: p.stat().st_mtime_ns for p in files_below(sandbox)} == before


def test_damaged_params_json_is_one_clear_error(sandbox, capsys):
    product, out = write_product(sandbox / "in", 0), out_of(sandbox)
    out.mkdir(parents=True)
    ModelFiles(out).params.write_text('{"parameters": {"epochs": "many", "products": []}}')
    returncode = main(["train", str(product), str(out), *TRAIN_ARGS])
    problem = r"not the parameters of a training run \(epochs must be an integer, not 'many'\): delete OUT to retrain"
    assert_refused(returncode, capsys.readouterr().err, ModelFiles(out).params, problem)


DAMAGED_HISTORY = """epoch,accuracy,loss
0,0.5,0.9
1,0.6,0.8
epoch,accuracy,loss
0,0.55,0.85
1,0.65,0.75
2,0.7,0.7
\x00\x00garbage,,
3,0.7
1,not a number,0.7
²,0.1,0.1
-1,0.1,0.1
"""


def test_damaged_history_keeps_one_valid_row_per_epoch_below_the_checkpoint(tmp_path):
    path = ModelFiles(tmp_path).history_csv
    path.write_text(DAMAGED_HISTORY)
    _repair_history(path, 2)
    assert path.read_text() == "epoch,accuracy,loss\n0,0.55,0.85\n1,0.65,0.75\n"
    header, rows = _history_rows(path)
    assert header == ["epoch", "accuracy", "loss"] and sorted(rows) == [0, 1]


def test_history_without_a_header_is_started_again(tmp_path):
    path = ModelFiles(tmp_path).history_csv
    path.write_bytes(b"\xff\xfe garbage\n0,1,2\n")
    _repair_history(path, 1)
    assert not path.exists()


@pytest.mark.slow
def test_resume_over_a_damaged_history_and_a_concurrent_run(sandbox):
    """Two runs at once (the second refuses while the first trains), then a resume over a history.csv damaged
    as concurrent writers left it: one row per epoch in the end."""
    inputs, out = sandbox / "in", out_of(sandbox)
    for index in range(2):
        write_product(inputs, index)
    files = ModelFiles(out)
    first = subprocess.Popen([*CLI, "train", inputs, out, "--epochs=2", *TRAIN_ARGS], cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not files.params.exists():  # the first run holds the lock from before it writes params.json
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.05)
        second = run_limited("train", inputs, out, "--epochs=2", *TRAIN_ARGS)
        assert_refused(second.returncode, second.stderr, out, "another training run holds it")
    finally:
        _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr

    files.model.unlink()
    last = files.history_csv.read_text().splitlines()[-1]
    with files.history_csv.open("a") as f:  # what two writers and a kill leave behind
        f.write(f"epoch,accuracy,loss\n{last}\n0,0.5\ngarbage\n5{last[1:]}\n")
    result = run_limited("train", inputs, out, "--epochs=3", *TRAIN_ARGS)
    assert result.returncode == 0, result.stderr
    _, rows = _history_rows(files.history_csv)
    lines = files.history_csv.read_text().splitlines()
    assert sorted(rows) == [0, 1, 2] and len(lines) == 4 and lines[0].startswith("epoch,")
    assert files.model.is_file()
