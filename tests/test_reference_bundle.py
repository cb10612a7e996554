"""The shipped reference bundle (results/extended/bundle, trained on the extended profile): it loads with
its file hashes checked, is the default of `exifkit detect`, passes its own guard rails and still gives the
scores recorded when it was made on committed demo files."""

from __future__ import annotations

import json

import pytest

from exifkit.data.manifest import sha256_file
from exifkit.bundle import default_bundle
from exifkit.detect import Detector

from .conftest import ROOT

BUNDLE = ROOT / "results" / "extended" / "bundle"


@pytest.fixture(scope="module")
def detector():
    return Detector.from_bundle(BUNDLE, precision="fp32")  # the recorded scores are float32's


def test_the_reference_bundle_is_shipped_small_and_the_default(detector):
    assert default_bundle(ROOT) == BUNDLE
    assert Detector.from_bundle().meta["created"] == detector.meta["created"]
    meta = detector.meta
    assert meta["profile"] == "extended" and len(meta["training_manifest_sha256"]) == 64
    assert meta["training_manifest_sha256"] == sha256_file(ROOT / "data_manifests" / "extended.csv")
    assert sum(p.stat().st_size for p in BUNDLE.iterdir()) < 40 * 2 ** 20
    assert (BUNDLE / "MODEL_CARD.md").read_text().startswith("# Model card")


def test_the_reference_bundle_states_its_own_guard_rails(detector):
    """Whatever the shipped detectors measured on their validation images, `exifkit detect` must warn
    exactly about the ones whose real or fake accuracy there is below 0.2."""
    meta = detector.meta
    assert meta["binary_validation"]["validation_images"] > 50 and meta["oneclass_validation"]["validation_images"] > 50
    degenerate = {name for key, name in (("oneclass_validation", "one-class"), ("binary_validation", "binary"))
                  if min(meta[key]["real_acc"], meta[key]["fake_acc"]) < 0.2}
    warned = {name for name in ("one-class", "binary") if any(f"the {name} detector" in w for w in detector.warnings)}
    assert warned == degenerate


def test_the_reference_bundle_reproduces_its_recorded_scores(detector):
    recorded = json.loads((BUNDLE / "reference_scores.json").read_text())["files"]
    assert len(recorded) >= 3
    for item in recorded:
        path = ROOT / item["path"]
        assert sha256_file(path) == item["sha256"], path
        score = detector.score(path)
        assert score.loglik == pytest.approx(item["loglik"], rel=1e-3, abs=1e-2), path
        assert score.p_fake == pytest.approx(item["p_fake"], abs=1e-3), path


def test_in_the_default_precision_the_recorded_scores_move_only_within_the_bf16_tolerance():
    """bf16 products (where the CPU has them) move P(fake) by about 0.001 and the log-likelihood by up
    to 3 (on a camera photo at -27; the recorded files span about 330): stated as 0.01 and 2 % of that span."""
    recorded = json.loads((BUNDLE / "reference_scores.json").read_text())["files"]
    detector = Detector.from_bundle(BUNDLE)
    assert detector.precision == "auto" and detector.binary.extractor.precision == "auto"
    span = max(r["loglik"] for r in recorded) - min(r["loglik"] for r in recorded)
    for item in recorded:
        score = detector.score(ROOT / item["path"])
        assert abs(score.loglik - item["loglik"]) <= 0.02 * span, item["path"]
        assert abs(score.p_fake - item["p_fake"]) <= 1e-2, item["path"]


def test_the_demo_evaluates_the_reference_models_only_on_images_they_never_trained_on(detector, root):
    """What notebooks 03-05 do on the demo profile by default: the reference bundle's extractor and
    detectors, tested on the demo suite minus the bundle's training files. The shipped list must cover
    every file the extended profile trains or validates on (recomputed here from its manifest), and the
    demo test images left must share no sha256 with it."""
    from exifkit.config import data_store, load_profile
    from exifkit.data.manifest import read_manifest
    from exifkit.pipeline import choose_extractor

    demo = load_profile("demo", root=root)
    assert demo.evaluation["extractor"] == "reference"
    choice = choose_extractor("reference", root / "results" / "demo", root, profile="demo")
    assert choice.source == str(BUNDLE) and not choice.trains_binary("demo")
    extended = load_profile("extended", root=root)
    recomputed = extended.splits(read_manifest(extended.manifest_path(), name="extended")).training_sha256()
    assert recomputed and recomputed <= choice.trained_on
    store = data_store(demo)
    demo_suite = demo.splits(store.manifest).excluding(choice.trained_on).suite
    tested = {s.entry.sha256 for s in demo_suite.samples()}
    assert len(tested) > 100 and not tested & choice.trained_on
    assert {sha256_file(store.path(s.entry)) for s in demo_suite.samples()[::25]} <= tested  # the files' own hashes
