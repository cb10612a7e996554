"""Both detectors under every protocol: one long table (protocol, detector, generator, metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data.manifest import DataStore
from .data.suites import Suite
from .features import FeatureCache, cache_tag, extract_features, weights_hash
from .metrics import suite_table
from .perturb import Protocol


def _scores(extractor, head, model_id: str, protocol: Protocol, suite: Suite, store: DataStore, cache_root: Path,
            max_patches: int | None, what: str, progress: bool):
    cache = FeatureCache(cache_root, model_id, cache_tag(what, extractor.config.patch_size, max_patches, protocol))
    samples = suite.samples()
    values, ok, failures = extract_features(extractor, samples, store, max_patches=max_patches, cache=cache,
                                            transform=protocol, head=head, progress=progress)
    return {s.key: v for s, v in zip([s for s, o in zip(samples, ok) if o], values)}, failures


def evaluate_protocols(protocols: list[Protocol], suite: Suite, store: DataStore, cache_root: Path, *,
                       extractor=None, oneclass=None, binary=None, max_patches: int | None = None,
                       bootstrap: int = 0, seed: int = 0, progress: bool = True, binary_threshold: float = 0.5):
    """Per (protocol, detector, generator) metrics; failures per protocol are returned, not hidden."""
    tables, failures = [], {}
    for protocol in protocols:
        if oneclass is not None:
            feats, fail = _scores(extractor, None, "extractor-" + weights_hash(extractor),
                                  protocol, suite, store, cache_root, max_patches, "feature", progress)
            scores = {k: float(-oneclass.score(np.asarray(v)[None])[0]) for k, v in feats.items()}
            t = suite_table(suite, scores, -oneclass.threshold, bootstrap, seed)
            t.insert(0, "detector", "one-class GMM")  # the name of the column value; any one-class density
            t.insert(0, "protocol", protocol.id)
            tables.append(t)
            failures[(protocol.id, "one-class")] = fail
        if binary is not None:
            probs, fail = _scores(binary.extractor, binary.fake_probability_of, "binary-" + weights_hash(binary),
                                  protocol, suite, store, cache_root, max_patches, "pfake", progress)
            t = suite_table(suite, {k: float(v[0]) for k, v in probs.items()}, binary_threshold, bootstrap, seed)
            t.insert(0, "detector", "binary")
            t.insert(0, "protocol", protocol.id)
            tables.append(t)
            failures[(protocol.id, "binary")] = fail
    return pd.concat(tables, ignore_index=True), failures


def pivot(long: pd.DataFrame, metric: str, detector: str) -> pd.DataFrame:
    """Generators as rows, protocols as columns (in the order they were run)."""
    sub = long[long["detector"] == detector]
    order = list(dict.fromkeys(sub["protocol"]))
    gens = list(dict.fromkeys(sub["generator"]))
    table = sub.pivot(index="generator", columns="protocol", values=metric).reindex(index=gens, columns=order)
    return table.reset_index()
