"""One 24-megapixel photo, every patch: time and peak memory of the folder evaluation.

A 6000x4000 JPEG (synthetic: smooth gradients plus sensor-like noise, written to a temporary
folder) has 5,766 non-overlapping patches of 64 pixels. The fast path streams them through the
network in batches and the Transformer's attention runs in a kernel whose memory grows linearly in
the number of patches; the target is under 2 GiB of peak resident memory. The reference mode reads
the whole image as one batch (its 90-channel residual tensor alone would take 8.5 GB), so it is not
run here by default.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run  # noqa: E402


def add_arguments(parser):
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)


def workload(mode: str, device: str, args) -> dict:
    import tempfile
    import time

    import numpy as np
    import torch
    from PIL import Image

    from exifkit.features import folder_features
    from exifkit.model import Extractor

    from _common import peak_rss_mb, sync

    rng = np.random.default_rng(0)
    pixels = np.empty((args.height, args.width, 3), np.uint8)
    x = np.arange(args.width, dtype=np.float32) / args.width
    for top in range(0, args.height, 250):  # in bands, so making the photo does not set the peak
        y = np.arange(top, min(top + 250, args.height), dtype=np.float32)[:, None] / args.height
        band = np.stack(np.broadcast_arrays(x[None], y, (x[None] + y) / 2), -1) * 200
        pixels[top:top + len(y)] = np.clip(band + rng.normal(0, 6, band.shape), 0, 255)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        del pixels
        torch.manual_seed(0)
        model = Extractor(mode=mode).eval().to(device)
        before = peak_rss_mb()
        t = time.perf_counter()
        feats, ok, failures = folder_features(model, [path], progress=False)
        sync(device)
        seconds = time.perf_counter() - t
    assert ok.all(), failures.to_markdown()
    n = (args.width // 64) * (args.height // 64)
    return {"seconds": round(seconds, 2), "patches_per_s": round(n / seconds, 1), "patches": n,
            "megapixels": round(args.width * args.height / 1e6, 1), "peak_rss_before_mb": round(before, 1)}


if __name__ == "__main__":
    sys.argv[1:1] = [] if "--modes" in sys.argv else ["--modes", "fast"]
    run("large_image", workload, {"seconds": "s (lower is better)", "patches_per_s": "patch/s", "patches": "patches",
                                  "megapixels": "MP", "peak_rss_before_mb": "MiB (before the evaluation)"},
        add_arguments, smoke={"width": 640, "height": 448})
