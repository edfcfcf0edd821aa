"""Label Studio pre-annotations, decoded with Label Studio's own converter (label-studio-converter)."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import numpy as np
from label_studio_converter.brush import decode_rle

from app.io.label_studio import BRUSH_FROM, BRUSH_TO, LabelledImage, brush_rle, labeling_config, task


def _decoded(rle: list[int], height: int, width: int) -> np.ndarray:
    return np.asarray(decode_rle(rle)).reshape(height, width, 4)


def test_the_brush_rle_decodes_to_the_mask_in_every_channel() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    mask[:10, :] = True
    rgba = _decoded(brush_rle(mask), 37, 53)
    assert np.array_equal(rgba, np.repeat((255 * mask).astype(np.uint8)[..., None], 4, axis=2))


def test_runs_longer_than_the_widest_length_field_are_split() -> None:
    mask = np.zeros((300, 400), bool)
    mask[120:, :] = True
    rgba = _decoded(brush_rle(mask), 300, 400)
    assert np.array_equal(rgba[..., 3] == 255, mask)


def test_empty_and_full_masks() -> None:
    for mask in (np.zeros((5, 7), bool), np.ones((5, 7), bool)):
        assert np.array_equal(_decoded(brush_rle(mask), 5, 7)[..., 0] == 255, mask)


def test_a_task_has_one_brush_result_per_predicted_class_that_decodes_to_its_pixels() -> None:
    labels = np.zeros((20, 30), np.int64)
    labels[5:15, 10:25] = 2
    labels[0, 0] = 1
    item = LabelledImage(image="/data/local-files/?d=a/b.png", labels=labels, score=0.42, score_error=0.01, rank=1, file="a/b.png")
    parsed = json.loads(json.dumps([task(item, ["bg", "disc", "square"], "mutual_information", "seg-uncertainty tiny")]))
    assert isinstance(parsed, list) and len(parsed) == 1
    (prediction,) = parsed[0]["predictions"]
    assert parsed[0]["data"][BRUSH_TO] == "/data/local-files/?d=a/b.png" and prediction["score"] == 0.42
    by_class = {r["value"]["brushlabels"][0]: r for r in prediction["result"]}
    assert set(by_class) == {"bg", "disc", "square"}
    for index, name in enumerate(["bg", "disc", "square"]):
        result = by_class[name]
        assert (result["type"], result["from_name"], result["to_name"], result["value"]["format"]) == ("brushlabels", BRUSH_FROM, BRUSH_TO, "rle")
        assert (result["original_width"], result["original_height"]) == (30, 20)
        assert np.array_equal(_decoded(result["value"]["rle"], 20, 30)[..., 3] == 255, labels == index)


def test_the_labelling_config_parses_and_names_the_tags_the_results_use() -> None:
    names = ["bg", 'R&D "x" <y>']
    root = ElementTree.fromstring(labeling_config(names, ["#000000", "#ff0000"]))
    (image,) = root.iter("Image")
    (brush,) = root.iter("BrushLabels")
    assert image.get("name") == BRUSH_TO and image.get("value") == f"${BRUSH_TO}"
    assert brush.get("name") == BRUSH_FROM and brush.get("toName") == BRUSH_TO
    assert [(label.get("value"), label.get("background")) for label in brush.iter("Label")] == [("bg", "#000000"), (names[1], "#ff0000")]
