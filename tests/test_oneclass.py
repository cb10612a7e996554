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
