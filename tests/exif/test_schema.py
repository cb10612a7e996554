from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from exifkit.exif.read import ExifRecord
from exifkit.exif.schema import (CATEGORICAL, MISSING_CLASS, OTHER, RANKED, TAGS, LabelConfig, build_labels,
                                 build_vocabulary, card_markdown, exif_card, informative_pair_share,
                                 pair_label_balance, tag, write_card)


def test_fourteen_targets_in_the_authors_order():
    assert len(TAGS) == 14
    kinds = [t.kind for t in TAGS]
    assert [i for i, k in enumerate(kinds) if k == CATEGORICAL] == [1, 5, 6, 9, 10, 11, 13]
    assert [TAGS[i].name for i in (1, 5, 6, 9, 10, 11, 13)] == [
        "Make", "Model", "Flash", "MeteringMode", "ExposureMode", "WhiteBalance", "SceneCaptureType"]
    ranked = {t.name for t in TAGS if t.kind == RANKED}
    assert {"FocalLength", "FNumber", "ExposureTime", "ISOSpeedRatings"} <= ranked


def test_vocabulary_keeps_frequent_values_and_merges_the_rest():
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] + [None] * 4
    vocab = build_vocabulary("t", values, max_classes=3)
    assert vocab.classes == ["a", "b", OTHER]
    assert [vocab.index(v) for v in ("a", "b", "c", "d", None)] == [0, 1, 2, 2, MISSING_CLASS]
    assert build_vocabulary("t", values, max_classes=4).classes == ["a", "b", "c", "d"]  # fits: no merge
    assert build_vocabulary("t", values, max_classes=3, min_count=3).classes == ["a", "b", OTHER]


def test_labels_mask_missing_values_and_convert_units():
    records = [
        ExifRecord(Path("a"), {"Make": "NIKON CORPORATION", "FNumber": 2.8, "Flash": 16, "MaxApertureValue": 3.0}),
        ExifRecord(Path("b"), {"Make": "Nikon", "FNumber": 0.0, "MeteringMode": 5}),
        ExifRecord(Path("c"), {}),
    ]
    labels = build_labels(records, LabelConfig())
    make = labels.categorical_names.index("Make")
    assert labels.vocabularies["Make"].classes == ["Nikon"]
    assert labels.categorical[:, make].tolist() == [0, 0, MISSING_CLASS]
    fnum = labels.ranked_names.index("FNumber")
    assert labels.ranked[0, fnum] == pytest.approx(2.8)
    assert math.isnan(labels.ranked[1, fnum])  # 0 means "unknown"
    assert labels.values[0]["MaxApertureValue"] == pytest.approx(2 ** 1.5)  # APEX 3 = f/2.83
    assert tag("MeteringMode").value(records[1]) == "pattern"


def _brute_force(values):
    pairs = list(itertools.combinations(values, 2))
    informative = sum(a is not None and b is not None and a != b for a, b in pairs) / len(pairs)
    ordered = [(a, b) for a, b in itertools.permutations(values, 2) if a is not None and b is not None]
    label1 = sum(a >= b for a, b in ordered) / len(ordered)
    ties = sum(a == b for a, b in ordered) / len(ordered)
    return informative, label1, ties


@pytest.mark.parametrize("seed", range(5))
def test_pair_statistics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    values = [None if rng.random() < 0.3 else float(rng.integers(0, 4)) for _ in range(25)]
    informative, label1, ties = _brute_force(values)
    balance = pair_label_balance(values)
    assert informative_pair_share(values) == pytest.approx(informative)
    assert balance["label1_share"] == pytest.approx(label1)
    assert balance["tie_share"] == pytest.approx(ties)


def test_card_on_demo_photos(tmp_path, demo_camera_paths):
    from exifkit.exif.read import read_many

    records = read_many(demo_camera_paths)
    card = exif_card(build_labels(records), "demo", records)
    assert [t["name"] for t in card["tags"]] == [t.name for t in TAGS]
    assert card["images"] == len(demo_camera_paths) and card["images_with_exif"] > 0.9 * card["images"]
    focal = next(t for t in card["tags"] if t["name"] == "FocalLength")
    assert focal["coverage"] > 0.8 and 0 < focal["informative_pair_share"] <= 1
    assert focal["quantiles"]["q0"] <= focal["quantiles"]["q50"] <= focal["quantiles"]["q100"]
    js, md = write_card(card, tmp_path)
    assert json.loads(js.read_text())["dataset"] == "demo"
    assert "| 0 | FocalLength | ranked |" in md.read_text() and card_markdown(card) == md.read_text()


def test_a_subset_of_labels_keeps_rows_aligned_and_vocabularies_whole():
    from exifkit.exif.read import ExifRecord
    from exifkit.exif.schema import build_labels

    records = [ExifRecord(path=f"p{i}", values={"Make": m, "FocalLength": f}) for i, (m, f) in
               enumerate([("Canon", 50.0), (None, 24.0), ("Nikon", 35.0), ("Canon", 18.0)])]
    labels = build_labels(records)
    assert labels.makes() == ["Canon", "(none)", "Nikon", "Canon"]
    canon = labels.subset([m == "Canon" for m in labels.makes()])
    assert canon.paths == ["p0", "p3"] and canon.makes() == ["Canon", "Canon"]
    assert canon.vocabularies is labels.vocabularies
    assert np.array_equal(canon.ranked, labels.ranked[[0, 3]], equal_nan=True)
    assert np.array_equal(canon.categorical, labels.categorical[[0, 3]])
