"""Synthetic camera-like photos: JPEG files of varied size with EXIF written by piexif.

They stand in for a large photo collection where only the data path is measured (packing, streaming,
memory at scale): the pixels are smooth noise, not scenes, and the tags are drawn per "camera", not
read from one. Nothing here is a camera trace; never train a detector on them.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

CAMERAS = [("Canon", "Canon EOS 5D Mark II"), ("Canon", "Canon PowerShot G9"), ("NIKON CORPORATION", "NIKON D90"),
           ("NIKON CORPORATION", "COOLPIX P7000"), ("SONY", "DSC-RX100"), ("SONY", "ILCE-7M3"), ("Apple", "iPhone 12"),
           ("samsung", "SM-G991B"), ("FUJIFILM", "X-T3"), ("OLYMPUS IMAGING CORP.", "E-M10"), ("Panasonic", "DMC-GX7"),
           ("Google", "Pixel 6")]


def _rational(value: float, denominator: int = 100) -> tuple[int, int]:
    f = Fraction(value).limit_denominator(denominator)
    return f.numerator, f.denominator


def _exif(rng: np.random.Generator, camera: int) -> bytes:
    make, model = CAMERAS[camera]
    zeroth = {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode()}
    focal = float(rng.choice([4.2, 6.0, 18.0, 24.0, 35.0, 50.0, 85.0, 200.0]))
    tags = {
        piexif.ExifIFD.Flash: int(rng.choice([0, 1, 16, 24, 25])),
        piexif.ExifIFD.MeteringMode: int(rng.choice([1, 2, 3, 5])),
        piexif.ExifIFD.ExposureMode: int(rng.choice([0, 1])),
        piexif.ExifIFD.WhiteBalance: int(rng.choice([0, 1])),
        piexif.ExifIFD.SceneCaptureType: int(rng.choice([0, 1, 2, 3])),
        piexif.ExifIFD.FocalLength: _rational(focal, 10),
        piexif.ExifIFD.FNumber: _rational(float(rng.choice([1.8, 2.8, 4.0, 5.6, 8.0, 11.0])), 10),
        piexif.ExifIFD.ExposureTime: (1, int(rng.choice([30, 60, 125, 250, 1000, 4000]))),
        piexif.ExifIFD.ISOSpeedRatings: int(rng.choice([100, 200, 400, 800, 3200])),
        piexif.ExifIFD.MaxApertureValue: _rational(float(rng.uniform(1.0, 5.0))),
        piexif.ExifIFD.CompressedBitsPerPixel: _rational(float(rng.choice([2.0, 4.0, 8.0]))),
        piexif.ExifIFD.FocalLengthIn35mmFilm: int(focal * rng.choice([1.0, 1.5, 5.6])),
    }
    for tag in list(tags):  # cameras leave tags out: about one in ten is missing
        if rng.random() < 0.1:
            del tags[tag]
    return piexif.dump({"0th": zeroth, "Exif": tags})


def write_photo(path: Path, seed: int, sides=(256, 640)) -> Path:
    """One synthetic photo at ``path``: a size drawn from ``sides`` (multiples of 16), smooth noise
    upsampled from an eighth of the size, a JPEG quality of 70-98 and one camera's tags."""
    rng = np.random.default_rng([seed, 91])
    w, h = (int(rng.integers(sides[0] // 16, sides[1] // 16 + 1)) * 16 for _ in range(2))
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=int(rng.integers(70, 99)), exif=_exif(rng, int(rng.integers(len(CAMERAS)))))
    return path


def _write_range(task) -> int:
    folder, start, stop, seed = task
    for i in range(start, stop):
        write_photo(Path(folder) / f"{i // 1000:04d}" / f"{i:07d}.jpg", seed * 10_000_019 + i)
    return stop - start


def write_photos(folder: str | Path, n: int, seed: int = 0, workers: int = 1) -> Path:
    """``n`` synthetic photos under ``folder`` (1,000 per subfolder), ``workers`` processes; photos
    already there (same names) are kept, so a larger set extends a smaller one."""
    from multiprocessing import get_context

    folder = Path(folder)
    todo = [i for i in range(n) if not (folder / f"{i // 1000:04d}" / f"{i:07d}.jpg").exists()]
    if not todo:
        return folder
    chunks = [(str(folder), todo[k], todo[min(k + 500, len(todo)) - 1] + 1, seed) for k in range(0, len(todo), 500)]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            sum(pool.imap_unordered(_write_range, chunks))
    else:
        for chunk in chunks:
            _write_range(chunk)
    return folder
