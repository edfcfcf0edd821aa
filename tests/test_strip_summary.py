"""A summary streamed in column strips equals the one-strip summary of the whole image (BandSummary, itself checked
against the whole-array results in test_band_summary.py): means, class rows and previews."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_band_summary import MAPS, NAMES, assert_same_class_rows, scene, summarise, uneven_bands

from app.maps.strip_summary import StripedSummary

H, W = 37, 53


@pytest.mark.parametrize(("bounds", "preview_side"), [((0, 20, 53), 2048), ((0, 10, 25, 40, 53), 13), ((0, 53), 10)])
def test_strips_give_the_whole_images_summary(bounds: tuple[int, ...], preview_side: int) -> None:
    pred, maps = scene(3)
    whole = summarise(pred, maps, uneven_bands(1), preview_side=preview_side)
    striped = StripedSummary(H, W, NAMES, MAPS, preview_side=preview_side)
    assert striped.factor == whole.factor
    for k, (left, right) in enumerate(itertools.pairwise(bounds)):
        part = striped.strip(left, right)
        for top, rows in uneven_bands(10 + k):
            part.add(top, pred[top : top + rows, left:right], {name: m[top : top + rows, left:right] for name, m in maps.items()})
    for name, value in whole.means().items():
        assert striped.means()[name] == pytest.approx(value, rel=1e-12)
    assert_same_class_rows(striped.class_regions(), whole.class_regions())
    labels, previews = striped.previews()
    want_labels, want_previews = whole.previews()
    np.testing.assert_array_equal(labels, want_labels)
    for name in MAPS:
        np.testing.assert_allclose(previews[name], want_previews[name], rtol=1e-6)


def test_strips_must_follow_each_other_complete_and_on_the_block_grid() -> None:
    pred, maps = scene(0)
    striped = StripedSummary(H, W, NAMES, MAPS, preview_side=13)
    assert striped.factor == 5
    with pytest.raises(ValueError, match="must start at column 0"):
        striped.strip(5, 10)
    first = striped.strip(0, 10)
    with pytest.raises(ValueError, match="not complete"):
        striped.strip(10, 20)
    first.add(0, pred[:, :10], {name: m[:, :10] for name, m in maps.items()})
    with pytest.raises(ValueError, match="must start at column 10"):
        striped.strip(12, 20)
    with pytest.raises(RuntimeError, match="10 of the image's 53 columns"):
        striped.means()
    narrow = StripedSummary(H, W, NAMES, MAPS, preview_side=13)
    narrow.strip(0, 3).add(0, pred[:, :3], {name: m[:, :3] for name, m in maps.items()})
    with pytest.raises(ValueError, match="multiple of the preview factor 5, not at column 3"):
        narrow.strip(3, 20)
