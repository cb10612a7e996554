"""Extractor inference: images/s at 16 patches per image, and patches/s over full-size images.

The first number is the network alone on patch sets already in memory (the paper network, 16
patches of 64 pixels per image). The second is a folder evaluation as the kit runs it: decode each
file, take all its non-overlapping patches, encode them (the 1024x1024 images of the demo data, 256
patches each). Reference: one image at a time, decoding in line; fast: the default path.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, run  # noqa: E402


def add_arguments(parser):
    parser.add_argument("--images", type=int, default=16, help="photos for the 16-patch measurement")
    parser.add_argument("--full-size", type=int, default=4, help="1024x1024 images for the folder measurement")


def workload(mode: str, device: str, args) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from exifkit.config import data_store, load_profile
    from exifkit.data.images import load_rgb
    from exifkit.features import folder_features
    from exifkit.model import Extractor
    from exifkit.patches import random_patches, to_tensor

    from _common import rate

    torch.manual_seed(0)
    model = Extractor(mode=mode).eval().to(device)
    store = data_store(load_profile("demo", ROOT))
    cameras = [store.path(e) for e in store.manifest if e.kind == "camera"][:args.images]
    rng = np.random.default_rng(0)
    sets = to_tensor(np.stack([random_patches(load_rgb(p), 16, 64, rng) for p in cameras])).to(device)

    def sixteen_patches():
        model.embed(sets)
        return len(sets)

    sizes = {store.path(e): Image.open(store.path(e)).size for e in store.manifest if e.kind == "generated"}
    large = [p for p, (w, h) in sizes.items() if min(w, h) >= 1024][:args.full_size]
    n_patches = sum((sizes[p][0] // 64) * (sizes[p][1] // 64) for p in large)

    def folder():
        feats, ok, failures = folder_features(model, large, progress=False)
        assert ok.all(), failures.to_markdown()
        return n_patches

    images = rate(sixteen_patches, device, args)
    patches = rate(folder, device, args)
    return {"images_per_s_16_patches": images, "full_size_patches_per_s": patches,
            "full_size_images_per_s": round(patches["median"] * len(large) / n_patches, 3),
            "full_size_images": len(large), "patches_per_full_size_image": n_patches // max(len(large), 1)}


if __name__ == "__main__":
    run("extractor_inference", workload, {"images_per_s_16_patches": "img/s", "full_size_patches_per_s": "patch/s",
                                          "full_size_images_per_s": "img/s", "patches_per_full_size_image": "patches"},
        add_arguments, smoke={"images": 2, "full_size": 1})
