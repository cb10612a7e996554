import numpy as np
import pytest

from exifkit import metrics

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.65, 0.5, 0.3, 0.95, 0.2])


def test_accuracies_at_a_threshold_by_hand():
    # predicted fake (> 0.5): 0.8, 0.9, 0.65, 0.95 -> one real wrong, two fakes missed (0.5, 0.3)
    assert metrics.accuracy(LABELS, SCORES, 0.5) == pytest.approx(0.7)
    assert metrics.class_accuracy(LABELS, SCORES, 0.5, 0) == pytest.approx(4 / 5)
    assert metrics.class_accuracy(LABELS, SCORES, 0.5, 1) == pytest.approx(3 / 5)


def test_ranking_metrics_by_hand():
    # fakes ranked first by score: 0.95 0.9 (0.8 real) 0.65 0.5 (0.4 0.35 real) 0.3 -> precision at each
    # fake 1, 1, 3/4, 4/5, 5/8; AUC: 20 of the 25 (fake, real) pairs put the fake higher
    assert metrics.ap_fake_positive(LABELS, SCORES) == pytest.approx((1 + 1 + 3 / 4 + 4 / 5 + 5 / 8) / 5)
    assert metrics.roc_auc(LABELS, SCORES) == pytest.approx(20 / 25)
    # here the reals happen to sit symmetrically (ranks 1, 2, 4, 5, 8 from the bottom): the same AP
    assert metrics.ap_real_positive(LABELS, SCORES) == pytest.approx((1 + 1 + 3 / 4 + 4 / 5 + 5 / 8) / 5)
    # two reals among six fakes: fakes-first AP is high, reals-first (lowest scores first) is not
    few_reals, scores = np.array([0, 0, 1, 1, 1, 1, 1, 1]), np.array([0.1, 0.7, 0.2, 0.6, 0.8, 0.9, 0.3, 0.95])
    assert metrics.ap_fake_positive(few_reals, scores) == pytest.approx((1 + 1 + 1 + 4 / 5 + 5 / 6 + 6 / 7) / 6)
    assert metrics.ap_real_positive(few_reals, scores) == pytest.approx((1 + 2 / 5) / 2)


def test_auc_matches_scikit_learn_with_ties_and_needs_both_classes():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 40)
        scores = rng.integers(0, 6, 40) / 5  # many ties
        if len(set(labels)) == 2:
            assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    with pytest.raises(ValueError, match="both real and fake"):
        metrics.roc_auc([1, 1], [0.2, 0.3])


def test_average_precision_and_tpr_at_fpr_match_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score, roc_curve

    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 40, 300):
        for levels in (3, 8, 10**6):  # many ties, few, none
            labels = rng.integers(0, 2, n)
            labels[:2] = (0, 1)
            scores = rng.integers(0, levels, n) / levels
            assert metrics.ap_fake_positive(labels, scores) == pytest.approx(average_precision_score(labels, scores),
                                                                             abs=1e-12)
            assert metrics.ap_real_positive(labels, scores) == pytest.approx(
                average_precision_score(1 - labels, -scores), abs=1e-12)
            f, t, _ = roc_curve(labels, scores)
            for fpr in (0.0, 0.05, 0.3):
                assert metrics.tpr_at_fpr(labels, scores, fpr) == float(t[f <= fpr].max())


def test_bootstrap_draws_at_once_equal_each_metric_draw_by_draw():
    rng = np.random.default_rng(2)
    for n_real, n_fake in ((30, 30), (5, 40), (40, 3)):
        labels = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
        resampled = np.round(rng.normal(size=(50, n_real + n_fake)) + labels, 1)  # ties
        draws = metrics._bootstrap_draws(labels, 0.5, resampled, tuple(metrics.METRICS))
        for name, fn in metrics.METRICS.items():
            np.testing.assert_array_equal(draws[name], [fn(labels, row, 0.5) for row in resampled], err_msg=name)


def test_summary_computes_only_the_metrics_asked_for():
    s = metrics.summarize(LABELS, SCORES, 0.5, bootstrap=50, seed=1, columns=("auc",))
    assert set(s.values) == set(s.intervals) == {"auc"}
    assert s.intervals["auc"] == metrics.summarize(LABELS, SCORES, 0.5, bootstrap=50, seed=1).intervals["auc"]


def test_tpr_at_fpr():
    # at 0 % FPR only the fakes above the highest real (0.8) count; allowing that one real (20 %)
    # admits every fake above the next real (0.4)
    assert metrics.tpr_at_fpr(LABELS, SCORES, 0.05) == pytest.approx(2 / 5)
    assert metrics.tpr_at_fpr(LABELS, SCORES, 0.2) == pytest.approx(4 / 5)


def test_summary_and_bootstrap_intervals_bracket_the_estimate():
    s = metrics.summarize(LABELS, SCORES, 0.5, bootstrap=300, seed=1)
    assert s.values["acc"] == pytest.approx(0.7)
    for k, (lo, hi) in s.intervals.items():
        assert lo <= s.values[k] + 1e-9 and s.values[k] <= hi + 1e-9, k


def test_bad_inputs():
    with pytest.raises(ValueError, match="must be equal 1-d"):
        metrics.accuracy([0, 1], [0.2], 0.5)
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        metrics.accuracy([0, 2], [0.2, 0.3], 0.5)


def test_balanced_threshold_maximises_mean_class_accuracy():
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.5, 0.8])
    t = metrics.balanced_threshold(labels, scores)
    assert 0.3 < t < 0.5
    assert metrics.class_accuracy(labels, scores, t, 0) == 0.75 and metrics.class_accuracy(labels, scores, t, 1) == 1
    with pytest.raises(ValueError, match="both real and fake"):
        metrics.balanced_threshold(np.zeros(3, int), np.ones(3))


def test_macro_auc_is_the_mean_of_per_group_aucs_against_all_reals():
    from exifkit.metrics import macro_auc

    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.15, 0.25]
    groups = ["r", "r", "r", "r", "easy", "easy", "hard", "hard"]
    # easy: both fakes above every real -> 1.0; hard: 0.15 beats 1 of 4 reals, 0.25 beats 2 -> 3/8
    assert macro_auc(labels, scores, groups) == pytest.approx((1.0 + 3 / 8) / 2)
    with pytest.raises(ValueError):
        macro_auc([0, 0], [0.1, 0.2], ["r", "r"])


def _two_pair_suite():
    from exifkit.data.manifest import Entry
    from exifkit.data.suites import Pair, Sample, Suite

    def samples(prefix, label, n):
        return [Sample(Entry(path=f"{prefix}{i}", sha256=f"{prefix}{i}", label="fake" if label else "real"), label, prefix)
                for i in range(n)]

    reals = samples("r", 0, 6)
    return Suite("t", [Pair("seen_gen", reals, samples("a", 1, 5), True),
                       Pair("unseen_gen", reals, samples("b", 1, 4), False)])


def test_suite_means_carry_bootstrap_intervals_around_the_mean_of_the_pairs():
    from exifkit.metrics import seen_unseen_means, suite_table

    suite = _two_pair_suite()
    rng = np.random.default_rng(0)
    scores = {s.key: float(rng.random() + (0.6 if s.label else 0)) for p in suite.pairs for s in p.reals + p.fakes}
    table = suite_table(suite, scores, 0.5, bootstrap=200, seed=0)
    mean = table[table["generator"] == "mean"].iloc[0]
    assert mean["auc"] == pytest.approx(table["auc"].iloc[:2].mean())
    lo, hi = map(float, mean["auc 95% CI"].strip("[]").split(","))
    assert lo <= mean["auc"] <= hi and hi - lo > 0.01
    groups = seen_unseen_means(suite, scores, 0.5, bootstrap=200, seed=0)
    assert list(groups["generators"]) == ["seen", "unseen"] and list(groups["n"]) == [1, 1]
    assert groups["mean auc"].iloc[0] == pytest.approx(table["auc"].iloc[0])  # one pair: its own value
    assert groups["mean auc 95% CI"].iloc[1] == table["auc 95% CI"].iloc[1]
    assert "auc 95% CI" not in suite_table(suite, scores, 0.5).columns


def test_a_paired_macro_auc_scores_each_fake_group_against_its_own_reals_only():
    from exifkit.metrics import macro_auc

    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.7, 0.8, 0.9, 0.75, 0.3, 0.25]
    groups = ["camera", "camera", "cnn real", "cnn real", "gen", "gen", "gan", "gan"]
    # against every real: gen 0.9 beats 4, 0.75 beats 3 -> 7/8; gan 0.3 and 0.25 beat 2 each -> 4/8
    assert macro_auc(labels, scores, groups) == pytest.approx((7 / 8 + 4 / 8) / 2)
    # as a suite pairs them: gen against the camera photos (1.0), gan against its own reals (0.0)
    pairing = {"gen": ["camera"], "gan": ["cnn real"]}
    assert macro_auc(labels, scores, groups, pairing) == pytest.approx((1.0 + 0.0) / 2)


def test_paired_difference_is_zero_for_one_detector_and_positive_for_a_better_one():
    from exifkit.metrics import _rank_auc, paired_difference, roc_auc

    rng = np.random.default_rng(0)
    reals, fakes = rng.integers(0, 5, 40).astype(float), rng.integers(2, 7, 30).astype(float)  # many ties
    assert _rank_auc(reals, fakes) == pytest.approx(roc_auc(np.r_[np.zeros(40), np.ones(30)], np.r_[reals, fakes]))

    suite = _two_pair_suite()
    noisy = {s.key: float(rng.random() + (0.3 if s.label else 0)) for s in suite.samples()}
    same = paired_difference(suite, noisy, noisy, bootstrap=200)
    assert list(same["generators"]) == ["seen", "unseen", "all"]
    assert (same["auc difference"] == 0).all() and (same["95% CI"] == "[0.000, 0.000]").all()

    perfect = {s.key: float(s.label) + 0.01 * rng.random() for s in suite.samples()}
    better = paired_difference(suite, perfect, noisy, bootstrap=200).set_index("generators")
    all_mean = better.loc["all", "auc difference"]
    lo, hi = map(float, better.loc["all", "95% CI"].strip("[]").split(","))
    assert all_mean > 0 and 0 < lo <= all_mean <= hi and better.loc["all", "share of draws a ahead"] > 0.95
    missing = dict(list(perfect.items())[3:])  # images one detector did not score are left out of both
    assert paired_difference(suite, missing, noisy, bootstrap=0)["n"].tolist() == [1, 1, 2]
