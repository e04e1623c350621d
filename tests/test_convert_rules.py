"""The conversion rules (``cloud_tasks.convert_rules``) on small arrays: no file involved."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from cloud_tasks.convert_rules import (
    FlagWord,
    Grid,
    Scaling,
    block_mean_2x2,
    brightness_temperature,
    day_fraction,
    decode_labels,
    degenerate_labels,
    flag_bits,
    holds_values,
    interpolate_tie_points,
    product_attributes,
    reflectance,
    scaled_values,
    split_for,
    sun_geometry,
    tie_point_coordinates,
)
from cloud_tasks.hdf import ATTRIBUTES
from cloud_tasks.naming import ProductName, format_product_name

FILL = -32768
CONFIDENCE = "coastline ocean day twilight spare spare summary_cloud spare"
BAYES = "single_low single_moderate dual_low dual_moderate spare spare spare spare"


def test_scaled_values_are_float64_counts_times_scale_plus_offset_nan_at_fill():
    fill = np.iinfo(np.int32).min
    raw = np.array([[45_123_456, -179_999_999], [fill, 0]], np.int32)
    values = scaled_values(raw, Scaling(1e-6, 0.0, fill))
    assert values.dtype == np.float64 and np.isnan(values[1, 0]) and values[1, 1] == 0.0
    assert values[0, 0] == 45_123_456 * 1e-6 and values[0, 1] == -179_999_999 * 1e-6  # as netCDF4 decodes them
    shifted = scaled_values(raw, Scaling(1e-6, 10.0, None))
    assert shifted[1, 0] == fill * 1e-6 + 10.0 and shifted[0, 0] == 45_123_456 * 1e-6 + 10.0


def word(raw, meanings: str) -> FlagWord:
    raw = np.asarray(raw)
    masks = np.array([1 << i for i in range(len(meanings.split()))], raw.dtype)
    return FlagWord(raw, flag_bits(meanings.split(), masks), masks, meanings)


# ---------------------------------------------------------------- brightness temperature


def test_brightness_temperature_is_raw_times_scale_plus_offset_nan_at_fill():
    raw = np.array([[0, 100, FILL], [-500, 32767, FILL]], np.int16)
    values = brightness_temperature(raw, Scaling(0.01, 283.73, FILL))
    assert values.dtype == np.float32
    expected = raw.astype(np.float64) * 0.01 + 283.73
    np.testing.assert_allclose(values[raw != FILL], expected[raw != FILL], rtol=1e-6)
    assert np.isnan(values[raw == FILL]).all()


def test_brightness_temperature_without_fill_keeps_every_value():
    raw = np.array([[FILL, 1]], np.int16)
    np.testing.assert_allclose(brightness_temperature(raw, Scaling(2.0, 1.0)), [[2.0 * FILL + 1, 3.0]])


def test_holds_values_is_false_only_for_all_fill():
    assert not holds_values(np.full((2, 2), FILL, np.int16), Scaling(fill=FILL))
    assert holds_values(np.array([[FILL, 0]], np.int16), Scaling(fill=FILL))
    assert holds_values(np.full((2, 2), FILL, np.int16), Scaling())


# ---------------------------------------------------------------- 0.5 km -> 1 km


def test_block_mean_averages_exact_2x2_blocks_and_scales():
    raw = np.arange(16, dtype=np.int16).reshape(4, 4)
    mean = block_mean_2x2(raw, Scaling(0.5, 10.0, FILL), (2, 2))
    expected = raw.reshape(2, 2, 2, 2).mean(axis=(1, 3)) * 0.5 + 10.0
    np.testing.assert_allclose(mean, expected)
    assert mean.dtype == np.float32


def test_block_mean_takes_valid_pixels_only_and_nan_for_an_all_fill_block():
    raw = np.array([[4, FILL, FILL, FILL], [8, FILL, FILL, FILL]], np.int16)
    mean = block_mean_2x2(raw, Scaling(1.0, 0.0, FILL), (1, 2))
    assert mean[0, 0] == 6.0 and np.isnan(mean[0, 1])


def test_block_mean_ignores_rows_and_columns_beyond_twice_the_grid():
    raw = np.ones((5, 7), np.int16)
    raw[4, :] = raw[:, 6] = 1000
    np.testing.assert_array_equal(block_mean_2x2(raw, Scaling(), (2, 3)), np.ones((2, 3)))


# ---------------------------------------------------------------- tie points and the sun


IMAGE = Grid(rows=4, columns=40, track_offset=20, start_offset=7, resolution_across=1000, resolution_along=1000)
TIE = Grid(rows=4, columns=5, track_offset=2, start_offset=7, resolution_across=16000, resolution_along=1000)


def test_tie_point_coordinates_follow_track_offsets_and_resolutions():
    rows, columns = tie_point_coordinates(IMAGE, TIE)
    np.testing.assert_allclose(columns, (np.arange(40) - 20) / 16 + 2)
    np.testing.assert_allclose(rows, np.arange(4))  # every image row is its own tie-point row


def test_interpolation_reproduces_tie_points_and_is_linear_between():
    tie = np.add.outer(np.arange(4) * 10.0, np.arange(5) * 16.0)  # linear in both directions
    sza = interpolate_tie_points(tie, IMAGE, TIE)
    assert sza.shape == IMAGE.shape
    np.testing.assert_array_equal(sza[:, 20], tie[:, 2])  # nadir column sits on tie column 2
    np.testing.assert_array_equal(sza[:, 4], tie[:, 1])
    np.testing.assert_allclose(sza, np.add.outer(np.arange(4) * 10.0, (np.arange(40) - 20) + 32.0))
    assert not np.allclose(sza[0], sza[-1])  # the reference put every row at the last tie-point row


def test_interpolation_does_not_leak_nan_onto_a_pixel_on_a_valid_tie_point():
    tie = np.tile([10.0, 20.0, 30.0, np.nan, np.nan], (4, 1))
    sza = interpolate_tie_points(tie, IMAGE, TIE)
    assert sza[0, 20] == 30.0  # on tie column 2, beside the NaN of column 3
    assert np.isnan(sza[0, 21])


def test_sun_geometry_decides_sunlight_on_the_stored_float32_value():
    sza = np.array([0.0, 60.0, 89.999999999, 90.0, 120.0, np.nan])
    sun = sun_geometry(sza)
    assert sun.sza.dtype == np.float32 and sun.sza[2] == 90.0
    np.testing.assert_array_equal(sun.sunlit, [True, True, False, False, False, False])
    np.testing.assert_allclose(sun.factor[:2], [math.pi, 2 * math.pi], rtol=1e-6)
    assert np.isnan(sun.factor[2:]).all() and sun.any_sunlit
    assert not sun_geometry(np.array([95.0, np.nan])).any_sunlit


def test_reflectance_is_pi_l_over_e0_cos_sza_and_nan_without_sun():
    sun = sun_geometry(np.array([[60.0, 0.0, 100.0]]))
    radiance = np.array([[100.0, 100.0, 100.0]], np.float32)
    refl = reflectance(radiance, 200.0, sun)
    np.testing.assert_allclose(refl[0, :2], [math.pi * 100 / (200 * 0.5), math.pi * 100 / 200], rtol=1e-6)
    assert np.isnan(refl[0, 2])


# ---------------------------------------------------------------- flags, labels, day/night


def test_flag_bits_or_repeated_meanings():
    bits = flag_bits(CONFIDENCE.split(), [1 << i for i in range(8)])
    assert bits["day"] == 4 and bits["spare"] == 16 | 32 | 128


def test_labels_decode_by_meaning_and_255_is_every_bit_set():
    confidence = word(np.array([[64, 0, 64 | 4]], np.uint16), CONFIDENCE)
    bayes = word(np.array([[255, 16, 2]], np.uint8), BAYES)
    labels = decode_labels(confidence, bayes)
    np.testing.assert_array_equal(labels["summary_cloud"], [[1, 0, 1]])
    np.testing.assert_array_equal(labels["bayes"], [[1, 0, 1]])  # a spare bit alone is no cloud
    assert {values.dtype for values in labels.values()} == {np.dtype(np.uint8)}


def test_degenerate_labels_are_those_with_one_value():
    assert degenerate_labels({"a": np.ones((2, 2), np.uint8), "b": np.eye(2, dtype=np.uint8)}) == ["a"]


def test_day_fraction_and_split_at_the_threshold():
    confidence = word(np.array([4, 4, 0, 4 | 8], np.uint16), CONFIDENCE)
    assert day_fraction(confidence) == 0.75
    assert split_for(0.75, 0.75) == "day" and split_for(0.75, 0.76) == "night"
    assert split_for(0.0, 0.0) == "day" and split_for(0.999, 1.0) == "night"


def test_product_attributes_hold_every_documented_attribute():
    start = dt.datetime(2024, 6, 1, 10, tzinfo=dt.UTC)
    stem = format_product_name(
        "S3B", start, start + dt.timedelta(minutes=3), start, duration_s=180, cycle=1, relative_orbit=2, frame=3
    )
    attrs = product_attributes(ProductName.parse(stem), ("a", "b"), (3, 4), 0.4, 0.5, "night", ["bayes"])
    assert set(ATTRIBUTES) <= set(attrs)
    assert (attrs["product_name"], attrs["mission"], attrs["baseline"]) == (stem, "S3B", "004")
    assert attrs["split"] == "night" and attrs["degenerate_labels"] == ["bayes"]
    assert attrs["grid_shape"].tolist() == [3, 4] and (attrs["sensing_start"], attrs["sensing_stop"]) == ("a", "b")


@pytest.mark.parametrize("meaning", ["day", "summary_cloud"])
def test_flag_word_mask_of_one_meaning(meaning):
    raw = np.arange(256, dtype=np.uint16)
    confidence = word(raw, CONFIDENCE)
    bit = confidence.bits[meaning]
    np.testing.assert_array_equal(confidence.mask(meaning), (raw & bit) != 0)
