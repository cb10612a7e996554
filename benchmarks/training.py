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


def workload(mode: str, device: str, args, precision: str = "fp32") -> dict:
    """Pretext pairs/s and binary images/s of the extractor in ``mode`` (``precision.py`` reuses it with
    the fast mode in both precisions)."""
    import numpy as np
    import torch

    from exifkit.binary import BinaryConfig, BinaryModel, binary_batch, binary_step, frozen_teacher
    from exifkit.config import data_store, load_profile
    from exifkit.data.images import load_rgb
    from exifkit.exif.read import read_many
    from exifkit.model import Extractor, ExtractorConfig
    from exifkit.model.heads import head_sizes
    from exifkit.pretext import PretextConfig, PretextModel, load_photos, make_batch, pair_batch, pretext_step

    from _common import rate

    torch.manual_seed(0)
    store = data_store(load_profile("demo", ROOT))
    cameras = [store.path(e) for e in store.manifest if e.kind == "camera"][:64]
    photos = load_photos(cameras, read_many(cameras), max_side=1024)
    pretext = PretextConfig(extractor=ExtractorConfig(), batch_pairs=args.pairs)
    model = PretextModel(pretext.extractor, head_sizes({k: len(v.classes)
                                                       for k, v in photos.labels.vocabularies.items()}))
    model.extractor.mode = mode
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=pretext.lr)
    step = {"n": 0}

    def pretext_steps():
        first, second, seeds = pair_batch(len(photos), step["n"], pretext.batch_pairs, pretext.seed)
        batch = make_batch(photos, first, second, seeds, pretext.n_patches, pretext.extractor.patch_size)
        pretext_step(model, optimizer, {k: v.to(device) for k, v in batch.items()}, pretext, precision)
        step["n"] += 1
        return pretext.batch_pairs

    pairs = rate(pretext_steps, device, args)

    fakes = [store.path(e) for e in store.manifest if e.kind == "generated"][:32]
    images = [load_rgb(p) for p in cameras[:32] + fakes]
    labels = np.array([0] * 32 + [1] * len(fakes))
    config = BinaryConfig(extractor=ExtractorConfig(), batch_images=args.binary_images)
    teacher = frozen_teacher(Extractor(config.extractor, mode=mode)).to(device)
    binary = BinaryModel(config.extractor)
    binary.extractor.mode = mode
    binary.to(device).train()
    optimizer = torch.optim.Adam(binary.parameters(), lr=config.lr)

    def binary_steps():
        x, y = binary_batch(images, labels, step["n"], config)
        binary_step(binary, teacher, optimizer, x.to(device), y.to(device), config.alpha, precision=precision)
        step["n"] += 1
        return len(y)

    return {"pretext_pairs_per_s": pairs, "binary_images_per_s": rate(binary_steps, device, args)}


if __name__ == "__main__":
    run("training", workload, {"pretext_pairs_per_s": "pair/s", "binary_images_per_s": "img/s"}, add_arguments,
        smoke={"pairs": 1, "binary_images": 2})
