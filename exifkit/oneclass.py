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

Every candidate is stored as a full-covariance Gaussian mixture: plain arrays (npz) plus JSON, never
pickle, reloaded to the identical model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture
from .errors import SettingError, TooFewImagesError

METHODS = ("gmm", "small_sample")


class DegenerateMixtureWarning(UserWarning):
    """The authors' mixture fitted on fewer reals per component than feature dimensions."""


@dataclass(frozen=True)
class OneClassConfig:
    method: str = "gmm"  # "gmm": the authors' protocol; "small_sample": chosen on held-out reals
    n_components: int = 5
    covariance_type: str = "full"
    init_params: str = "k-means++"
    random_state: int = 42
    reg_covar: float = 1e-6
    max_iter: int = 100
    threshold_percentile: float = 2.0  # of the reals that set the threshold (training reals for "gmm")
    # small_sample only
    calibration_fraction: float = 0.2  # reals kept out of fitting to set the threshold
    folds: int = 5
    ppca_components: tuple[int, ...] = (8, 16, 32, 64, 128)
    mixture_reg_covar: tuple[float, ...] = (1e-2, 1e-1)  # on standardised features
    mixture_components: tuple[int, ...] = (1, 3)


def _full_mixture(weights, means, covariances) -> GaussianMixture:
    """A fitted-looking GaussianMixture from explicit parameters (for shrinkage and PPCA densities)."""
    from scipy.linalg import solve_triangular

    covariances = np.asarray(covariances, dtype=float)
    gmm = GaussianMixture(len(weights), covariance_type="full")
    gmm.weights_, gmm.means_, gmm.covariances_ = np.asarray(weights, float), np.asarray(means, float), covariances
    chol = np.stack([solve_triangular(np.linalg.cholesky(c), np.eye(len(c)), lower=True).T for c in covariances])
    gmm.precisions_cholesky_ = chol
    gmm.precisions_ = chol @ chol.transpose(0, 2, 1)
    gmm.converged_, gmm.n_iter_, gmm.n_features_in_ = True, 0, covariances.shape[1]
    return gmm


def candidate_densities(config: OneClassConfig) -> dict[str, object]:
    """Name -> function fitting a full-covariance mixture on (standardised) features."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    def ledoit_wolf(x):
        lw = LedoitWolf().fit(x)
        return _full_mixture([1.0], [lw.location_], [lw.covariance_])

    def ppca(k):
        def fit(x):
            pca = PCA(n_components=min(k, len(x) - 1, x.shape[1]), random_state=config.random_state).fit(x)
            return _full_mixture([1.0], [pca.mean_], [pca.get_covariance()])
        return fit

    def mixture(n, reg):
        def fit(x):
            if n == 1:  # one component: the regularised sample covariance, no EM needed
                return _full_mixture([1.0], [x.mean(0)], [np.cov(x, rowvar=False, bias=True) + reg * np.eye(x.shape[1])])
            return GaussianMixture(n, covariance_type="full", init_params=config.init_params,
                                   random_state=config.random_state, reg_covar=reg, max_iter=config.max_iter).fit(x)
        return fit

    out = {"ledoit_wolf": ledoit_wolf}
    out.update({f"ppca_{k}": ppca(k) for k in config.ppca_components})
    out.update({f"gmm{n}_reg{r:g}": mixture(n, r) for n in config.mixture_components for r in config.mixture_reg_covar})
    return out


def select_density(features: np.ndarray, config: OneClassConfig) -> tuple[str, "pd.DataFrame"]:
    """The candidate with the highest mean held-out log-likelihood of reals under k-fold cross-validation,
    and the table of every candidate's score (reals only: fakes never choose)."""
    import pandas as pd

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


def diagnose(n_reals: int, n_features: int, config: OneClassConfig,
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


class OneClassDetector:
    """``score`` is a log-likelihood (higher = more photographic); ``fake_score`` = -score."""

    ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")

    def __init__(self, config: OneClassConfig | None = None):
        self.config = config or OneClassConfig()
        if self.config.method not in METHODS:
            raise SettingError(f"method must be one of {METHODS}, not {self.config.method!r}")
        self.gmm: GaussianMixture | None = None
        self.threshold: float | None = None
        self.n_train = 0
        self.n_calibration = 0
        self.density = "gmm"  # which candidate (small_sample) or the authors' mixture
        self.mean: np.ndarray | None = None  # standardisation (small_sample), identity otherwise
        self.scale: np.ndarray | None = None
        self.selection = None  # small_sample: the candidates' held-out real log-likelihoods
        self.calibration_real_acc: float | None = None  # small_sample: reals above the threshold, of those that set it

    @staticmethod
    def _percentile_value(scores: np.ndarray, percentile: float) -> float:
        """The authors' rule: the value at index floor(p/100 * N) of the sorted scores."""
        ordered = np.sort(scores)
        return float(ordered[int(np.floor(percentile / 100 * len(ordered)))])

    def fit(self, features: np.ndarray) -> "OneClassDetector":
        """Fitted in float64: on a few hundred float32 features EM fails outright with "ill-defined
        empirical covariance" where float64 converges (measured on the extended profile's 648 reals)."""
        c = self.config
        features = np.asarray(features, dtype=np.float64)
        if len(features) < c.n_components:
            raise TooFewImagesError(f"{len(features)} training features for {c.n_components} mixture components")
        if c.method == "small_sample":
            return self._fit_small_sample(features)
        self.gmm = GaussianMixture(n_components=c.n_components, covariance_type=c.covariance_type,
                                   init_params=c.init_params, random_state=c.random_state,
                                   reg_covar=c.reg_covar, max_iter=c.max_iter).fit(features)
        self.threshold = self._percentile_value(self.gmm.score_samples(features), c.threshold_percentile)
        self.n_train = len(features)
        warning = diagnose(len(features), np.shape(features)[1], c)
        if warning:
            import warnings

            warnings.warn(warning, DegenerateMixtureWarning, stacklevel=2)
        return self

    def _fit_small_sample(self, features: np.ndarray) -> "OneClassDetector":
        c = self.config
        order = np.random.default_rng([c.random_state, 5]).permutation(len(features))
        n_cal = int(round(len(features) * c.calibration_fraction))
        if n_cal < 10 or len(features) - n_cal < 2 * c.folds:
            raise TooFewImagesError(f"{len(features)} reals are too few to fit on some and calibrate on "
                             f"{c.calibration_fraction:.0%} of them (need 10 or more for calibration)")
        fit_part, calibration = features[order[n_cal:]], features[order[:n_cal]]
        self.mean = fit_part.mean(axis=0)
        self.scale = fit_part.std(axis=0) + 1e-8
        z = (fit_part - self.mean) / self.scale
        self.density, self.selection = select_density(z, c)
        self.gmm = candidate_densities(c)[self.density](z)
        calibration_scores = self.score(calibration)
        self.threshold = self._percentile_value(calibration_scores, c.threshold_percentile)
        self.calibration_real_acc = float((calibration_scores > self.threshold).mean())
        self.n_train, self.n_calibration = len(fit_part), n_cal
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        if self.gmm is None:
            raise RuntimeError("fit or load the detector first")
        features = np.asarray(features, dtype=np.float64)
        if self.mean is not None:
            features = (features - self.mean) / self.scale
        return self.gmm.score_samples(features)

    def fake_score(self, features: np.ndarray) -> np.ndarray:
        return -self.score(features)

    def predict_fake(self, features: np.ndarray) -> np.ndarray:
        """The authors' rule: real only if the log-likelihood exceeds the threshold."""
        return self.score(features) <= self.threshold

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self.gmm, k) for k in self.ARRAYS}
        if self.mean is not None:
            arrays.update(standardise_mean=self.mean, standardise_scale=self.scale)
        np.savez(path.with_suffix(".npz"), **arrays)
        meta = {"config": asdict(self.config), "threshold": self.threshold, "n_train": self.n_train,
                "n_calibration": self.n_calibration, "density": self.density,
                "calibration_real_acc": self.calibration_real_acc,
                "n_components": int(len(self.gmm.weights_)),
                "converged": bool(self.gmm.converged_), "n_iter": int(self.gmm.n_iter_),
                "n_features": int(self.gmm.means_.shape[1]),
                "selection": None if self.selection is None else self.selection.to_dict("records")}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return path.with_suffix(".json")

    @classmethod
    def load(cls, path: str | Path) -> "OneClassDetector":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        raw = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        det = cls(OneClassConfig(**raw))
        c = det.config
        gmm = GaussianMixture(n_components=meta.get("n_components", c.n_components), covariance_type=c.covariance_type,
                              init_params=c.init_params, random_state=c.random_state, reg_covar=c.reg_covar)
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as arrays:
            for k in cls.ARRAYS:
                setattr(gmm, k, arrays[k])
            if "standardise_mean" in arrays.files:
                det.mean, det.scale = arrays["standardise_mean"], arrays["standardise_scale"]
        gmm.converged_, gmm.n_iter_ = meta["converged"], meta["n_iter"]
        gmm.n_features_in_ = meta["n_features"]
        det.gmm, det.threshold, det.n_train = gmm, meta["threshold"], meta["n_train"]
        det.n_calibration, det.density = meta.get("n_calibration", 0), meta.get("density", "gmm")
        det.calibration_real_acc = meta.get("calibration_real_acc")
        if meta.get("selection"):
            import pandas as pd

            det.selection = pd.DataFrame(meta["selection"])
        return det


def extractor_features(extractor, samples, store, cache_root: Path, max_patches: int | None, progress: bool = True,
                       protocol=None, memo=None):
    """Image features of ``samples`` keyed by sample key (cached by weights and protocol). ``protocol``
    (a :class:`~exifkit.perturb.Protocol`) is applied to the pixels first: None is the raw files."""
    from .features import FeatureCache, cache_tag, extract_features, weights_hash

    tag = cache_tag("feature", extractor.config.patch_size, max_patches, protocol)
    cache = FeatureCache(cache_root, "extractor-" + weights_hash(extractor), tag)
    feats, ok, failures = extract_features(extractor, samples, store, max_patches=max_patches, cache=cache,
                                           transform=protocol, progress=progress, memo=memo)
    kept = [s for s, o in zip(samples, ok) if o]
    return {s.key: f for s, f in zip(kept, feats)}, failures, cache


def validation_accuracy(detector: OneClassDetector, extractor, fakes, store, cache_root: Path,
                        max_patches: int | None) -> dict:
    """The one-class detector's accuracies on training-side data it never fitted: the reals that set its
    threshold, and generated validation images (for the bundle's guard rail)."""
    feats, failures, _ = extractor_features(extractor, fakes, store, cache_root, max_patches, progress=False)
    fake_acc = float((detector.score(np.stack(list(feats.values()))) <= detector.threshold).mean()) if feats else None
    return {"real_acc": detector.calibration_real_acc, "fake_acc": fake_acc,
            "validation_images": detector.n_calibration + len(feats),
            "what": "reals: the held-out reals that set the threshold; fakes: the binary run's validation fakes"}


@dataclass
class OneClassRun:
    detector: OneClassDetector
    fake_scores: dict  # sample key -> minus the log-likelihood (larger = more fake)
    table: "pd.DataFrame"
    warning: str | None


def evaluate_oneclass(extractor, splits, store, cache_root: Path, settings: dict[str, OneClassConfig], *,
                      protocols: dict, max_patches: int | None, bootstrap: int = 0, seed: int = 0,
                      progress: bool = True) -> dict[tuple[str, str], OneClassRun]:
    """Fit every setting on the training reals and score the test suite, under every protocol (name ->
    Protocol, None for the raw files). Under a protocol, the training reals go through it too, so a
    format-aligned view fits and tests on identically treated images."""
    from .metrics import suite_table

    runs = {}
    for pname, protocol in protocols.items():
        train, fail_train, _ = extractor_features(extractor, splits.oneclass_train, store, cache_root, max_patches,
                                                  progress, protocol)
        test, fail_test, _ = extractor_features(extractor, splits.suite.samples(), store, cache_root, max_patches,
                                                progress, protocol)
        for report in (fail_train, fail_test):
            if report:
                print(report.to_markdown())
        x = np.stack(list(train.values()))
        keys = list(test)
        test_x = np.stack([test[k] for k in keys])
        for sname, config in settings.items():
            det = OneClassDetector(config).fit(x)
            scores = dict(zip(keys, (-det.score(test_x)).tolist()))
            table = suite_table(splits.suite, scores, -det.threshold, bootstrap, seed,
                                columns=("acc", "real_acc", "fake_acc", "ap", "ap_real_positive", "auc", "tpr@5%fpr"))
            runs[pname, sname] = OneClassRun(det, scores, table, diagnose(len(x), x.shape[1], config))
    return runs


def saved_detector(out: Path, extractor_name: str, setting: str, protocol: str = "raw") -> Path:
    """Where :func:`evaluate_and_save` keeps a fitted detector (the raw view at the top of ``oneclass/``)."""
    base = Path(out) / "oneclass"
    return (base if protocol == "raw" else base / protocol) / f"{extractor_name}_{setting}.json"


def evaluate_and_save(extractor, splits, store, out: Path, settings: dict[str, OneClassConfig], extractor_name: str,
                      *, protocols: dict, max_patches: int | None, bootstrap: int = 0, seed: int = 0,
                      progress: bool = True) -> dict[tuple[str, str], OneClassRun]:
    """:func:`evaluate_oneclass` on ``out/feature_cache``, with every detector saved where notebook 05 and
    the bundle read it (:func:`saved_detector`) and every table as ``oneclass_NAME_SETTING_PROTOCOL``."""
    from .report import save_table

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
        chosen = f", density chosen on held-out reals: {d.density}" if sname == "small_sample" else ""
        lines.append(f"{pname:>15} {sname:>12}: threshold {d.threshold:.1f} from "
                     f"{d.n_calibration or d.n_train} reals{chosen}")
        if run.warning and pname == "raw":
            warnings.append(f"Warning ({sname}): {run.warning}")
    return lines + warnings


def mean_summary(runs_by_extractor: dict[str, dict], columns=("acc", "real_acc", "fake_acc", "ap", "auc")):
    """The mean row of every table, one row per (extractor, setting, protocol)."""
    import pandas as pd

    rows = []
    for name, runs in runs_by_extractor.items():
        for (pname, sname), run in runs.items():
            mean = run.table[run.table["generator"] == "mean"].iloc[0]
            rows.append({"extractor": name, "setting": sname, "protocol": pname, **{c: mean[c] for c in columns}})
    return pd.DataFrame(rows)


def component_sweep(extractor, splits, store, cache_root: Path, components, *, max_patches: int | None,
                    config: OneClassConfig | None = None, protocol=None):
    """The authors' mixture with each number of ``components`` on the training reals' features (read from
    the cache the evaluation filled): the share of training reals and of *test* reals above the threshold,
    and ROC-AUC over the whole test suite. Shows what memorising the training reals does."""
    import warnings

    import pandas as pd

    from .metrics import roc_auc

    config = config or OneClassConfig()
    train, _, _ = extractor_features(extractor.eval(), splits.oneclass_train, store, cache_root, max_patches, False,
                                     protocol)
    test, _, _ = extractor_features(extractor, splits.suite.samples(), store, cache_root, max_patches, False, protocol)
    x = np.stack(list(train.values()))
    samples = [s for s in splits.suite.samples() if s.key in test]
    labels = np.array([s.label for s in samples])
    test_x = np.stack([test[s.key] for s in samples])
    rows = []
    for k in components:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateMixtureWarning)
            det = OneClassDetector(OneClassConfig(**{**asdict(config), "method": "gmm", "n_components": int(k)})).fit(x)
        loglik = det.score(test_x)
        rows.append({"components": int(k), "train reals above threshold": float(np.mean(det.score(x) > det.threshold)),
                     "test reals above threshold": float(np.mean(loglik[labels == 0] > det.threshold)),
                     "test fakes below threshold": float(np.mean(loglik[labels == 1] <= det.threshold)),
                     "auc": roc_auc(labels, -loglik)})
    return pd.DataFrame(rows)
