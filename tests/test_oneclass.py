import numpy as np
import pytest

from exifkit.oneclass import OneClassDetector


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)), rng.normal(size=(50, 6)) * 3


def test_threshold_is_the_authors_percentile_rule(features):
    train, _ = features
    det = OneClassDetector().fit(train)
    ll = np.sort(det.score_samples(train))
    assert det.threshold_ == ll[int(np.floor(0.02 * len(train)))]  # index 8 of 400
    # real only if the log-likelihood *exceeds* the threshold: the 8 below it and the one at it are fake
    assert (det.predict(train) == -1).sum() == 9 and set(det.predict(train)) == {-1, 1}
    at = det.score_samples(train) == det.threshold_
    assert at.sum() == 1 and det.predict(train)[at] == -1 and det.decision_function(train)[at] < 0
    assert OneClassDetector(threshold_percentile=10).fit(train).threshold_ > det.threshold_


def test_the_authors_mixture_scores_exactly_as_scikit_learn_scores_it(features):
    """Our density is only a carrier of the fitted mixture's public arrays; its log-likelihood must be
    scikit-learn's own, so the authors' protocol is theirs to the last bit."""
    from sklearn.mixture import GaussianMixture

    train, test = features
    det = OneClassDetector().fit(train)
    gmm = GaussianMixture(5, covariance_type="full", init_params="k-means++", random_state=42, reg_covar=1e-6)
    gmm.fit(train)
    np.testing.assert_allclose(det.score_samples(test), gmm.score_samples(test), rtol=1e-12, atol=0)
    for kind in ("diag", "tied", "spherical"):
        other = OneClassDetector(covariance_type=kind, n_components=2).fit(train)
        ref = GaussianMixture(2, covariance_type=kind, init_params="k-means++", random_state=42).fit(train)
        np.testing.assert_allclose(other.score_samples(test), ref.score_samples(test), rtol=1e-9)


def test_it_is_a_scikit_learn_estimator_clone_and_params_included(features):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    train, test = features
    det = OneClassDetector(n_components=3, threshold_percentile=5.0)
    assert det.get_params()["n_components"] == 3 and det.set_params(n_components=2) is det
    with pytest.raises(NotFittedError):
        det.score_samples(test)
    fitted = det.fit(train)
    assert fitted is det and det.n_features_in_ == 6
    copy = clone(det)
    assert copy.get_params() == det.get_params() and not hasattr(copy, "threshold_")
    np.testing.assert_array_equal(copy.fit(train).score_samples(test), det.score_samples(test))
    np.testing.assert_array_equal(OneClassDetector().fit_predict(train), OneClassDetector().fit(train).predict(train))
    with pytest.raises(ValueError, match="6 features"):
        det.score_samples(test[:, :4])


def test_scikit_learn_check_estimator_passes_every_check():
    """All of scikit-learn's estimator checks run and pass. The one it skips itself is the array-API
    check (only with SCIPY_ARRAY_API set); the density is NumPy arrays, so it does not apply."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the degenerate-mixture warning on the checks' tiny data sets
        results = check_estimator(OneClassDetector(), on_fail=None)
    failed = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed, failed
    assert {r["check_name"] for r in results if r["status"] == "skipped"} <= {"check_array_api_input"}
    ran = {r["check_name"] for r in results if r["status"] == "passed"}
    assert len(ran) >= 40 and {"check_outliers_train", "check_fit_idempotent", "check_n_features_in_after_fitting",
                               "check_estimators_nan_inf", "check_fit2d_1sample", "check_estimators_pickle"} <= ran


def test_save_and_load_give_identical_scores_without_pickle(tmp_path, features):
    train, test = features
    det = OneClassDetector().fit(train)
    meta = det.save(tmp_path / "gmm")
    with np.load(tmp_path / "gmm.npz", allow_pickle=False) as arrays:  # plain arrays only
        assert set(arrays.files) == {"weights_", "means_", "covariances_", "precisions_cholesky_"}
    again = OneClassDetector.load(meta)
    np.testing.assert_array_equal(again.score_samples(test), det.score_samples(test))
    assert again.threshold_ == det.threshold_ and again.get_params() == det.get_params()


def test_off_distribution_points_score_lower(features):
    train, test = features
    det = OneClassDetector().fit(train)
    assert np.median(det.score_samples(test)) < det.threshold_
    with pytest.raises(ValueError, match="n_samples = 3: too few training features for 5 mixture components"):
        OneClassDetector().fit(train[:3])


def _low_rank_reals(n, seed=0, dim=60):
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(6, dim))
    return rng.normal(size=(n, 6)) @ basis + 0.1 * rng.normal(size=(n, dim))


def test_small_sample_method_chooses_on_heldout_reals_and_calibrates_on_reals_it_did_not_fit(tmp_path):
    from exifkit.oneclass import candidate_densities

    reals = _low_rank_reals(150)
    det = OneClassDetector(method="small_sample", threshold_percentile=5.0, ppca_components=(2, 6, 20)).fit(reals)
    assert det.n_calibration_ == 30 and det.n_train_ == 120
    assert det.density_name_ == det.selection_["density"][0]
    assert set(det.selection_["density"]) == set(candidate_densities(det))
    assert det.density_name_ == "ppca_6"  # the true rank of the reals
    assert 0.9 <= det.calibration_real_acc_ <= 1.0
    new_reals, off = _low_rank_reals(200, seed=1), _low_rank_reals(200, seed=2) + 3.0
    assert (det.predict(new_reals) == 1).mean() > 0.85  # held-out reals stay real
    assert (det.predict(off) == -1).mean() > 0.95
    again = OneClassDetector.load(det.save(tmp_path / "small"))
    np.testing.assert_allclose(again.score_samples(off), det.score_samples(off))
    assert again.density_name_ == det.density_name_ and again.threshold_ == det.threshold_


def test_the_authors_gmm_on_few_reals_is_diagnosed_as_degenerate():
    from exifkit.oneclass import DegenerateMixtureWarning, diagnose

    reals = _low_rank_reals(150)
    with pytest.warns(DegenerateMixtureWarning, match="100 reals for 5 full 60-dimensional"):
        det = OneClassDetector().fit(reals[:100])
    heldout_acc = float((det.predict(reals[100:]) == 1).mean())
    message = diagnose(100, 60, det, heldout_acc)
    assert "degenerate" in message and "100 reals for 5 full 60-dimensional covariances" in message
    assert diagnose(100_000, 60, det, 0.97) is None
    assert diagnose(100, 60, OneClassDetector(method="small_sample")) is None


def test_small_sample_refuses_too_few_reals():
    with pytest.raises(ValueError, match="too few"):
        OneClassDetector(method="small_sample").fit(_low_rank_reals(30))


def test_float32_features_are_fitted_in_float64(features):
    train, test = features
    det = OneClassDetector().fit(train.astype(np.float32))
    assert det.density_.means.dtype == np.float64
    np.testing.assert_allclose(det.score_samples(test.astype(np.float32)),
                               OneClassDetector().fit(train).score_samples(test), rtol=1e-4)


def _split_of(reals, fakes):
    """Splits, a suite and precomputed features standing in for an extractor's cached ones."""
    from types import SimpleNamespace

    from exifkit.data.manifest import Entry
    from exifkit.data.suites import Pair, Sample, Suite

    def sample(name, label):
        return Sample(Entry(path=name, sha256=name), label, "x")

    train = [sample(f"t{i}", 0) for i in range(len(reals) - 20)]
    test_reals = [sample(f"r{i}", 0) for i in range(20)]
    test_fakes = [sample(f"f{i}", 1) for i in range(len(fakes))]
    feats = {s.key: x for s, x in zip(train + test_reals, reals)} | {s.key: x for s, x in zip(test_fakes, fakes)}
    splits = SimpleNamespace(oneclass_train=train, suite=Suite("s", [Pair("g", test_reals, test_fakes, False)]))
    return splits, feats


def test_component_sweep_shows_the_memorising_mixture_on_reals_it_did_not_fit(monkeypatch):
    import exifkit.oneclass as oneclass

    rng = np.random.default_rng(0)
    reals, fakes = _low_rank_reals(140), rng.normal(size=(20, 60)) * 5
    splits, feats = _split_of(reals, fakes)
    monkeypatch.setattr(oneclass, "cached_outputs",
                        lambda extractor, samples, *a, **k: ({s.key: feats[s.key] for s in samples}, []))
    extractor = type("E", (), {"eval": lambda self: self})()
    table = oneclass.component_sweep(extractor, splits, None, None, (1, 5), max_patches=None)
    assert list(table["components"]) == [1, 5]
    assert (table["train reals above threshold"] >= 0.97).all()  # the 2nd-percentile rule, by construction
    assert (table["test reals above threshold"] < 0.5).all()  # 120 reals in 60 dimensions: memorised
    assert table["auc"].between(0, 1).all()


def test_mean_summary_and_descriptions_of_fitted_runs(features):
    import pandas as pd

    from exifkit.oneclass import OneClassRun, describe_runs, mean_summary, saved_detector

    train, _ = features
    det = OneClassDetector().fit(train)
    table = pd.DataFrame([{"generator": "g", "acc": 0.5, "real_acc": 1, "fake_acc": 0, "ap": 0.3, "auc": 0.6},
                          {"generator": "mean", "acc": 0.7, "real_acc": 0.9, "fake_acc": 0.5, "ap": 0.4, "auc": 0.8}])
    runs = {("raw", "paper"): OneClassRun(det, {}, table, "too few reals")}
    summary = mean_summary({"pretext": runs, "random init": runs})
    assert list(summary["extractor"]) == ["pretext", "random init"] and (summary["auc"] == 0.8).all()
    lines = describe_runs(runs)
    assert lines[0].split() == ["raw", "paper:", "threshold", f"{det.threshold_:.1f}", "from", "400", "reals"]
    assert lines[-1] == "Warning (paper): too few reals"
    assert saved_detector("out", "random", "paper").as_posix() == "out/oneclass/random_paper.json"
    assert saved_detector("out", "pretext", "small_sample", "aligned_jpeg95").as_posix() == \
        "out/oneclass/aligned_jpeg95/pretext_small_sample.json"
