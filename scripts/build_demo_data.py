"""Maintainer script: rebuild data/demo/ and the demo and extended manifests from a local copy of the
shared real-image collection. Users never need it; the demo data is committed.

    python scripts/build_demo_data.py --source ../shared/data

Camera photos are cropped losslessly in the DCT domain (jpegtran, offsets on the 16 px grid) so their
quantisation tables and EXIF stay the camera's own. Only folders whose licence allows redistribution
are embedded; the rest stays referenced by the extended manifest.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import defaultdict
from pathlib import Path

from PIL import Image

from exifkit.data.manifest import Entry, sha256_file, write_manifest
from exifkit.data.transforms import mcu_center_crop_box, crop_spec, lossless_crop

CAMERA_CROP = 256
CAMERA_PHOTOS = 300
SENTRY_PER_GENERATOR = 2
REDISTRIBUTABLE = ("camera_exif/", "cnndetection_ranking/", "ai/sd15_artist_grids_webp/", "ai/sentry_")


def shared_entries(source: Path) -> list[Entry]:
    with (source / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Entry(path=r["relpath"], sha256=r["sha256"], bytes=int(r["bytes"]), label=r["label"], kind=r["kind"],
              generator=r["generator"], make=r["make"], model=r["model"], license=r["license"],
              source_url=r["source_url"], source_sha256=r["source_sha256"],
              source_bytes=int(r["source_bytes"]) if r["source_bytes"] else None, transform=r["transform"])
        for r in rows
    ]


def pick_cameras(entries: list[Entry], n: int) -> list[Entry]:
    """Round-robin over camera models so every model appears before any model appears twice."""
    by_model: dict[str, list[Entry]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: e.path):
        by_model[f"{e.make}/{e.model}"].append(e)
    picked, round_ = [], 0
    while len(picked) < n and any(len(v) > round_ for v in by_model.values()):
        for key in sorted(by_model):
            if len(by_model[key]) > round_ and len(picked) < n:
                picked.append(by_model[key][round_])
        round_ += 1
    return picked


def pick_sentry(entries: list[Entry], k: int) -> list[Entry]:
    by_folder: dict[str, list[Entry]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: e.path):
        by_folder[str(Path(e.path).parent)].append(e)
    return [e for folder in sorted(by_folder) for e in by_folder[folder][:k]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="local copy of the shared collection")
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = ap.parse_args()
    src, demo_root = args.source, args.repo / "data" / "demo"
    entries = shared_entries(src)

    write_manifest(entries, args.repo / "data_manifests" / "extended.csv", header=(
        "extended: every file of the shared real-image collection (camera photos with EXIF, CNNDetection\n"
        "pairs, AI-generated images, ImageNet reals). Serve it from a local mirror (EXIFKIT_MIRROR or\n"
        "--mirror) or download it: source_url + source_sha256 name the original, sha256 the file used."))

    cameras = pick_cameras([e for e in entries if e.path.startswith("camera_exif/")], CAMERA_PHOTOS)
    copied = [e for e in entries if e.path.startswith(("cnndetection_ranking/", "ai/sd15_artist_grids_webp/"))]
    copied += pick_sentry([e for e in entries if e.path.startswith("ai/sentry_")], SENTRY_PER_GENERATOR)
    assert all(e.path.startswith(REDISTRIBUTABLE) for e in cameras + copied)

    if demo_root.exists():
        for child in demo_root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
    demo: list[Entry] = []
    for e in cameras:
        with Image.open(src / e.path) as img:
            w, h = img.size
        box = mcu_center_crop_box(w, h, CAMERA_CROP)
        out = demo_root / e.path
        lossless_crop(src / e.path, out, box)
        before = f"; applied to the shared copy ({e.transform})" if e.transform else ""
        demo.append(Entry(**{**e.__dict__, "sha256": sha256_file(out), "bytes": out.stat().st_size,
                             "transform": f"{crop_spec(*box)} of a {w}x{h} file{before}"}))
    for e in copied:
        out = demo_root / e.path
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / e.path, out)
        demo.append(e)
    write_manifest(demo, args.repo / "data_manifests" / "demo.csv", header=(
        "demo: embedded in data/demo/ (licences in data/demo/LICENSES.md). Camera photos are central\n"
        f"{CAMERA_CROP}x{CAMERA_CROP} lossless crops (EXIF and quantisation kept); everything else is byte-identical\n"
        "to the shared collection. Rebuild with scripts/build_demo_data.py."))
    total = sum(e.bytes for e in demo)
    print(f"demo: {len(demo)} files, {total / 2**20:.1f} MiB; extended: {len(entries)} files")


if __name__ == "__main__":
    main()
