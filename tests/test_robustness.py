"""evaluate_protocols and pivot on scores worked out by hand: the sign of the one-class score, the
thresholds each detector is judged at, and one row per (protocol, detector, generator)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import exifkit.robustness as robustness
from exifkit.data.images import FailureReport
from exifkit.data.manifest import Entry
from exifkit.data.suites import Pair, Sample, Suite
from exifkit.model.extractor import Extractor, ExtractorConfig

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


def _s(name, label, group):
    return Sample(Entry(path=name, sha256=name), label, group)


REALS = [_s("r1", 0, "real"), _s("r2", 0, "real")]
SUITE = Suite("hand", [Pair("a", REALS, [_s("a1", 1, "a"), _s("a2", 1, "a")], True),
                       Pair("b", REALS, [_s("b1", 1, "b"), _s("b2", 1, "b")], False)])
# one-class log-likelihoods (high = real); the threshold 3 says real above it
LOGLIK = {"r1": 5.0, "r2": 4.0, "a1": 1.0, "a2": 2.0, "b1": 6.0, "b2": 0.0}
# binary P(fake); judged fake above 0.5
PFAKE = {"r1": 0.2, "r2": 0.6, "a1": 0.9, "a2": 0.7, "b1": 0.1, "b2": 0.4}


class StubDensity:
    threshold_ = 3.0

    def score_samples(self, x):  # the feature *is* the log-likelihood here
        return np.asarray(x)[:, 0]


@pytest.fixture
def known_scores(monkeypatch):
    def scores(network):
        if isinstance(network, Extractor):  # features: one number, the log-likelihood
            return {k: np.array([v]) for k, v in LOGLIK.items()}, FailureReport()
        return dict(PFAKE), FailureReport()

    monkeypatch.setattr(robustness, "shared_outputs", lambda networks, *a, **k: [scores(n) for n in networks])


def test_both_detectors_under_each_protocol_from_hand_worked_scores(known_scores, tmp_path, monkeypatch):
    binary = SimpleNamespace(extractor=Extractor(TINY), fake_probability_of=None)
    long, failures = robustness.evaluate_protocols(
        [SimpleNamespace(id="raw"), SimpleNamespace(id="jpeg90")], SUITE, store=None, cache_root=tmp_path,
        extractor=Extractor(TINY), oneclass=StubDensity(), binary=binary, binary_threshold=0.5)
    assert list(dict.fromkeys(long["protocol"])) == ["raw", "jpeg90"] and len(long) == 2 * 2 * 3
    assert set(failures) == {("raw", "one-class"), ("raw", "binary"), ("jpeg90", "one-class"), ("jpeg90", "binary")}
    row = long.set_index(["protocol", "detector", "generator"])
    oc = row.loc[("raw", "one-class GMM")]
    # a: both fakes below every real -> AUC 1, all four right at the threshold
    assert oc.loc["a", "auc"] == 1.0 and oc.loc["a", "acc"] == 1.0
    # b: one fake above both reals, one below -> AUC 0.5; the fake at 6 is called real -> acc 3/4
    assert oc.loc["b", "auc"] == 0.5 and oc.loc["b", "acc"] == 0.75 and oc.loc["b", "fake_acc"] == 0.5
    assert oc.loc["mean", "auc"] == 0.75
    bi = row.loc[("raw", "binary")]
    # reals 0.2 (right) and 0.6 (wrong). a: 0.9 and 0.7 beat both reals -> AUC 1, three of four right.
    # b: 0.1 and 0.4 are both called real -> fake accuracy 0; only 0.4 > 0.2 of four pairs -> AUC 1/4
    assert bi.loc["a", "auc"] == 1.0 and bi.loc["a", "acc"] == 0.75 and bi.loc["a", "real_acc"] == 0.5
    assert bi.loc["b", "fake_acc"] == 0.0 and bi.loc["b", "auc"] == pytest.approx(1 / 4)


def test_pivot_puts_generators_down_and_protocols_across_in_run_order():
    long = pd.DataFrame([
        {"protocol": "raw", "detector": "binary", "generator": "a", "ap": 0.9},
        {"protocol": "raw", "detector": "binary", "generator": "b", "ap": 0.6},
        {"protocol": "blur1", "detector": "binary", "generator": "a", "ap": 0.7},
        {"protocol": "blur1", "detector": "binary", "generator": "b", "ap": 0.5},
        {"protocol": "raw", "detector": "one-class GMM", "generator": "a", "ap": 0.1},
    ])
    table = robustness.pivot(long, "ap", "binary")
    assert list(table.columns) == ["generator", "raw", "blur1"]
    assert table.to_dict("records") == [{"generator": "a", "raw": 0.9, "blur1": 0.7},
                                        {"generator": "b", "raw": 0.6, "blur1": 0.5}]


@pytest.fixture
def long_table(known_scores, tmp_path, monkeypatch):
    binary = SimpleNamespace(extractor=Extractor(TINY), fake_probability_of=None)
    ids = [SimpleNamespace(id=p) for p in ("raw", "aligned_jpeg95", "jpeg90")]
    long, _ = robustness.evaluate_protocols(ids, SUITE, store=None, cache_root=tmp_path, extractor=Extractor(TINY),
                                            oneclass=StubDensity(), binary=binary, binary_threshold=0.5)
    # under alignment the binary detector loses generator a: its fakes now score like the reals
    aligned_a = (long["protocol"] == "aligned_jpeg95") & (long["detector"] == "binary") & (long["generator"] == "a")
    long.loc[aligned_a, ["ap", "auc"]] = [0.5, 0.5]
    aligned_mean = (long["protocol"] == "aligned_jpeg95") & (long["detector"] == "binary") & (long["generator"] == "mean")
    long.loc[aligned_mean, "auc"] = (0.5 + 0.25) / 2  # a now 0.5, b still 1/4
    return long


def test_format_gap_is_raw_minus_aligned_per_generator(long_table):
    gap = robustness.format_gap(long_table, "binary").set_index("generator")
    assert list(gap.index) == ["a", "b", "mean"]
    assert gap.loc["a", "ap raw"] == 1.0 and gap.loc["a", "ap aligned_jpeg95"] == 0.5
    assert gap.loc["a", "ap gap"] == 0.5 and gap.loc["b", "ap gap"] == 0.0
    assert robustness.format_gap(long_table, "one-class GMM")["ap gap"].abs().max() == 0.0


def test_seen_unseen_and_means_read_the_right_rows(long_table):
    by = robustness.seen_unseen_by_protocol(long_table).set_index(["protocol", "group"])
    assert by.loc[("raw", "seen"), "auc"] == 1.0 and by.loc[("raw", "unseen"), "auc"] == pytest.approx(0.25)
    assert by.loc[("aligned_jpeg95", "seen"), "auc"] == 0.5
    assert robustness.mean_metric(long_table, "one-class GMM", "raw", "auc") == 0.75
    assert np.isnan(robustness.mean_metric(long_table, "binary", "blur9"))
    rows = robustness.mean_rows({"oc": long_table[long_table["detector"] == "one-class GMM"]},
                                protocols=("raw", "jpeg90", "blur9"))
    assert list(rows["protocol"]) == ["raw", "jpeg90"] and list(rows["run"]) == ["oc", "oc"]
    text = robustness.protocol_summary(long_table, ["raw", "aligned_jpeg95", "jpeg90"])
    assert text.count("\n") == 1 and "aligned_jpeg95" in text and text.startswith("- **one-class GMM**")


def test_curve_families_keep_only_protocols_that_ran():
    fam = robustness.families(["raw", "jpeg90", "blur1.0"])
    assert fam["JPEG (quality 100 = raw)"] == [("raw", 100), ("jpeg90", 90)]
    assert fam["resize (scale)"] == [("raw", 1.0)]


def test_ablation_means_put_each_ablation_beside_its_detector(long_table, monkeypatch, tmp_path):
    import exifkit.oneclass as oneclass

    monkeypatch.setattr(oneclass.OneClassDetector, "load", classmethod(lambda cls, path: StubDensity()))
    binary = SimpleNamespace(extractor=Extractor(TINY), fake_probability_of=None)
    det = SimpleNamespace(splits=SimpleNamespace(suite=SUITE), store=None, extractor=Extractor(TINY),
                          runs=SimpleNamespace(main="alpha=0.05", models={"alpha=0": binary},
                                               thresholds={"alpha=0": {"threshold": 0.5}}))
    protocols = [SimpleNamespace(id="raw"), SimpleNamespace(id="aligned_jpeg95")]
    means = robustness.ablation_means(long_table, det, tmp_path, "paper", protocols, seed=0, max_patches=None)
    assert list(means["run"]) == [r for r in ("one-class, pretext extractor", "one-class, random extractor",
                                              "binary, alpha=0.05", "binary, alpha=0") for _ in range(2)]
    table = means.set_index(["run", "protocol"])
    # the main binary run lost generator a under alignment (the fixture); the ablation, scored afresh, did not
    assert table.loc[("binary, alpha=0.05", "aligned_jpeg95"), "auc"] == pytest.approx((0.5 + 0.25) / 2)
    assert table.loc[("binary, alpha=0", "aligned_jpeg95"), "auc"] == pytest.approx((1 + 0.25) / 2)


@pytest.mark.slow
def test_the_default_inference_precision_keeps_both_detectors_auc_within_the_float32_interval(root, tmp_path):
    """The reference bundle's detectors on the demo's test images (those they never trained on), raw files."""
    from exifkit.config import data_store, load_profile
    from exifkit.pipeline import choose_extractor

    demo = load_profile("demo", root=root)
    store = data_store(demo)
    choice = choose_extractor("reference", tmp_path, root, profile="demo")
    d = choice.detector
    suite = demo.splits(store.manifest).excluding(choice.trained_on).suite
    table = robustness.precision_agreement(suite, store, tmp_path, extractor=d.extractor, oneclass=d.oneclass,
                                           binary=d.binary, binary_threshold=d.binary_threshold, max_patches=2,
                                           bootstrap=100)
    assert list(table["detector"]) == ["one-class GMM", "binary"] * 2
    assert table["precision"].tolist()[:2] == ["fp32 (fp32)"] * 2
    assert table["auc within the first's CI"].all(), table.to_string()
    assert d.extractor.precision == "auto"  # restored afterwards
