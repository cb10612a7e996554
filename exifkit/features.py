"""Image features from an extractor over a list of samples, cached on disk.

Each image becomes all its non-overlapping patches (capped), read as one set by the Transformer.
Patches of consecutive images go through the convolutional part together, in batches of a fixed
size, while the next images are decoded on a background thread. A feature is stored once per
(weights, protocol, pixels): the cache key is the hash of the extractor's weights, a protocol string
(patch size, cap, any perturbation) and the sample key (file sha256 plus view), so a rerun or another
stage reuses it and new weights never read stale features.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .data.images import FailureReport, ImageLoadError, load_rgb
from .data.manifest import DataStore
from .data.suites import Sample, load_sample
from .model import Extractor
from .patches import grid_patches, to_tensor
from .perturb import Protocol
from .progress import progress_bar as tqdm


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_tag(what: str, patch_size: int, max_patches: int | None, protocol, precision: str = "fp32") -> str:
    # the raw protocol (no steps) and no protocol are the same pixels, so they share entries; float32
    # entries keep the tag they had before bf16 inference existed
    pixels = "raw" if protocol is None or not protocol.steps else protocol.key
    return f"{what} grid{patch_size} cap{max_patches} v1 {pixels}" + ("" if precision == "fp32" else f" {precision}")


class FeatureCache:
    """One folder of ``.npy`` entries per (network weights, what is stored, patch grid, view of the pixels)."""

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


def patches_after(image: np.ndarray, transform, sample: Sample, size: int, max_patches: int | None) -> np.ndarray:
    """The grid patches of ``image`` once ``transform`` has run on it; a protocol runs only where the
    patches need it (:meth:`~exifkit.perturb.Protocol.patches`)."""
    if isinstance(transform, Protocol):
        return transform.patches(image, size, max_patches)
    return grid_patches(transform(image, sample) if transform is not None else image, size, max_patches)


class PatchMemo:
    """Patches after the protocol, kept in memory by (sample, protocol, patch grid): a study that scores
    many networks on the same images decodes and re-encodes each image once, not once per network."""

    def __init__(self):
        self._patches: dict[tuple, np.ndarray] = {}

    def patches(self, sample: Sample, store: DataStore, transform, size: int, max_patches: int | None) -> np.ndarray:
        key = (sample.key, getattr(transform, "key", "raw") if transform is not None else "raw", size, max_patches)
        if key not in self._patches:
            patches = patches_after(load_sample(sample, store), transform, sample, size, max_patches)
            patches.setflags(write=False)
            self._patches[key] = patches
        return self._patches[key]


def prefetched(fn: Callable, items: Sequence, depth: int) -> Iterator[tuple[object, object]]:
    """``(item, fn(item))`` in order, computed ``depth`` items ahead on a background thread, so image
    decoding (which releases the GIL) overlaps with the network. An exception is yielded in place
    of the result. ``depth=0`` computes inline."""
    def call(item):
        try:
            return fn(item)
        except Exception as exc:  # handed to the caller, which decides what is fatal
            return exc

    if depth <= 0:
        for item in items:
            yield item, call(item)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="exifkit-decode") as pool:
        window: deque = deque()
        for item in items:
            window.append((item, pool.submit(call, item)))
            if len(window) > depth:
                done_item, future = window.popleft()
                yield done_item, future.result()
        while window:
            done_item, future = window.popleft()
            yield done_item, future.result()


class _PatchStream:
    """Patches of many images through the extractor in batches of about ``batch_patches``.

    An image's patches may span several batches (a 24-megapixel photo has 5,766 patches of 64
    pixels); its feature is computed once the last of them is through, so memory is bounded by the
    batch, not by the image."""

    def __init__(self, extractor: Extractor, head, batch_patches: int, done: Callable[[int, np.ndarray], None]):
        self.extractor, self.head, self.batch, self.done = extractor, head, batch_patches, done
        self.waiting: list[tuple[int, np.ndarray]] = []  # (image, uint8 patches not yet encoded)
        self.n_waiting = 0
        self.vectors: dict[int, list[torch.Tensor]] = {}
        self.remaining: dict[int, int] = {}

    def add(self, index: int, patches: np.ndarray) -> None:
        self.vectors[index], self.remaining[index] = [], len(patches)
        for start in range(0, len(patches), self.batch):
            part = patches[start:start + self.batch]
            self.waiting.append((index, part))
            self.n_waiting += len(part)
            if self.n_waiting >= self.batch:
                self.flush()

    def flush(self) -> None:
        if not self.waiting:
            return
        x = to_tensor(np.concatenate([p for _, p in self.waiting])).to(self.extractor.device)
        vectors = self.extractor.patch_vectors(x)
        finished: dict[int, list[int]] = defaultdict(list)  # patch count -> images
        for (index, part), vec in zip(self.waiting, vectors.split([len(p) for _, p in self.waiting])):
            self.vectors[index].append(vec)
            self.remaining[index] -= len(part)
            if not self.remaining[index]:
                finished[sum(len(v) for v in self.vectors[index])].append(index)
        self.waiting, self.n_waiting = [], 0
        for indices in finished.values():  # images with as many patches share one Transformer call
            tokens = torch.stack([torch.cat(self.vectors.pop(i)) for i in indices])
            out = self.extractor.aggregate(tokens)
            out = self.head(out) if self.head is not None else out
            for i, value in zip(indices, out.float().cpu().numpy()):
                del self.remaining[i]
                self.done(i, value)


def _stream(extractor: Extractor, todo: list[int], decode: Callable[[int], np.ndarray],
            done: Callable[[int, np.ndarray], None], failures: FailureReport, head, batch_patches: int,
            prefetch: int, progress: bool) -> None:
    """Decode (in the background), encode, aggregate; failures to decode are reported, not raised."""
    reference = extractor.mode == "reference"
    stream = _PatchStream(extractor, head, batch_patches, done)
    with torch.inference_mode(), tqdm(total=len(todo), desc="features", unit="img", disable=not progress) as bar:
        for i, patches in prefetched(decode, todo, 0 if reference else prefetch):
            bar.update()
            if isinstance(patches, ImageLoadError):
                failures.add(patches)
            elif isinstance(patches, BaseException):
                raise patches
            elif reference:
                out = extractor.embed(to_tensor(patches)[None].to(extractor.device))
                done(i, (head(out) if head is not None else out)[0].float().cpu().numpy())
            else:
                stream.add(i, patches)
        stream.flush()


def _collect(feats: dict[int, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    ok = np.array([i in feats for i in range(n)], dtype=bool)
    matrix = np.stack([feats[i] for i in range(n) if i in feats]) if feats else np.zeros((0, 0))
    return matrix, ok


def extract_features(extractor: Extractor, samples: list[Sample], store: DataStore, *, max_patches: int | None,
                     cache: FeatureCache | None = None,
                     transform: Callable[[np.ndarray, Sample], np.ndarray] | None = None,
                     head: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_patches: int = 64,
                     prefetch: int = 2, progress: bool = True,
                     memo: PatchMemo | None = None) -> tuple[np.ndarray, np.ndarray, FailureReport]:
    """Features (n_ok, D) of every patch of each sample, a boolean mask of which samples succeeded,
    and the failures.

    ``head`` maps image features to what is stored instead (the binary detector's P(fake)).
    ``transform`` (a perturbation) is applied to the decoded pixels before patching; its identity must
    be part of the cache protocol. In the fast mode, patches of several images are batched and the
    next ``prefetch`` images are decoded while the network runs; the reference mode of the extractor
    decodes and encodes one image at a time, the plain baseline the benchmarks compare against. A ``memo``
    keeps the patches for the next extractor.
    """
    size = extractor.config.patch_size
    feats: dict[int, np.ndarray] = {}
    failures = FailureReport()

    def done(i: int, value: np.ndarray) -> None:
        feats[i] = value
        if cache is not None:
            cache.put(samples[i].key, value)

    def decode(i: int) -> np.ndarray:
        if memo is not None:
            return memo.patches(samples[i], store, transform, size, max_patches)
        return patches_after(load_sample(samples[i], store), transform, samples[i], size, max_patches)

    todo = []
    for i, sample in enumerate(samples):
        if cache is not None and (hit := cache.get(sample.key)) is not None:
            feats[i] = hit
        else:
            todo.append(i)
    _stream(extractor, todo, decode, done, failures, head, batch_patches, prefetch, progress)
    return (*_collect(feats, len(samples)), failures)


def cached_outputs(network, samples: list[Sample], store: DataStore, cache_root: Path, *,
                   max_patches: int | None, protocol=None, progress: bool = True,
                   memo: PatchMemo | None = None) -> tuple[dict, FailureReport]:
    """What ``network`` says of each sample that loads, by sample key, and the failures: an
    :class:`~exifkit.model.Extractor` gives its image feature (an array), a binary detector (anything
    with an ``extractor`` and a ``fake_probability_of`` head) gives P(fake) (a float). ``protocol`` (a
    :class:`~exifkit.perturb.Protocol`, None for the raw files) is applied to the pixels first.

    The one cache of the kit: entries live under ``cache_root`` keyed by the network's weight hash, what
    it stores, the patch grid and cap, and the view of the pixels, so every stage asking the same
    question of the same weights reads the same entry, and new weights never read stale ones."""
    if isinstance(network, Extractor):
        extractor, head, what, owner = network, None, "feature", "extractor"
    else:
        extractor, head, what, owner = network.extractor, network.fake_probability_of, "pfake", "binary"
    cache = FeatureCache(cache_root, f"{owner}-{weights_hash(network)}",
                         _cache_tag(what, extractor.config.patch_size, max_patches, protocol,
                                    extractor.inference_numerics))
    values, ok, failures = extract_features(extractor, samples, store, max_patches=max_patches, cache=cache,
                                            transform=protocol, head=head, progress=progress, memo=memo)
    kept = [s.key for s, o in zip(samples, ok) if o]
    if head is not None:
        values = [float(v[0]) for v in values]
    return dict(zip(kept, values)), failures


def shared_outputs(networks: Sequence, samples: list[Sample], store: DataStore, cache_root: Path, *,
                   max_patches: int | None, protocol=None, progress: bool = True,
                   chunk: int = 128) -> list[tuple[dict, FailureReport]]:
    """:func:`cached_outputs` of each of ``networks`` on the same samples, with every image decoded and
    put through ``protocol`` once for all of them rather than once per network (a blur or a JPEG
    re-encoding costs about as much as the network on a small image). Samples go through in chunks, so
    memory holds at most ``chunk`` decoded images."""
    results = [({}, FailureReport()) for _ in networks]
    with tqdm(total=len(samples), desc="images", unit="img", disable=not progress) as bar:
        for start in range(0, len(samples), chunk):
            part, memo = samples[start:start + chunk], PatchMemo()
            for (values, failures), network in zip(results, networks):
                got, failed = cached_outputs(network, part, store, cache_root, max_patches=max_patches,
                                             protocol=protocol, progress=False, memo=memo)
                values.update(got)
                failures.failures.extend(failed.failures)
            bar.update(len(part))
    return results


def folder_features(extractor: Extractor, paths: Sequence[str | Path], *, max_patches: int | None = None,
                    head: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_patches: int = 64,
                    prefetch: int = 2, progress: bool = True) -> tuple[np.ndarray, np.ndarray, FailureReport]:
    """:func:`extract_features` for plain image files (any size: all patches by default)."""
    feats: dict[int, np.ndarray] = {}
    failures = FailureReport()
    size = extractor.config.patch_size
    _stream(extractor, list(range(len(paths))), lambda i: grid_patches(load_rgb(paths[i]), size, max_patches),
            feats.__setitem__, failures, head, batch_patches, prefetch, progress)
    return (*_collect(feats, len(paths)), failures)
