"""Both detectors under every protocol: one long table (protocol, detector, generator, metrics)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .data.manifest import DataStore
from .data.suites import Suite
from .features import shared_outputs
from .metrics import suite_table
from .model.extractor import random_extractor
from .oneclass import OneClassDetector, saved_detector
from .perturb import Protocol, load_protocols


def evaluate_protocols(protocols: list[Protocol], suite: Suite, store: DataStore, cache_root: Path, *,
                       extractor=None, oneclass=None, binary=None, max_patches: int | None = None,
                       bootstrap: int = 0, seed: int = 0, progress: bool = True, binary_threshold: float = 0.5):
    """Per (protocol, detector, generator) metrics; failures per protocol are returned, not hidden."""
    tables, failures = [], {}
    detectors = [d for d in (("one-class", extractor if oneclass is not None else None), ("binary", binary))
                 if d[1] is not None]
    for protocol in protocols:
        outputs = shared_outputs([network for _, network in detectors], suite.samples(), store, cache_root,
                                 max_patches=max_patches, protocol=protocol, progress=progress)
        for (name, _), (values, fail) in zip(detectors, outputs):
            if name == "one-class":
                scores = {k: float(-oneclass.score_samples(v[None])[0]) for k, v in values.items()}
                t = suite_table(suite, scores, -oneclass.threshold_, bootstrap, seed)
                t.insert(0, "detector", "one-class GMM")  # the name of the column value; any one-class density
            else:
                t = suite_table(suite, values, binary_threshold, bootstrap, seed)
                t.insert(0, "detector", "binary")
            t.insert(0, "protocol", protocol.id)
            tables.append(t)
            failures[(protocol.id, name)] = fail
    return pd.concat(tables, ignore_index=True), failures


@contextmanager
def _inference_precision(precision: str, *extractors):
    before = [e.precision for e in extractors]
    try:
        for e in extractors:
            e.precision = precision
        yield
    finally:
        for e, p in zip(extractors, before):
            e.precision = p


def _interval(text: str) -> tuple[float, float]:
    low, high = text.strip("[]").split(",")
    return float(low), float(high)


def precision_agreement(suite: Suite, store: DataStore, cache_root: Path, *, extractor, oneclass, binary,
                        binary_threshold: float, max_patches: int | None, bootstrap: int, seed: int = 0,
                        precisions=("fp32", "auto")) -> pd.DataFrame:
    """Both detectors' mean ROC-AUC and AP on the raw files under each inference precision, with the
    float32 run's bootstrap intervals: whether bf16 products move a headline number outside the
    interval that the test set's size already puts on it."""
    raw = load_protocols()["raw"]
    rows = []
    for precision in precisions:
        with _inference_precision(precision, extractor, binary.extractor):
            resolved = extractor.inference_precision
            long, _ = evaluate_protocols([raw], suite, store, cache_root, extractor=extractor, oneclass=oneclass,
                                         binary=binary, max_patches=max_patches, bootstrap=bootstrap, seed=seed,
                                         progress=False, binary_threshold=binary_threshold)
        for _, row in long[long["generator"] == "mean"].iterrows():
            rows.append({"detector": row["detector"], "precision": f"{precision} ({resolved})",
                         "auc": row["auc"], "auc 95% CI": row["auc 95% CI"], "ap": row["ap"],
                         "ap 95% CI": row["ap 95% CI"], "acc": row["acc"]})
    table = pd.DataFrame(rows)
    base = table.groupby("detector").first()  # the first precision (float32) gives the intervals
    table["auc within the first's CI"] = [
        _interval(base.loc[d, "auc 95% CI"])[0] <= auc <= _interval(base.loc[d, "auc 95% CI"])[1]
        for d, auc in zip(table["detector"], table["auc"])]
    return table


def pivot(long: pd.DataFrame, metric: str, detector: str) -> pd.DataFrame:
    """Generators as rows, protocols as columns (in the order they were run)."""
    sub = long[long["detector"] == detector]
    order = list(dict.fromkeys(sub["protocol"]))
    gens = list(dict.fromkeys(sub["generator"]))
    table = sub.pivot(index="generator", columns="protocol", values=metric).reindex(index=gens, columns=order)
    return table.reset_index()


# which protocols form a curve, and where each sits on its axis (raw = no perturbation)
FAMILIES = {
    "JPEG (quality 100 = raw)": [("raw", 100), ("jpeg95", 95), ("jpeg90", 90), ("jpeg80", 80), ("jpeg70", 70),
                                 ("jpeg60", 60)],
    "Gaussian blur (sigma)": [("raw", 0), ("blur0.5", 0.5), ("blur1.0", 1.0), ("blur2.0", 2.0), ("blur3.0", 3.0)],
    "resize (scale)": [("down0.5", 0.5), ("down0.75", 0.75), ("raw", 1.0), ("up1.5", 1.5)],
}


def families(protocol_ids) -> dict[str, list[tuple[str, float]]]:
    """:data:`FAMILIES` limited to the protocols that were run."""
    ran = set(protocol_ids)
    return {name: [(p, x) for p, x in points if p in ran] for name, points in FAMILIES.items()}


def mean_metric(long: pd.DataFrame, detector: str, protocol: str, metric: str = "ap") -> float:
    """The mean-over-generators ``metric`` of one detector under one protocol (NaN if it was not run)."""
    row = long[(long["detector"] == detector) & (long["protocol"] == protocol) & (long["generator"] == "mean")]
    return float(row[metric].iloc[0]) if len(row) else float("nan")


def format_gap(long: pd.DataFrame, detector: str, aligned: str = "aligned_jpeg95") -> pd.DataFrame:
    """Per generator, raw against format-aligned accuracy, AP and AUC, and how much AP the raw files added:
    what a detector owed to file format and size rather than pixels."""
    def rows(protocol):
        return long[(long["protocol"] == protocol) & (long["detector"] == detector)].reset_index(drop=True)

    raw, al = rows("raw"), rows(aligned)
    gap = raw[["generator", "seen", "reals", "fakes"]].copy()
    for metric in ("acc", "ap", "auc"):
        gap[f"{metric} raw"], gap[f"{metric} {aligned}"] = raw[metric], al[metric]
    gap["ap gap"] = gap["ap raw"] - gap[f"ap {aligned}"]
    return gap


def seen_unseen_by_protocol(long: pd.DataFrame, detector: str = "binary") -> pd.DataFrame:
    """Mean accuracy, AP and AUC over the seen and over the unseen generators, per protocol."""
    rows = long[(long["detector"] == detector) & (long["generator"] != "mean")]
    return (rows.assign(group=rows["seen"].map({True: "seen", False: "unseen"}))
            .groupby(["protocol", "group"], sort=False)[["acc", "ap", "auc"]].mean().reset_index())


def mean_rows(frames: dict[str, pd.DataFrame], protocols=("raw", "aligned_jpeg95")) -> pd.DataFrame:
    """The mean rows of several long tables (label -> rows of one detector), one row per (label, protocol)."""
    out = []
    for label, frame in frames.items():
        for pid in protocols:
            row = frame[(frame["protocol"] == pid) & (frame["generator"] == "mean")]
            if len(row):
                out.append({"run": label, "protocol": pid, **row[["acc", "ap", "auc"]].iloc[0].to_dict()})
    return pd.DataFrame(out)


def protocol_summary(long: pd.DataFrame, protocol_ids, detectors=("one-class GMM", "binary")) -> str:
    """A Markdown list: each detector's mean AP on the raw files, then under every other protocol."""
    lines = []
    for detector in detectors:
        parts = [f"{p} {mean_metric(long, detector, p):.3f}" for p in protocol_ids if p != "raw"]
        lines.append(f"- **{detector}**: mean AP raw {mean_metric(long, detector, 'raw'):.3f}; " + ", ".join(parts))
    return "\n".join(lines)


def ablation_means(long: pd.DataFrame, det, results_dir: Path, setting: str, protocols: list[Protocol], *,
                   seed: int, max_patches: int | None) -> pd.DataFrame:
    """Mean rows of the main detectors (from ``long``) beside their ablations under ``protocols``: the
    one-class detector on a random extractor (fitted by the one-class evaluation as ``random_SETTING``) and the
    binary run with alpha = 0 (``det`` is a :class:`exifkit.pipeline.DetectorsUnderTest`)."""
    ablated, _ = evaluate_protocols(protocols, det.splits.suite, det.store, Path(results_dir) / "feature_cache",
                                    extractor=random_extractor(det.extractor.config, seed),
                                    oneclass=OneClassDetector.load(saved_detector(results_dir, "random", setting)),
                                    binary=det.runs.models["alpha=0"],
                                    binary_threshold=det.runs.thresholds["alpha=0"]["threshold"], max_patches=max_patches)
    return mean_rows({"one-class, pretext extractor": long[long["detector"] == "one-class GMM"],
                      "one-class, random extractor": ablated[ablated["detector"] == "one-class GMM"],
                      f"binary, {det.runs.main}": long[long["detector"] == "binary"],
                      "binary, alpha=0": ablated[ablated["detector"] == "binary"]}, [p.id for p in protocols])
