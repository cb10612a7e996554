"""Training batches streamed from a packed collection (:mod:`exifkit.data.shards`), decoded by
DataLoader workers, in an order fixed by (seed, rank, worker): memory stays flat however many images
there are. :class:`PairStream` makes pretext pairs, :class:`ImageStream` binary batches.

The batches of a run are split into *streams*, one per (rank, worker): with ``W`` workers, stream
``r`` of a rank makes the batches of steps ``r, r + W, r + 2W, ...``. Each stream reads its own shards
(every ``G``-th shard of a per-epoch permutation, ``G`` = ranks x workers; when there are fewer shards
than streams, every stream reads every shard and keeps every ``G``-th sample) and fills a shuffle
buffer, from which it pops images at random; a pretext pair joins a popped photo with one drawn from
what is left, as the authors pair each photo with a random one. A stream's batches depend only on the
seed, its index and the shards, so a run resumed at step ``s`` skips the batches before ``s``
(reading, not decoding them) and continues with the same images and crops it would have made. The
number of workers is therefore part of the order, and a resume keeps it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..augment import augment
from ..exif.schema import encode_labels
from ..patches import center_crop, random_patches, to_tensor
from .images import decode_rgb
from .shards import ShardError, Shards, iter_shard

FAILED = "shard_error"  # the key of the one item a stream yields when a shard cannot be read


class ShardStream(IterableDataset):
    """What both streams share: the split into streams, the shard order, the shuffle buffer and the
    skip on resume. Subclasses say how many samples a batch takes and how they become tensors."""

    def __init__(self, shards: Shards, *, seed: int, rank: int = 0, world: int = 1, workers: int = 0,
                 start_step: int = 0, buffer: int = 1000):
        self.shards, self.seed, self.rank, self.world = shards, seed, rank, world
        self.loader_workers, self.start_step, self.buffer = workers, start_step, buffer
        self.workers = max(workers, 1)  # streams per rank: one worker process or this one is one stream

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info else 0
        residue = (worker + self.start_step) % self.workers  # DataLoader asks its workers in turn from the start step
        first_step = self.start_step + (residue - self.start_step) % self.workers
        skip = (first_step - residue) // self.workers
        try:
            yield from self.batches(self.rank * self.workers + residue, self.world * self.workers, skip)
        except ShardError as exc:  # as data: a DataLoader worker's exception would arrive wrapped in its traceback
            yield {FAILED: str(exc)}

    def draws(self, stream: int, streams: int, rng: np.random.Generator):
        """``(sample, buffer)`` forever: a sample popped at random from a full shuffle buffer, and what
        is left in it."""
        paths = self.shards.paths
        by_sample = len(paths) < streams  # too few shards to give each stream its own
        capacity = max(2, min(self.buffer, len(self.shards) // streams))
        buffer, epoch = [], 0
        while True:
            order = np.random.default_rng([self.seed, epoch, 5]).permutation(len(paths))
            position, taken = 0, 0
            for shard in (order if by_sample else order[stream::streams]):
                for sample in iter_shard(paths[shard]):
                    position += 1
                    if by_sample and (position - 1) % streams != stream:
                        continue
                    taken += 1
                    buffer.append(sample)
                    if len(buffer) < capacity:
                        continue
                    i = int(rng.integers(len(buffer)))
                    buffer[i], buffer[-1] = buffer[-1], buffer[i]
                    yield buffer.pop(), buffer
            if not taken:
                raise ShardError(f"{self.shards.root}: stream {stream} of {streams} got no images in epoch {epoch}; "
                                 "pack more shards, or train with fewer workers or ranks")
            epoch += 1

    def batches(self, stream: int, streams: int, skip: int = 0):
        """Batches of one stream, forever; the first ``skip`` are drawn but not decoded."""
        rng = np.random.default_rng([self.seed, stream, streams, 17])
        group, made = [], 0
        for sample, buffer in self.draws(stream, streams, rng):
            group.append(self.item(sample, buffer, rng))
            if len(group) == self.batch_size:
                if made >= skip:
                    yield self.make_batch(group, [[self.seed, stream, made, k] for k in range(len(group))])
                made += 1
                group = []


class PairStream(ShardStream):
    """Pretext batches: each photo popped from the buffer is paired with one drawn from what is left."""

    def __init__(self, shards: Shards, *, batch_pairs: int, n_patches: int, patch_size: int, max_side: int, **kw):
        super().__init__(shards, **kw)
        self.batch_size, self.n_patches, self.patch_size, self.max_side = batch_pairs, n_patches, patch_size, max_side
        self.vocabularies = shards.vocabularies()

    def item(self, sample, buffer, rng):
        return sample, buffer[int(rng.integers(len(buffer)))]

    def make_batch(self, pairs, crop_seeds) -> dict:
        """The same dictionary as :func:`exifkit.pretext.make_batch`, plus the pairs' sha256 and crop seeds."""
        def patches(side):
            out = []
            for pair, seed in zip(pairs, crop_seeds):
                record, data = pair[side]
                image = center_crop(decode_rgb(data, record["name"]), self.max_side)
                out.append(random_patches(image, self.n_patches, self.patch_size, np.random.default_rng(seed + [side])))
            return np.stack(out)

        labels = [encode_labels([], [pair[side][0]["exif"] for pair in pairs], self.vocabularies) for side in (0, 1)]
        return {"x1": to_tensor(patches(0)), "x2": to_tensor(patches(1)),
                "cat1": torch.from_numpy(labels[0].categorical), "rank1": torch.from_numpy(labels[0].ranked).float(),
                "rank2": torch.from_numpy(labels[1].ranked).float(),
                "keys1": [p[0][0]["sha256"] for p in pairs], "keys2": [p[1][0]["sha256"] for p in pairs],
                "crop_seeds": crop_seeds}


class ImageStream(ShardStream):
    """Binary batches: images popped from the buffer, augmented and cut into patch sets as
    :func:`exifkit.binary.binary_batch` does, with their real (0) / fake (1) labels."""

    def __init__(self, shards: Shards, config, **kw):
        if shards.kind != "binary":
            raise ShardError(f"{shards.root}: a {shards.kind} collection; binary training needs one packed with --binary")
        super().__init__(shards, seed=config.seed, **kw)
        self.config, self.batch_size = config, config.batch_images

    def item(self, sample, buffer, rng):
        return sample

    def make_batch(self, samples, seeds) -> dict:
        sets = []
        for (record, data), seed in zip(samples, seeds):
            image = decode_rgb(data, record["name"])
            if record.get("view"):
                left, top, right, bottom = record["view"]
                image = image[top:bottom, left:right]
            rng = np.random.default_rng(seed + [3])
            sets.append(random_patches(augment(image, rng, self.config.augment), self.config.n_patches,
                                       self.config.extractor.patch_size, rng))
        return {"x": to_tensor(np.stack(sets)), "y": torch.tensor([r["label"] for r, _ in samples]),
                "keys": [r["sha256"] for r, _ in samples]}


def batch_loader(stream: ShardStream, pin_memory: bool = False):
    """Batches in step order from ``stream.loader_workers`` worker processes (0: this process). A shard
    that cannot be read stops the run with a :class:`ShardError` naming it; the checkpoints written so
    far stay, so the run resumes once the shard is packed again."""
    workers = stream.loader_workers
    for batch in DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                            prefetch_factor=2 if workers else None, persistent_workers=False):
        if FAILED in batch:
            raise ShardError(batch[FAILED])
        yield batch
