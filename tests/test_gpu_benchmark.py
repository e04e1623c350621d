"""The GPU benchmark's arithmetic and reporting, and the model's precision handling, on the CPU.

No timing is asserted: the benchmark's figures only count on a GPU. Its end-to-end run here is the
``--quick`` smoke test on whatever backend the test suite runs (TensorFlow).
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from benchmarks import gpu
from benchmarks.flops import forward_flops, training_flops, unet_macs
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.ml import model as unet


@pytest.fixture
def restore_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


# ---------------------------------------------------------------- analytic FLOP count


def test_macs_of_a_tiny_unet_match_the_hand_count():
    # 8 x 8 input, 9 channels, one level of 2 filters, bottleneck 4. Per layer: output pixels x taps x in x out,
    # the transposed conv: input pixels x taps x in x out.
    expected = (
        64 * 9 * 9 * 2  # encoder conv 9 -> 2 at 8 x 8
        + 64 * 9 * 2 * 2  # encoder conv 2 -> 2
        + 16 * 9 * 2 * 4  # bottleneck conv 2 -> 4 at 4 x 4
        + 16 * 9 * 4 * 4  # bottleneck conv 4 -> 4
        + 16 * 4 * 4 * 2  # transposed conv 4 -> 2, 2 x 2 kernel, from 4 x 4 pixels
        + 64 * 9 * 4 * 2  # decoder conv on the concatenation (2 + 2) -> 2 at 8 x 8
        + 64 * 9 * 2 * 2  # decoder conv 2 -> 2
        + 64 * 1 * 2 * 1  # 1 x 1 sigmoid head 2 -> 1
    )
    assert expected == 23_680
    assert unet_macs(8, 8, filters=(2,), bottleneck=4) == expected
    assert forward_flops(8, 8, filters=(2,), bottleneck=4) == 2 * expected
    assert training_flops(8, 8, filters=(2,), bottleneck=4) == 6 * expected


def test_macs_of_the_default_unet_on_a_training_patch():
    # Per level: pixels x (3x3 taps x (in x out of the first conv + out x out of the second)).
    encoder = sum(
        (256 // 2**level) ** 2 * 9 * (n_in * n + n * n)
        for level, (n_in, n) in enumerate([(9, 32), (32, 64), (64, 128)])
    )
    bottleneck = 32**2 * 9 * (128 * 256 + 256 * 256)
    up = sum((256 // 2 ** (level + 1)) ** 2 * 4 * 2 * n * n for level, n in enumerate([32, 64, 128]))
    decoder = sum((256 // 2**level) ** 2 * 9 * (2 * n * n + n * n) for level, n in enumerate([32, 64, 128]))
    head = 256**2 * 32
    assert unet_macs(256, 256) == encoder + bottleneck + up + decoder + head == 9_332_326_400
    # Doubling each side quadruples the count: the network is fully convolutional.
    assert unet_macs(512, 512) == 4 * unet_macs(256, 256)


# ---------------------------------------------------------------- peaks and report


def test_peaks_come_from_the_device_name_and_overrides():
    assert gpu._peaks("NVIDIA H200", []) == {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0}
    assert gpu._peaks("NVIDIA H100 80GB HBM3", ["bf16=500"])["bf16"] == 500.0
    assert gpu._peaks("Some future GPU", []) == {}
    assert gpu._peaks(None, ["fp32=1.5"]) == {"fp32": 1.5}
    for bad in ("tf32=1", "bf16=fast"):
        with pytest.raises(SystemExit, match="--peak-tflops"):
            gpu._peaks("NVIDIA H200", [bad])


def test_no_gpu_without_quick_is_one_clear_error():
    with pytest.raises(SystemExit, match=r"^error: no GPU visible"):
        gpu.main([])


def test_quick_run_writes_json_and_markdown(tmp_path, restore_policy, capsys):
    out_json, out_md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    gpu.main(["--quick", "--precisions", "float32", "--json", str(out_json), "--markdown", str(out_md)])
    results = json.loads(out_json.read_text())
    assert [(r["batch"], r["variant"]) for r in results["training"]] == [(2, gpu.AFTER), (4, gpu.AFTER)]
    for row in results["training"]:
        assert row["patches_per_s_min"] <= row["patches_per_s"] <= row["patches_per_s_max"]
        assert row["tflops"] == pytest.approx(row["patches_per_s"] * training_flops(32, 32) / 1e12)
    (inference,) = results["inference"]
    assert inference["image"] == [48, 64]  # 48 x 60 padded to the pooling multiple
    assert inference["tflops"] == pytest.approx(forward_flops(48, 64) / inference["ms_per_product"] / 1e9)
    table = out_md.read_text()
    assert table.strip() == capsys.readouterr().out.strip()
    assert "| float32 head | float32 | 4 |" in table and "| float32 head | float32 | 48 x 64 |" in table


def test_measures_past_the_time_budget_are_listed_as_skipped(tmp_path, restore_policy, capsys):
    gpu.main(["--quick", "--before", "--budget-s", "1e-9", "--json", str(tmp_path / "gpu.json")])
    results = json.loads((tmp_path / "gpu.json").read_text())
    planned = [(r["precision"], r["variant"], r["batch"]) for r in results["training"] if r["skipped"]]
    models = [("float32", gpu.AFTER), ("mixed_bfloat16", gpu.AFTER), ("mixed_bfloat16", gpu.BEFORE)]
    assert planned == [(p, v, b) for b in (2, 4) for p, v in models]  # every model at one batch size, then the next
    assert len(results["inference"]) == 3 and all(r["skipped"] for r in results["inference"])
    assert "| head in policy (fa9d175) | mixed_bfloat16 | skipped (time budget), batch 4 |" in capsys.readouterr().out


# ---------------------------------------------------------------- precision of the model


def test_unknown_precision_is_refused(restore_policy):
    with pytest.raises(CloudTasksError, match="precision must be one of float32, mixed_bfloat16, mixed_float16"):
        unet.set_precision("float64")


def test_mixed_precision_keeps_the_head_loss_and_metric_in_float32(restore_policy):
    unet.set_precision("mixed_bfloat16")
    model = unet.compile_unet(unet.build_unet(filters=(4, 8, 16), bottleneck=8), clip_offset=2)
    assert model.get_layer(index=1).compute_dtype == "bfloat16"
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 9)).astype(np.float32)
    y = np.stack([x[..., 0] > 0.5, rng.random((2, 16, 16)) > 0.1], axis=-1).astype(np.float32)
    probs = keras.ops.convert_to_numpy(model(x))
    assert probs.dtype == np.float32
    # The loss of the float32 probabilities, computed in float32: the numpy reference to float32's precision.
    inner = (slice(None), slice(2, -2), slice(2, -2))
    labels, weights, p = y[..., 0][inner], y[..., 1][inner], np.clip(probs[..., 0][inner].astype(np.float64), 1e-7, 1)
    expected = (weights * -(labels * np.log(p) + (1 - labels) * np.log(1 - p))).sum() / weights.sum()
    loss = model.loss(y, probs)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert all(v.dtype == "float32" for v in unet.MaskedAccuracy().variables)


def test_float32_model_computes_as_before_the_float32_head(tmp_path, restore_policy):
    """Under float32 the model with its sigmoid split off computes what the earlier one did with the same
    weights; an earlier file still loads, keeping the dtypes it was saved with."""
    unet.set_precision("float32")
    before = unet.build_unet(filters=(4, 8, 16), bottleneck=8, head_dtype=None)
    now = unet.build_unet(filters=(4, 8, 16), bottleneck=8)
    now.set_weights(before.get_weights())  # the same weights, in the same order
    x = np.random.default_rng(0).normal(size=(2, 16, 24, unet.N_CHANNELS)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(now(x)), np.asarray(before(x)), rtol=0, atol=1e-6)
    path = unet.save_model(unet.compile_unet(before), tmp_path / "before.keras")
    unet.set_precision("mixed_bfloat16")
    loaded = unet.load_model(path)  # its layers keep the policy they were saved with
    assert loaded.get_layer(index=1).compute_dtype == "float32" and loaded.output.dtype == "float32"
