import numpy as np
import pytest

from exifkit.data.manifest import Entry
from exifkit.data.suites import Pair, Sample, Suite
from exifkit.probe import FeatureSet, ProbeConfig, choose_strength, fake_subset, fit_probe, learning_curve


def _samples(prefix: str, label: int, n: int, group: str | None = None):
    return [Sample(Entry(path=f"{prefix}{i}", sha256=f"{prefix}{i}", label="fake" if label else "real"), label,
                   group or prefix) for i in range(n)]


def _features(samples, rng, shift: dict[str, float]):
    """5-d Gaussian features; a group's images are moved by ``shift[group]`` along the first axis."""
    x = rng.normal(size=(len(samples), 5))
    x[:, 0] += [shift.get(s.group, 0.0) for s in samples]
    return FeatureSet(samples, x)


def test_fake_subset_keeps_every_real_and_the_share_of_each_fake_group():
    rng = np.random.default_rng(0)
    train = FeatureSet(_samples("r", 0, 30) + _samples("a", 1, 8) + _samples("b", 1, 20), np.zeros((58, 2)))
    keep = fake_subset(train, 0.25, rng)
    kept = [s for s, k in zip(train.samples, keep) if k]
    assert sum(s.label == 0 for s in kept) == 30
    assert sum(s.group == "a" for s in kept) == 2 and sum(s.group == "b" for s in kept) == 5
    tiny = fake_subset(train, 0.01, rng)  # never a group left without fakes
    assert {s.group for s, k in zip(train.samples, tiny) if k and s.label} == {"a", "b"}


def test_a_probe_needs_both_classes():
    with pytest.raises(ValueError, match="real and generated"):
        fit_probe(np.zeros((4, 3)), np.zeros(4, dtype=np.int64), 1.0)


def test_strength_is_chosen_on_validation_and_the_curve_refits_on_shares_of_the_fakes():
    rng = np.random.default_rng(1)
    shift = {"seen_gen": 3.0, "unseen_gen": 1.5}
    train = _features(_samples("tr", 0, 60, "real") + _samples("ta", 1, 40, "seen_gen"), rng, shift)
    validation = _features(_samples("vr", 0, 20, "real") + _samples("va", 1, 10, "seen_gen"), rng, shift)
    reals = _samples("r", 0, 30, "real")
    suite = Suite("t", [Pair("seen_gen", reals, _samples("a", 1, 20, "seen_gen"), True),
                        Pair("unseen_gen", reals, _samples("b", 1, 20, "unseen_gen"), False)])
    test = _features(suite.samples(), rng, shift)

    config = ProbeConfig(strengths=(1e-4, 1.0), fractions=(0.25, 1.0), repeats=3)
    strength, by_strength = choose_strength(train, validation, config)
    assert set(by_strength) == {1e-4, 1.0} and by_strength[strength] == max(by_strength.values())
    assert by_strength[strength] > 0.9  # the shift along one axis is found

    curve = learning_curve(train, test, suite, strength, config)
    assert list(curve["fraction"]) == [0.25, 0.25, 0.25, 1.0]  # repeats only below the full set
    assert list(curve["training fakes"]) == [10, 10, 10, 40]
    full = curve[curve["fraction"] == 1.0].iloc[0]
    assert full["seen auc"] > 0.95 and 0.6 < full["unseen auc"] < full["seen auc"]  # the weaker shift ranks lower
