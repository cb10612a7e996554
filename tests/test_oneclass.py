import numpy as np
import pytest

from exifkit.oneclass import OneClassConfig, OneClassDetector


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)), rng.normal(size=(50, 6)) * 3


def test_threshold_is_the_authors_percentile_rule(features):
    train, _ = features
    det = OneClassDetector().fit(train)
    ll = np.sort(det.score(train))
    assert det.threshold == ll[int(np.floor(0.02 * len(train)))]  # index 8 of 400
    # real only if the log-likelihood *exceeds* the threshold: the 8 below it and the one at it are fake
    assert det.predict_fake(train).sum() == 9
    det10 = OneClassDetector(OneClassConfig(threshold_percentile=10)).fit(train)
    assert det10.threshold > det.threshold


def test_save_and_load_give_identical_scores_without_pickle(tmp_path, features):
    train, test = features
    det = OneClassDetector().fit(train)
    meta = det.save(tmp_path / "gmm")
    with np.load(tmp_path / "gmm.npz", allow_pickle=False) as arrays:  # plain arrays only
        assert set(arrays.files) == set(OneClassDetector.ARRAYS)
    again = OneClassDetector.load(meta)
    np.testing.assert_array_equal(again.score(test), det.score(test))
    assert again.threshold == det.threshold and again.config == det.config


def test_off_distribution_points_score_lower(features):
    train, test = features
    det = OneClassDetector().fit(train)
    assert np.median(det.score(test)) < det.threshold
    with pytest.raises(ValueError, match="3 training features for 5 mixture components"):
        OneClassDetector().fit(train[:3])


def _low_rank_reals(n, seed=0, dim=60):
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(6, dim))
    return rng.normal(size=(n, 6)) @ basis + 0.1 * rng.normal(size=(n, dim))


def test_small_sample_method_chooses_on_heldout_reals_and_calibrates_on_reals_it_did_not_fit(tmp_path):
    from exifkit.oneclass import candidate_densities

    reals = _low_rank_reals(150)
    config = OneClassConfig(method="small_sample", threshold_percentile=5.0, ppca_components=(2, 6, 20))
    det = OneClassDetector(config).fit(reals)
    assert det.n_calibration == 30 and det.n_train == 120
    assert det.density == det.selection["density"][0] and set(det.selection["density"]) == set(candidate_densities(config))
    assert det.density == "ppca_6"  # the true rank of the reals
    assert 0.9 <= det.calibration_real_acc <= 1.0
    new_reals, off = _low_rank_reals(200, seed=1), _low_rank_reals(200, seed=2) + 3.0
    assert (det.score(new_reals) > det.threshold).mean() > 0.85  # held-out reals stay real
    assert (det.score(off) <= det.threshold).mean() > 0.95
    again = OneClassDetector.load(det.save(tmp_path / "small"))
    np.testing.assert_allclose(again.score(off), det.score(off))
    assert again.density == det.density and again.threshold == det.threshold


def test_the_authors_gmm_on_few_reals_is_diagnosed_as_degenerate():
    from exifkit.oneclass import diagnose

    from exifkit.oneclass import DegenerateMixtureWarning

    reals = _low_rank_reals(150)
    with pytest.warns(DegenerateMixtureWarning, match="100 reals for 5 full 60-dimensional"):
        det = OneClassDetector().fit(reals[:100])
    heldout_acc = float((det.score(reals[100:]) > det.threshold).mean())
    message = diagnose(100, 60, det.config, heldout_acc)
    assert "degenerate" in message and "100 reals for 5 full 60-dimensional covariances" in message
    assert diagnose(100_000, 60, det.config, 0.97) is None
    assert diagnose(100, 60, OneClassConfig(method="small_sample")) is None


def test_small_sample_refuses_too_few_reals():
    with pytest.raises(ValueError, match="too few"):
        OneClassDetector(OneClassConfig(method="small_sample")).fit(_low_rank_reals(30))


def test_float32_features_are_fitted_in_float64(features):
    train, test = features
    det = OneClassDetector().fit(train.astype(np.float32))
    assert det.gmm.means_.dtype == np.float64
    np.testing.assert_allclose(det.score(test.astype(np.float32)), OneClassDetector().fit(train).score(test), rtol=1e-4)
