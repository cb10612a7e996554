"""Dataset decoding throughput: files/s and megapixels/s from file to the patches the network reads.

Every demo file (camera JPEGs, generated PNG/JPEG/WebP, CNNDetection PNGs) is decoded, checked and
cut into its grid of 64-pixel patches. Reference: one file after the other. Fast: the kit's
prefetcher, which decodes the next files on a background thread (decoders release the GIL) while
the current one is cut.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, run  # noqa: E402


def add_arguments(parser):
    parser.add_argument("--files", type=int, default=300, help="demo files to decode (spread over kinds)")


def workload(mode: str, device: str, args) -> dict:
    from exifkit.config import data_store, load_profile
    from exifkit.data.images import load_rgb
    from exifkit.features import prefetched
    from exifkit.patches import grid_patches

    from _common import rate

    store = data_store(load_profile("demo", ROOT))
    entries = list(store.manifest)
    paths = [store.path(e) for e in entries[::max(1, len(entries) // args.files)]][:args.files]
    pixels = {"n": 0}

    def decode_all():
        pixels["n"] = 0
        for path, image in prefetched(load_rgb, paths, 0 if mode == "reference" else 2):
            if isinstance(image, BaseException):
                raise image
            pixels["n"] += image.shape[0] * image.shape[1]
            grid_patches(image, 64)
        return len(paths)

    files = rate(decode_all, device, args)
    return {"files_per_s": files, "megapixels_per_s": round(files["median"] * pixels["n"] / len(paths) / 1e6, 2),
            "files": len(paths)}


if __name__ == "__main__":
    run("decoding", workload, {"files_per_s": "file/s", "megapixels_per_s": "MP/s", "files": "files"}, add_arguments,
        smoke={"files": 10})
