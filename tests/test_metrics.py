"""Confusion matrix and IoU against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score

from app.metrics.segmentation import confusion_matrix, segmentation_scores


def _data(seed: int = 0, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, classes, (2, 17, 23))
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, classes, target.shape))
    target[rng.random(target.shape) < 0.1] = 255
    return pred, target


@pytest.mark.parametrize("seed", [0, 1])
def test_confusion_matches_sklearn_with_ignore_index(seed: int) -> None:
    """Rows are targets, columns predictions; pixels with target 255 are skipped."""
    pred, target = _data(seed)
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 4)
    keep = target != 255
    ref = sk_confusion(target[keep], pred[keep], labels=[0, 1, 2, 3])
    assert cm.dtype == torch.int64
    assert np.array_equal(cm.numpy(), ref)
    assert int(cm.sum()) == int(keep.sum()) < target.size


def test_iou_and_accuracy_match_sklearn() -> None:
    """Per-class IoU and mIoU equal sklearn's jaccard_score over the kept pixels; accuracy is trace / total."""
    pred, target = _data(2)
    keep = target != 255
    scores = segmentation_scores(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 4))
    ref = jaccard_score(target[keep], pred[keep], labels=[0, 1, 2, 3], average=None)
    assert scores.iou == pytest.approx(ref.tolist(), abs=1e-12)
    assert scores.miou == pytest.approx(ref.mean(), abs=1e-12)
    assert scores.pixel_accuracy == pytest.approx(float((pred[keep] == target[keep]).mean()), abs=1e-12)
    assert scores.pixels == int(keep.sum())


def test_absent_class_is_none_and_left_out_of_miou() -> None:
    """A class in neither targets nor predictions has IoU None and does not count in mIoU."""
    target = torch.tensor([0, 0, 1, 1, 255])
    pred = torch.tensor([0, 1, 1, 1, 2])
    scores = segmentation_scores(confusion_matrix(pred, target, 3))
    assert scores.iou[:2] == pytest.approx([1 / 2, 2 / 3])
    assert scores.iou[2] is None
    assert scores.miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scores.pixel_accuracy == pytest.approx(3 / 4)


def test_targets_out_of_range_and_no_ignore_index() -> None:
    """Targets ≥ C are skipped even with ignore_index=None; an empty matrix gives NaN scores."""
    target = torch.tensor([0, 1, 7])
    pred = torch.tensor([0, 0, 1])
    cm = confusion_matrix(pred, target, 2, ignore_index=None)
    assert cm.tolist() == [[1, 0], [1, 0]]
    empty = segmentation_scores(torch.zeros(2, 2, dtype=torch.int64))
    assert math.isnan(empty.miou) and math.isnan(empty.pixel_accuracy)
    assert empty.iou == [None, None]


def test_shape_mismatch_rejected() -> None:
    """Prediction and target must have the same shape."""
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), 2)


def test_prediction_out_of_range_rejected_not_miscounted() -> None:
    """A prediction ≥ C would alias into another cell (t·C + p); it is an error instead. Ignored pixels may hold anything."""
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 0]), 3)
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(torch.tensor([-1, 0]), torch.tensor([1, 0]), 3)
    cm = confusion_matrix(torch.tensor([9, 1]), torch.tensor([255, 1]), 3)
    assert cm.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
