"""One-class detection: a Gaussian mixture fitted on features of real photos only; an image whose
log-likelihood falls below a low percentile of the training reals' is called AI-generated.

Two settings. ``method="gmm"`` is the authors' protocol exactly (5 full components, threshold at the 2nd
percentile of the *training* reals). It needs many more reals than feature dimensions: with a few hundred
reals in 528 dimensions each full covariance is singular up to ``reg_covar``, the mixture memorises its
training points, and held-out reals fall below the threshold (:func:`diagnose` says so).
``method="small_sample"`` standardises the features and picks, by the mean log-likelihood of *held-out
reals* under k-fold cross-validation, among shrinkage (Ledoit-Wolf), probabilistic PCA and mixtures with a
larger ``reg_covar``; every candidate is a density in the same space, so their likelihoods compare. Its
threshold is set on reals kept out of fitting (``calibration_fraction``). Fakes are never looked at.

Every candidate is stored as a full-covariance Gaussian mixture (:class:`MixtureDensity`): plain arrays
(npz) plus JSON, never pickle, reloaded to the identical model. :class:`OneClassDetector` is a
scikit-learn outlier detector, so ``clone``, ``get_params`` and pipelines work on it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .errors import SettingError, TooFewImagesError
from .features import cached_outputs
from .metrics import roc_auc, suite_table
from .report import save_table

METHODS = ("gmm", "small_sample")


class DegenerateMixtureWarning(UserWarning):
    """The authors' mixture fitted on fewer reals per component than feature dimensions."""


@dataclass(frozen=True)
class MixtureDensity:
    """A full-covariance Gaussian mixture as plain arrays: what every candidate density becomes (a
    fitted :class:`~sklearn.mixture.GaussianMixture`, shrinkage, PPCA), scored the way scikit-learn
    scores a mixture, so the authors' fitted mixture scores exactly as it would in scikit-learn."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D)
    precisions_cholesky: np.ndarray  # (K, D, D): upper factors U with U U^T = inverse covariance

    @classmethod
    def from_covariances(cls, weights, means, covariances) -> "MixtureDensity":

        covariances = np.asarray(covariances, dtype=float)
        chol = np.stack([solve_triangular(np.linalg.cholesky(c), np.eye(len(c)), lower=True).T for c in covariances])
        return cls(np.asarray(weights, float), np.asarray(means, float), covariances, chol)

    @classmethod
    def from_mixture(cls, gmm: GaussianMixture) -> "MixtureDensity":
        """From a fitted mixture's public attributes; tied, diagonal and spherical covariances are
        written out as full matrices."""
        k, d = gmm.means_.shape
        cov = np.asarray(gmm.covariances_, float)
        if gmm.covariance_type == "full":
            return cls(gmm.weights_, gmm.means_, cov, np.asarray(gmm.precisions_cholesky_, float))
        full = {"tied": lambda: np.repeat(cov[None], k, axis=0),
                "diag": lambda: np.stack([np.diag(c) for c in cov]),
                "spherical": lambda: np.stack([c * np.eye(d) for c in cov])}[gmm.covariance_type]()
        return cls.from_covariances(gmm.weights_, gmm.means_, full)

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        """Log-likelihood of each row of ``x``."""
        d = self.means.shape[1]
        log_prob = np.empty((len(x), len(self.weights)))
        for k, (mu, chol) in enumerate(zip(self.means, self.precisions_cholesky)):
            y = np.dot(x, chol) - np.dot(mu, chol)
            log_prob[:, k] = np.sum(np.square(y), axis=1)
        log_det = np.log(np.diagonal(self.precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)
        return logsumexp(-0.5 * (d * np.log(2 * np.pi) + log_prob) + log_det + np.log(self.weights), axis=1)


def candidate_densities(config: "OneClassDetector") -> dict[str, object]:
    """Name -> function fitting a :class:`MixtureDensity` on (standardised) features, under the
    hyperparameters of ``config`` (an unfitted detector will do)."""
    def ledoit_wolf(x):
        lw = LedoitWolf().fit(x)
        return MixtureDensity.from_covariances([1.0], [lw.location_], [lw.covariance_])

    def ppca(k):
        def fit(x):
            pca = PCA(n_components=min(k, len(x) - 1, x.shape[1]), random_state=config.random_state).fit(x)
            return MixtureDensity.from_covariances([1.0], [pca.mean_], [pca.get_covariance()])
        return fit

    def mixture(n, reg):
        def fit(x):
            if n == 1:  # one component: the regularised sample covariance, no EM needed
                cov = np.cov(x, rowvar=False, bias=True) + reg * np.eye(x.shape[1])
                return MixtureDensity.from_covariances([1.0], [x.mean(0)], [cov])
            return MixtureDensity.from_mixture(GaussianMixture(
                n, covariance_type="full", init_params=config.init_params, random_state=config.random_state,
                reg_covar=reg, max_iter=config.max_iter).fit(x))
        return fit

    out = {"ledoit_wolf": ledoit_wolf}
    out.update({f"ppca_{k}": ppca(k) for k in config.ppca_components})
    out.update({f"gmm{n}_reg{r:g}": mixture(n, r) for n in config.mixture_components for r in config.mixture_reg_covar})
    return out


def select_density(features: np.ndarray, config: "OneClassDetector") -> tuple[str, "pd.DataFrame"]:
    """The candidate with the highest mean held-out log-likelihood of reals under k-fold cross-validation,
    and the table of every candidate's score (reals only: fakes never choose)."""
    rng = np.random.default_rng(config.random_state)
    folds = np.array_split(rng.permutation(len(features)), config.folds)
    rows = []
    for name, fit in candidate_densities(config).items():
        scores = []
        for k, held in enumerate(folds):
            train = np.concatenate([f for j, f in enumerate(folds) if j != k])
            try:
                scores.append(float(np.mean(fit(features[train]).score_samples(features[held]))))
            except (ValueError, np.linalg.LinAlgError):  # a component collapsed on this fold
                scores.append(-np.inf)
        rows.append({"density": name, "heldout_real_loglik": float(np.mean(scores)),
                     "worst_fold": float(np.min(scores))})
    table = pd.DataFrame(rows).sort_values("heldout_real_loglik", ascending=False, ignore_index=True)
    return str(table["density"][0]), table


def diagnose(n_reals: int, n_features: int, config: "OneClassDetector",
             heldout_real_acc: float | None = None) -> str | None:
    """A sentence when the mixture is in the regime where it memorises its reals, else None."""
    if config.method != "gmm" or config.covariance_type != "full":
        return None
    per_component = n_reals / max(config.n_components, 1)
    notes = []
    if per_component <= n_features:
        notes.append(f"{n_reals} reals for {config.n_components} full {n_features}-dimensional covariances "
                     f"(about {per_component:.0f} reals each, fewer than the {n_features} dimensions): every "
                     f"covariance is singular up to reg_covar={config.reg_covar:g}")
    if heldout_real_acc is not None and heldout_real_acc < 0.5:
        notes.append(f"only {heldout_real_acc:.0%} of held-out reals score above the threshold")
    if not notes:
        return None
    return ("The authors' GMM is degenerate here: " + "; ".join(notes) +
            ". It memorises its training reals; use method='small_sample', or many more reals.")


class OneClassDetector(OutlierMixin, BaseEstimator):
    """A density of real-photo features; an image whose log-likelihood is at or below ``threshold_`` is
    called AI-generated. A scikit-learn outlier detector: ``score_samples`` is the log-likelihood (higher
    = more photographic), ``decision_function`` the margin over the threshold, ``predict`` +1 for real
    and -1 for AI-generated. The hyperparameters are the authors' by default (``method="gmm"``)."""

    def __init__(self, *, method: str = "gmm", n_components: int = 5, covariance_type: str = "full",
                 init_params: str = "k-means++", random_state: int = 42, reg_covar: float = 1e-6,
                 max_iter: int = 100, threshold_percentile: float = 2.0, calibration_fraction: float = 0.2,
                 folds: int = 5, ppca_components: tuple[int, ...] = (8, 16, 32, 64, 128),
                 mixture_reg_covar: tuple[float, ...] = (1e-2, 1e-1), mixture_components: tuple[int, ...] = (1, 3)):
        self.method = method  # "gmm": the authors' protocol; "small_sample": chosen on held-out reals
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.init_params = init_params
        self.random_state = random_state
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.threshold_percentile = threshold_percentile  # of the reals that set it (the training reals for "gmm")
        # small_sample only
        self.calibration_fraction = calibration_fraction  # reals kept out of fitting to set the threshold
        self.folds = folds
        self.ppca_components = ppca_components
        self.mixture_reg_covar = mixture_reg_covar  # on standardised features
        self.mixture_components = mixture_components

    @staticmethod
    def _percentile_value(scores: np.ndarray, percentile: float) -> float:
        """The authors' rule: the value at index floor(p/100 * N) of the sorted scores."""
        ordered = np.sort(scores)
        return float(ordered[int(np.floor(percentile / 100 * len(ordered)))])

    def fit(self, X, y=None) -> "OneClassDetector":
        """Fitted in float64: on a few hundred float32 features EM fails outright with "ill-defined
        empirical covariance" where float64 converges (measured on the extended profile's 648 reals).
        ``y`` is ignored: only reals are fitted.

        BLAS runs on one thread here: the matrices (a few hundred by 528) are too small to split, and
        numpy's and scipy's OpenBLAS pools, each of one thread per core, wait on each other and on
        PyTorch's threads (measured on 2 cores: the demo's small-sample selection 8.9 s on BLAS's
        default threads, 3.2 s on one)."""
        with threadpool_limits(1, user_api="blas"):
            return self._fit(X)

    def _fit(self, X) -> "OneClassDetector":
        if self.method not in METHODS:
            raise SettingError(f"method must be one of {METHODS}, not {self.method!r}")
        X = validate_data(self, X, dtype=np.float64)
        if len(X) < max(self.n_components, 2):
            raise TooFewImagesError(f"n_samples = {len(X)}: too few training features for "
                                    f"{self.n_components} mixture components")
        self.mean_ = self.scale_ = self.selection_ = self.calibration_real_acc_ = None
        self.n_calibration_ = 0
        if self.method == "small_sample":
            return self._fit_small_sample(X)
        gmm = GaussianMixture(n_components=self.n_components, covariance_type=self.covariance_type,
                              init_params=self.init_params, random_state=self.random_state,
                              reg_covar=self.reg_covar, max_iter=self.max_iter).fit(X)
        self.density_, self.density_name_ = MixtureDensity.from_mixture(gmm), "gmm"
        self.converged_, self.n_iter_ = bool(gmm.converged_), int(gmm.n_iter_)
        self.threshold_ = self._percentile_value(self.density_.score_samples(X), self.threshold_percentile)
        self.n_train_ = len(X)
        warning = diagnose(len(X), X.shape[1], self)
        if warning:
            warnings.warn(warning, DegenerateMixtureWarning, stacklevel=2)
        return self

    def _fit_small_sample(self, X: np.ndarray) -> "OneClassDetector":
        order = np.random.default_rng([self.random_state, 5]).permutation(len(X))
        n_cal = int(round(len(X) * self.calibration_fraction))
        if n_cal < 10 or len(X) - n_cal < 2 * self.folds:
            raise TooFewImagesError(f"n_samples = {len(X)}: too few reals to fit on some and calibrate on "
                                    f"{self.calibration_fraction:.0%} of them (need 10 or more for calibration)")
        fit_part, calibration = X[order[n_cal:]], X[order[:n_cal]]
        self.mean_ = fit_part.mean(axis=0)
        self.scale_ = fit_part.std(axis=0) + 1e-8
        z = (fit_part - self.mean_) / self.scale_
        self.density_name_, self.selection_ = select_density(z, self)
        self.density_ = candidate_densities(self)[self.density_name_](z)
        self.converged_, self.n_iter_ = True, 0
        calibration_scores = self._loglik(calibration)
        self.threshold_ = self._percentile_value(calibration_scores, self.threshold_percentile)
        self.calibration_real_acc_ = float((calibration_scores > self.threshold_).mean())
        self.n_train_, self.n_calibration_ = len(fit_part), n_cal
        return self

    def _loglik(self, X: np.ndarray) -> np.ndarray:
        if self.mean_ is not None:
            X = (X - self.mean_) / self.scale_
        return self.density_.score_samples(X)

    @property
    def offset_(self) -> float:
        """``decision_function = score_samples - offset_``, non-negative for real as scikit-learn has it:
        the float just above ``threshold_``, so an image exactly at the threshold stays AI-generated."""
        return float(np.nextafter(self.threshold_, np.inf))

    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood per image (higher = more like the reals it was fitted on)."""
        check_is_fitted(self)
        return self._loglik(validate_data(self, X, dtype=np.float64, reset=False))

    def decision_function(self, X) -> np.ndarray:
        """Non-negative for real, negative for AI-generated (the authors' rule: real only above ``threshold_``)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 real, -1 AI-generated."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def save(self, path: str | Path) -> Path:
        check_is_fitted(self)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        d = self.density_
        arrays = {"weights_": d.weights, "means_": d.means, "covariances_": d.covariances,
                  "precisions_cholesky_": d.precisions_cholesky}
        if self.mean_ is not None:
            arrays.update(standardise_mean=self.mean_, standardise_scale=self.scale_)
        np.savez(path.with_suffix(".npz"), **arrays)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}
        meta = {"config": params, "threshold": self.threshold_, "n_train": self.n_train_,
                "n_calibration": self.n_calibration_, "density": self.density_name_,
                "calibration_real_acc": self.calibration_real_acc_, "n_components": int(len(d.weights)),
                "converged": self.converged_, "n_iter": self.n_iter_, "n_features": int(self.n_features_in_),
                "selection": None if self.selection_ is None else self.selection_.to_dict("records")}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return path.with_suffix(".json")

    @classmethod
    def load(cls, path: str | Path) -> "OneClassDetector":
        """A detector :meth:`save` wrote (plain arrays and JSON, no pickle), scoring exactly as it did."""
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        det = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as arrays:
            det.density_ = MixtureDensity(arrays["weights_"], arrays["means_"], arrays["covariances_"],
                                          arrays["precisions_cholesky_"])
            has_scale = "standardise_mean" in arrays.files
            det.mean_ = arrays["standardise_mean"] if has_scale else None
            det.scale_ = arrays["standardise_scale"] if has_scale else None
        det.threshold_, det.n_train_, det.n_features_in_ = meta["threshold"], meta["n_train"], meta["n_features"]
        det.converged_, det.n_iter_ = meta["converged"], meta["n_iter"]
        det.n_calibration_, det.density_name_ = meta.get("n_calibration", 0), meta.get("density", "gmm")
        det.calibration_real_acc_ = meta.get("calibration_real_acc")
        det.selection_ = None
        if meta.get("selection"):

            det.selection_ = pd.DataFrame(meta["selection"])
        return det


def validation_accuracy(detector: OneClassDetector, extractor, fakes, store, cache_root: Path,
                        max_patches: int | None) -> dict:
    """The one-class detector's accuracies on training-side data it never fitted: the reals that set its
    threshold, and generated validation images (for the bundle's guard rail)."""
    feats, failures = cached_outputs(extractor, fakes, store, cache_root, max_patches=max_patches, progress=False)
    fake_acc = float((detector.predict(np.stack(list(feats.values()))) == -1).mean()) if feats else None
    return {"real_acc": detector.calibration_real_acc_, "fake_acc": fake_acc,
            "validation_images": detector.n_calibration_ + len(feats),
            "what": "reals: the held-out reals that set the threshold; fakes: the binary run's validation fakes"}


@dataclass
class OneClassRun:
    detector: OneClassDetector
    fake_scores: dict  # sample key -> minus the log-likelihood (larger = more fake)
    table: "pd.DataFrame"
    warning: str | None


def evaluate_oneclass(extractor, splits, store, cache_root: Path, settings: dict[str, OneClassDetector], *,
                      protocols: dict, max_patches: int | None, bootstrap: int = 0, seed: int = 0,
                      progress: bool = True) -> dict[tuple[str, str], OneClassRun]:
    """Fit every setting on the training reals and score the test suite, under every protocol (name ->
    Protocol, None for the raw files). Under a protocol, the training reals go through it too, so a
    format-aligned view fits and tests on identically treated images."""
    runs = {}
    for pname, protocol in protocols.items():
        train, fail_train = cached_outputs(extractor, splits.oneclass_train, store, cache_root,
                                           max_patches=max_patches, protocol=protocol, progress=progress)
        test, fail_test = cached_outputs(extractor, splits.suite.samples(), store, cache_root,
                                         max_patches=max_patches, protocol=protocol, progress=progress)
        for report in (fail_train, fail_test):
            if report:
                print(report.to_markdown())
        x = np.stack(list(train.values()))
        keys = list(test)
        test_x = np.stack([test[k] for k in keys])
        for sname, setting in settings.items():
            det = clone(setting).fit(x)
            scores = dict(zip(keys, (-det.score_samples(test_x)).tolist()))
            table = suite_table(splits.suite, scores, -det.threshold_, bootstrap, seed,
                                columns=("acc", "real_acc", "fake_acc", "ap", "ap_real_positive", "auc", "tpr@5%fpr"))
            runs[pname, sname] = OneClassRun(det, scores, table, diagnose(len(x), x.shape[1], setting))
    return runs


def saved_detector(out: Path, extractor_name: str, setting: str, protocol: str = "raw") -> Path:
    """Where :func:`evaluate_and_save` keeps a fitted detector (the raw view at the top of ``oneclass/``)."""
    base = Path(out) / "oneclass"
    return (base if protocol == "raw" else base / protocol) / f"{extractor_name}_{setting}.json"


def evaluate_and_save(extractor, splits, store, out: Path, settings: dict[str, OneClassDetector], extractor_name: str,
                      *, protocols: dict, max_patches: int | None, bootstrap: int = 0, seed: int = 0,
                      progress: bool = True) -> dict[tuple[str, str], OneClassRun]:
    """:func:`evaluate_oneclass` on ``out/feature_cache``, with every detector saved where the evaluation stages and
    the bundle read it (:func:`saved_detector`) and every table as ``oneclass_NAME_SETTING_PROTOCOL``."""
    runs = evaluate_oneclass(extractor.eval(), splits, store, Path(out) / "feature_cache", settings,
                             protocols=protocols, max_patches=max_patches, bootstrap=bootstrap, seed=seed,
                             progress=progress)
    for (pname, sname), run in runs.items():
        run.detector.save(saved_detector(out, extractor_name, sname, pname))
        save_table(run.table.round(4), Path(out) / "tables", f"oneclass_{extractor_name}_{sname}_{pname}")
    return runs


def describe_runs(runs: dict[tuple[str, str], OneClassRun]) -> list[str]:
    """One line per (protocol, setting): its threshold and where it came from, then any degeneracy warning."""
    lines, warnings = [], []
    for (pname, sname), run in runs.items():
        d = run.detector
        chosen = f", density chosen on held-out reals: {d.density_name_}" if sname == "small_sample" else ""
        lines.append(f"{pname:>15} {sname:>12}: threshold {d.threshold_:.1f} from "
                     f"{d.n_calibration_ or d.n_train_} reals{chosen}")
        if run.warning and pname == "raw":
            warnings.append(f"Warning ({sname}): {run.warning}")
    return lines + warnings


def mean_summary(runs_by_extractor: dict[str, dict], columns=("acc", "real_acc", "fake_acc", "ap", "auc")):
    """The mean row of every table, one row per (extractor, setting, protocol)."""
    rows = []
    for name, runs in runs_by_extractor.items():
        for (pname, sname), run in runs.items():
            mean = run.table[run.table["generator"] == "mean"].iloc[0]
            rows.append({"extractor": name, "setting": sname, "protocol": pname, **{c: mean[c] for c in columns}})
    return pd.DataFrame(rows)


def component_sweep(extractor, splits, store, cache_root: Path, components, *, max_patches: int | None,
                    config: OneClassDetector | None = None, protocol=None):
    """The authors' mixture with each number of ``components`` on the training reals' features (read from
    the cache the evaluation filled): the share of training reals and of *test* reals above the threshold,
    and ROC-AUC over the whole test suite. Shows what memorising the training reals does."""
    config = config or OneClassDetector()
    options = dict(max_patches=max_patches, protocol=protocol, progress=False)
    train, _ = cached_outputs(extractor.eval(), splits.oneclass_train, store, cache_root, **options)
    test, _ = cached_outputs(extractor, splits.suite.samples(), store, cache_root, **options)
    x = np.stack(list(train.values()))
    samples = [s for s in splits.suite.samples() if s.key in test]
    labels = np.array([s.label for s in samples])
    test_x = np.stack([test[s.key] for s in samples])
    rows = []
    for k in components:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateMixtureWarning)
            det = clone(config).set_params(method="gmm", n_components=int(k)).fit(x)
        loglik = det.score_samples(test_x)
        rows.append({"components": int(k), "train reals above threshold": float(np.mean(det.predict(x) == 1)),
                     "test reals above threshold": float(np.mean(loglik[labels == 0] > det.threshold_)),
                     "test fakes below threshold": float(np.mean(loglik[labels == 1] <= det.threshold_)),
                     "auc": roc_auc(labels, -loglik)})
    return pd.DataFrame(rows)
