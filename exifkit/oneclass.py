"""One-class detection: a Gaussian mixture fitted on features of real photos only; an image whose
log-likelihood falls below a low percentile of the training reals' is called AI-generated.

Saved as plain arrays (npz) plus JSON, never pickle, and reloaded to the identical model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture


@dataclass(frozen=True)
class OneClassConfig:
    n_components: int = 5
    covariance_type: str = "full"
    init_params: str = "k-means++"
    random_state: int = 42
    reg_covar: float = 1e-6
    max_iter: int = 100
    threshold_percentile: float = 2.0  # of the training reals' log-likelihoods


class OneClassDetector:
    """``score`` is a log-likelihood (higher = more photographic); ``fake_score`` = -score."""

    ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")

    def __init__(self, config: OneClassConfig | None = None):
        self.config = config or OneClassConfig()
        self.gmm: GaussianMixture | None = None
        self.threshold: float | None = None
        self.n_train = 0

    def fit(self, features: np.ndarray) -> "OneClassDetector":
        c = self.config
        if len(features) < c.n_components:
            raise ValueError(f"{len(features)} training features for {c.n_components} mixture components")
        self.gmm = GaussianMixture(n_components=c.n_components, covariance_type=c.covariance_type,
                                   init_params=c.init_params, random_state=c.random_state,
                                   reg_covar=c.reg_covar, max_iter=c.max_iter).fit(features)
        train = np.sort(self.gmm.score_samples(features))
        # the authors' rule: the value at index floor(p/100 * N) of the sorted training scores
        self.threshold = float(train[int(np.floor(c.threshold_percentile / 100 * len(train)))])
        self.n_train = len(features)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        if self.gmm is None:
            raise RuntimeError("fit or load the detector first")
        return self.gmm.score_samples(features)

    def fake_score(self, features: np.ndarray) -> np.ndarray:
        return -self.score(features)

    def predict_fake(self, features: np.ndarray) -> np.ndarray:
        """The authors' rule: real only if the log-likelihood exceeds the threshold."""
        return self.score(features) <= self.threshold

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".npz"), **{k: getattr(self.gmm, k) for k in self.ARRAYS})
        meta = {"config": asdict(self.config), "threshold": self.threshold, "n_train": self.n_train,
                "converged": bool(self.gmm.converged_), "n_iter": int(self.gmm.n_iter_),
                "n_features": int(self.gmm.means_.shape[1])}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return path.with_suffix(".json")

    @classmethod
    def load(cls, path: str | Path) -> "OneClassDetector":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        det = cls(OneClassConfig(**meta["config"]))
        c = det.config
        gmm = GaussianMixture(n_components=c.n_components, covariance_type=c.covariance_type,
                              init_params=c.init_params, random_state=c.random_state, reg_covar=c.reg_covar)
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as arrays:
            for k in cls.ARRAYS:
                setattr(gmm, k, arrays[k])
        gmm.converged_, gmm.n_iter_ = meta["converged"], meta["n_iter"]
        gmm.n_features_in_ = meta["n_features"]
        det.gmm, det.threshold, det.n_train = gmm, meta["threshold"], meta["n_train"]
        return det


def extractor_features(extractor, samples, store, cache_root: Path, max_patches: int | None, progress: bool = True):
    """Image features of ``samples`` keyed by sample key (cached by weights and protocol)."""
    from .features import FeatureCache, extract_features, weights_hash

    size = extractor.config.patch_size
    cache = FeatureCache(cache_root, "extractor-" + weights_hash(extractor), f"feature grid{size} cap{max_patches} v1")
    feats, ok, failures = extract_features(extractor, samples, store, max_patches=max_patches, cache=cache,
                                           progress=progress)
    kept = [s for s, o in zip(samples, ok) if o]
    return {s.key: f for s, f in zip(kept, feats)}, failures, cache
