"""``maps.npz``: which arrays it holds, their dtypes and rounding, the ``save`` names, and the archive itself."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pytest

from app.io.npz import FLOAT32_MAPS, RAW_ARRAYS, archive_arrays, array_dtypes, label_dtype, parse_save, write_npz
from app.maps.registry import MAP_NAMES

C, H, W = 5, 24, 40
FP16_TINY = 2.0**-14  # smallest normal float16
FP16_UNIT = 2.0**-11  # unit roundoff of float16: half the spacing relative to the value


def _full(seed: int = 0) -> dict[str, np.ndarray]:
    """A full-precision set of arrays as :func:`app.io.npz.full_arrays` gives them: maps spanning their ranges (including
    subnormal float16 values and exact zeros), labels, and (C, H, W) probabilities and variances."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for i, name in enumerate(MAP_NAMES):
        values = (math.log(C) * rng.random((H, W)) ** (1 + 4 * i)).astype(np.float32)  # ever more mass near 0
        values[0, :4] = [0.0, 1e-7, 3e-5, FP16_TINY]
        arrays[name] = values
    logits = rng.normal(size=(C, H, W))
    probs = np.exp(logits) / np.exp(logits).sum(0)
    arrays.update(
        prediction=probs.argmax(0).astype(np.uint8),
        probs=probs.astype(np.float32),
        mean_probs=(0.5 * probs + 0.5 / C).astype(np.float32),
        class_variance=(0.25 * rng.random((C, H, W)) ** 3).astype(np.float32),
    )
    return arrays


def test_the_default_archive_holds_the_maps_and_labels_only() -> None:
    full = _full()
    stored = archive_arrays(full)
    assert set(stored) == {*MAP_NAMES, "prediction"}
    assert not set(RAW_ARRAYS) & set(stored)
    for name in MAP_NAMES:
        assert stored[name].dtype == (np.float32 if name in FLOAT32_MAPS else np.float16), name
        assert stored[name].shape == (H, W)
    assert stored["prediction"].dtype == np.uint8
    np.testing.assert_array_equal(stored["prediction"], full["prediction"])


def test_float16_maps_are_the_float32_maps_rounded_to_nearest() -> None:
    """Equal to numpy's own rounding, and within the analytic bound: ``2^-11 |x|`` for normal values, ``2^-25`` below."""
    full = _full(1)
    stored = archive_arrays(full)
    checked = 0
    for name in MAP_NAMES:
        if name in FLOAT32_MAPS:
            np.testing.assert_array_equal(stored[name], full[name])
            continue
        x = full[name].astype(np.float64)
        np.testing.assert_array_equal(stored[name], full[name].astype(np.float16))
        error = np.abs(stored[name].astype(np.float64) - x)
        normal = np.abs(x) >= FP16_TINY
        assert np.all(error[normal] <= FP16_UNIT * np.abs(x[normal])), name
        assert np.all(error[~normal] <= 2.0**-25), name
        assert stored[name][0, 0] == 0.0 and stored[name][0, 1] > 0  # a zero stays zero, 1e-7 does not vanish
        checked += 1
    assert checked == len(MAP_NAMES) - len(FLOAT32_MAPS) >= 5


def test_float32_maps_keep_the_far_tail_that_float16_would_merge() -> None:
    """``feature_distance`` percentiles 1 - 1e-4 and 1 - 1e-6 stay apart; as float16 both would round to the same value."""
    full = _full()
    full["feature_distance"][0, :2] = [1 - 1e-4, 1 - 1e-6]
    assert np.float16(1 - 1e-4) == np.float16(1 - 1e-6)
    stored = archive_arrays(full)["feature_distance"]
    assert stored[0, 0] < stored[0, 1] < 1


@pytest.mark.parametrize(
    ("text", "expected"), [("", ()), ("probs", ("probs",)), (" class_variance , probs,probs", ("probs", "class_variance")), ("all", RAW_ARRAYS)]
)
def test_save_names(text: str, expected: tuple[str, ...]) -> None:
    assert parse_save(text) == expected


def test_an_unknown_save_name_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown array 'prob'.*choose from probs, mean_probs, class_variance, all"):
        parse_save("mean_probs,prob")


def test_saved_arrays_come_back_exactly_as_float32() -> None:
    full = _full(2)
    only = archive_arrays(full, parse_save("mean_probs"))
    assert set(only) == {*MAP_NAMES, "prediction", "mean_probs"}
    every = archive_arrays(full, parse_save("all"))
    for name in RAW_ARRAYS:
        assert every[name].dtype == np.float32 and every[name].shape == (C, H, W)
        np.testing.assert_array_equal(every[name], full[name])


def test_other_arrays_such_as_error_codes_pass_unchanged() -> None:
    full = _full()
    full["error"] = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 3
    stored = archive_arrays(full)
    assert stored["error"].dtype == np.uint8
    np.testing.assert_array_equal(stored["error"], full["error"])


@pytest.mark.parametrize(("classes", "dtype"), [(2, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.int32)])
def test_label_dtype_is_the_smallest_that_holds_every_class(classes: int, dtype: type[np.integer]) -> None:
    assert label_dtype(classes) == dtype
    assert np.iinfo(label_dtype(classes)).max >= classes - 1


def test_the_archive_is_deflated_read_by_numpy_load_and_reproducible() -> None:
    stored = archive_arrays(_full(3), ("probs",))
    data = write_npz(stored)
    assert data == write_npz(stored)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {i.filename for i in archive.infolist()} == {f"{k}.npy" for k in stored}
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        assert set(loaded.files) == set(stored)
        for name, array in stored.items():
            assert loaded[name].dtype == array.dtype
            np.testing.assert_array_equal(loaded[name], array)


def test_array_dtypes_names_each_dtype() -> None:
    stored = archive_arrays(_full())
    dtypes = array_dtypes(stored)
    assert dtypes["entropy"] == "float16" and dtypes["feature_distance"] == "float32" and dtypes["prediction"] == "uint8"
    assert set(dtypes) == set(stored)
