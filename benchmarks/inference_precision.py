"""Inference in float32 against the kit's default precision (``auto``: the Winograd kernel's products in
bf16 with float32 sums, on a CPU with AVX512-BF16): the shipped bundle's network alone on patch sets in
memory (16 patches of 64 px per image), and `exifkit detect` end to end on a folder of demo files.

Each mode runs in its own process. On a CPU without AVX512-BF16 both modes are float32 and the ratio
is 1; the report says which precision each mode resolved to.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, run  # noqa: E402

MODES = ("fp32", "auto")


def add_arguments(parser):
    parser.add_argument("--images", type=int, default=16, help="patch sets for the network-alone measurement")
    parser.add_argument("--files", type=int, default=200, help="demo files for `exifkit detect` (spread over kinds)")


def workload(mode: str, device: str, args) -> dict:
    import numpy as np
    import torch

    from exifkit.config import data_store, load_profile
    from exifkit.data.images import load_rgb
    from exifkit.detect import Detector
    from exifkit.patches import random_patches, to_tensor

    from _common import rate

    store = data_store(load_profile("demo", ROOT))
    entries = [e for e in store.manifest if e.is_image]
    paths = [store.path(e) for e in entries[::max(1, len(entries) // args.files)]][:args.files]
    detector = Detector.from_bundle(precision=mode)
    network = detector.extractor
    cameras = [store.path(e) for e in entries if e.kind == "camera"][:args.images]
    rng = np.random.default_rng(0)
    sets = to_tensor(np.stack([random_patches(load_rgb(p), 16, 64, rng) for p in cameras])).to(device)

    def sixteen_patches():
        with torch.inference_mode():
            network.embed(sets)
        return len(sets)

    images = rate(sixteen_patches, device, args)
    files = rate(lambda: sum(1 for _ in detector.iter_scores(paths)), device, args)
    return {"images_per_s_16_patches": images, "files_per_s": files, "files": len(paths),
            "resolved_precision": network.inference_precision}


if __name__ == "__main__":
    run("inference_precision", workload, {"images_per_s_16_patches": "img/s", "files_per_s": "file/s",
                                          "files": "files"},
        add_arguments, modes=MODES, smoke={"images": 2, "files": 4})
