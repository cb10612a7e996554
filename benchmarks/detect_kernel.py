"""`exifkit detect` end to end with and without the Winograd operators: the shipped bundle scoring a
folder of demo files (decoding included, as the command does) and one 24-megapixel photo.

Each mode runs in its own process; ``direct`` sets ``EXIFKIT_WINOGRAD=0`` before exifkit loads, so
the fast path convolves with PyTorch's conv2d. Both run in float32, so the ratio is the kernel's alone
(``inference_precision.py`` measures its bf16 products against float32). This is the measurement that keeps the kernel in the
kit (issue 25: it stays only while it gains at least 1.3x here).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, run  # noqa: E402

MODES = ("direct", "winograd")


def add_arguments(parser):
    parser.add_argument("--files", type=int, default=200, help="demo files to score (spread over kinds)")
    parser.add_argument("--megapixels", type=float, default=24.0, help="size of the one large photo")


def workload(mode: str, device: str, args) -> dict:
    os.environ["EXIFKIT_WINOGRAD"] = "1" if mode == "winograd" else "0"
    import tempfile

    import numpy as np
    from PIL import Image

    from exifkit.config import data_store, load_profile
    from exifkit.detect import Detector

    from _common import rate

    store = data_store(load_profile("demo", ROOT))
    entries = [e for e in store.manifest if e.is_image]
    paths = [store.path(e) for e in entries[::max(1, len(entries) // args.files)]][:args.files]
    detector = Detector.from_bundle(precision="fp32")
    with tempfile.TemporaryDirectory() as tmp:
        side = int((args.megapixels * 1e6 / 6) ** 0.5)
        rng = np.random.default_rng(0)
        big = Path(tmp) / "large.jpg"
        Image.fromarray(rng.integers(0, 256, (2 * side, 3 * side, 3), dtype=np.uint8)).save(big, quality=92)
        folder = rate(lambda: sum(1 for _ in detector.iter_scores(paths)), device, args)
        large = rate(lambda: len(list(detector.iter_scores([big]))), device, args)
    return {"files_per_s": folder, "large_photos_per_s": large, "files": len(paths)}


if __name__ == "__main__":
    run("detect_kernel", workload, {"files_per_s": "file/s", "large_photos_per_s": "photo/s", "files": "files"},
        add_arguments, modes=MODES, smoke={"files": 4, "megapixels": 0.5})
