"""Image features from an extractor over a list of samples, cached on disk.

Each image becomes all its non-overlapping patches (capped), read as one set by the Transformer.
Images with the same number of patches go through the network together. A feature is stored once per
(weights, protocol, pixels): the cache key is the hash of the extractor's weights, a protocol string
(patch size, cap, any perturbation) and the sample key (file sha256 plus view), so a rerun or another
notebook reuses it and new weights never read stale features.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .data.images import FailureReport, ImageLoadError
from .data.manifest import DataStore
from .data.suites import Sample, load_sample
from .patches import grid_patches, to_tensor


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureCache:
    def __init__(self, root: str | Path, model_hash: str, protocol: str):
        self.dir = Path(root) / model_hash / hashlib.sha256(protocol.encode()).hexdigest()[:12]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "protocol.txt").write_text(protocol + "\n")
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npy"

    def get(self, key: str):
        p = self.path(key)
        if p.exists():
            self.hits += 1
            return np.load(p, allow_pickle=False)
        self.misses += 1
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        tmp = self.dir / f"{key}.part.npy"
        np.save(tmp, value, allow_pickle=False)
        tmp.replace(self.path(key))


@torch.no_grad()
def extract_features(model: Callable[[torch.Tensor], torch.Tensor], samples: list[Sample], store: DataStore, *,
                     patch_size: int, max_patches: int | None, cache: FeatureCache | None = None,
                     transform: Callable[[np.ndarray, Sample], np.ndarray] | None = None,
                     batch_patches: int = 2048, progress: bool = True,
                     ) -> tuple[np.ndarray, np.ndarray, FailureReport]:
    """Features (n_ok, D), a boolean mask of which samples succeeded, and the failures.

    ``model`` maps patch sets (B, N, 3, P, P) to features (B, D). ``transform`` (a perturbation)
    is applied to the decoded pixels before patching; its identity must be part of the cache protocol.
    """
    from tqdm.auto import tqdm

    feats: dict[int, np.ndarray] = {}
    failures = FailureReport()
    pending: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)

    def flush(n: int):
        items = pending.pop(n, [])
        if not items:
            return
        x = to_tensor(np.stack([p for _, p in items]))
        out = model(x).float().cpu().numpy()
        for (i, _), f in zip(items, out):
            feats[i] = f
            if cache is not None:
                cache.put(samples[i].key, f)

    for i, sample in enumerate(tqdm(samples, desc="features", unit="img", disable=not progress)):
        if cache is not None and (hit := cache.get(sample.key)) is not None:
            feats[i] = hit
            continue
        try:
            image = load_sample(sample, store)
            if transform is not None:
                image = transform(image, sample)
        except ImageLoadError as exc:
            failures.add(exc)
            continue
        patches = grid_patches(image, patch_size, max_patches)
        n = len(patches)
        pending[n].append((i, patches))
        if len(pending[n]) * n >= batch_patches:
            flush(n)
    for n in list(pending):
        flush(n)
    ok = np.array([i in feats for i in range(len(samples))], dtype=bool)
    matrix = np.stack([feats[i] for i in range(len(samples)) if i in feats]) if feats else np.zeros((0, 0))
    return matrix, ok, failures
