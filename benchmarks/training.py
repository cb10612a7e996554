"""Training throughput: pretext pairs/s and binary images/s (forward, backward and optimiser step).

The paper network on the demo photos, timed through the trainers' own step functions, batches built
as the trainers build them (random crops, EXIF labels; augmentation for the binary detector, whose
step also runs the frozen pretext extractor for the regulariser). Batches are smaller than the
paper's (8 pairs and 16 images instead of 64 pairs and 100 images) to fit a CPU benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, run  # noqa: E402


def add_arguments(parser):
    parser.add_argument("--pairs", type=int, default=8, help="pairs per pretext step")
    parser.add_argument("--binary-images", type=int, default=16, help="images per binary step")


def demo_cameras():
    """The demo store and its first 64 camera photos, which every training benchmark draws from."""
    from exifkit.config import data_store, load_profile

    store = data_store(load_profile("demo", ROOT))
    return store, [store.path(e) for e in store.manifest if e.kind == "camera"][:64]


def pretext_trainer(mode: str, device: str, args, precision: str, cameras):
    """One pretext step per call (``step`` picks the pairs), as the trainer takes it; returns the pairs."""
    import torch

    from exifkit.exif.read import read_many
    from exifkit.model import ExtractorConfig
    from exifkit.model.heads import head_sizes
    from exifkit.pretext import PretextConfig, PretextModel, load_photos, make_batch, pair_batch, pretext_step

    torch.manual_seed(0)
    photos = load_photos(cameras, read_many(cameras), max_side=1024)
    pretext = PretextConfig(extractor=ExtractorConfig(), batch_pairs=args.pairs)
    model = PretextModel(pretext.extractor, head_sizes({k: len(v.classes)
                                                       for k, v in photos.labels.vocabularies.items()}))
    model.extractor.mode = mode
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=pretext.lr)

    def once(step: int) -> int:
        first, second, seeds = pair_batch(len(photos), step, pretext.batch_pairs, pretext.seed)
        batch = make_batch(photos, first, second, seeds, pretext.n_patches, pretext.extractor.patch_size)
        pretext_step(model, optimizer, {k: v.to(device) for k, v in batch.items()}, pretext, precision)
        return pretext.batch_pairs
    return once


def binary_trainer(mode: str, device: str, args, precision: str, store, cameras):
    """One binary step per call on demo reals and fakes, the frozen teacher included; returns the images."""
    import numpy as np
    import torch

    from exifkit.binary import BinaryConfig, BinaryModel, binary_batch, binary_step, frozen_teacher
    from exifkit.data.images import load_rgb
    from exifkit.model import Extractor, ExtractorConfig

    torch.manual_seed(0)
    fakes = [store.path(e) for e in store.manifest if e.kind == "generated"][:32]
    images = [load_rgb(p) for p in cameras[:32] + fakes]
    labels = np.array([0] * 32 + [1] * len(fakes))
    config = BinaryConfig(extractor=ExtractorConfig(), batch_images=args.binary_images)
    teacher = frozen_teacher(Extractor(config.extractor, mode=mode)).to(device)
    binary = BinaryModel(config.extractor)
    binary.extractor.mode = mode
    binary.to(device).train()
    optimizer = torch.optim.Adam(binary.parameters(), lr=config.lr)

    def once(step: int) -> int:
        x, y = binary_batch(images, labels, step, config)
        binary_step(binary, teacher, optimizer, x.to(device), y.to(device), config.alpha, precision=precision)
        return len(y)
    return once


def workload(mode: str, device: str, args, precision: str = "fp32") -> dict:
    """Pretext pairs/s and binary images/s of the extractor in ``mode`` (``precision.py`` reuses it with
    the fast mode in both precisions)."""
    from _common import rate

    store, cameras = demo_cameras()
    counter = {"n": 0}

    def counted(once):
        def call():
            counter["n"] += 1
            return once(counter["n"] - 1)
        return call

    pairs = rate(counted(pretext_trainer(mode, device, args, precision, cameras)), device, args)
    images = rate(counted(binary_trainer(mode, device, args, precision, store, cameras)), device, args)
    return {"pretext_pairs_per_s": pairs, "binary_images_per_s": images}


if __name__ == "__main__":
    run("training", workload, {"pretext_pairs_per_s": "pair/s", "binary_images_per_s": "img/s"}, add_arguments,
        smoke={"pairs": 1, "binary_images": 2})
