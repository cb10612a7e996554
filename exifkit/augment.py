"""Image augmentations of binary training and the pixel operations the perturbation protocols reuse
(JPEG re-encoding, Gaussian blur, random crops): plain NumPy arrays in and out, seeded by the caller."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


@dataclass(frozen=True)
class AugmentConfig:
    """The authors' training augmentation, applied in this order, after an optional random crop.

    Defaults are the authors'. A *format-aligned* pipeline (what the extended profile trains with) sets
    ``crop`` and ``jpeg_p = 1``: every image of both classes is cut to the same size and re-encoded at a
    random JPEG quality, so neither the file format, the size nor the compression history separates
    real from generated in training."""

    crop: int = 0  # random square crop of this side (smaller images are kept whole); 0: none
    resize_p: float = 0.3
    resize_range: tuple[int, int] = (64, 128)  # a random *square* side (aspect ratio is not kept)
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    jpeg_p: float = 0.25
    jpeg_quality: tuple[int, int] = (90, 99)  # inclusive
    jpeg_encoders: tuple[str, ...] = ("pillow", "opencv")  # one drawn at random per image


def jpeg(image: np.ndarray, quality: int, encoder: str = "pillow") -> np.ndarray:
    """Encode and decode once; the two encoders differ in chroma handling, which is why both are used."""
    if encoder == "opencv":
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("OpenCV could not encode the image")
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    blurred = gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def random_crop(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    th, tw = min(h, side), min(w, side)
    top, left = int(rng.integers(h - th + 1)), int(rng.integers(w - tw + 1))
    return image[top:top + th, left:left + tw]


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    if config.crop:
        image = random_crop(image, config.crop, rng)
    if rng.random() < config.resize_p:
        side = int(rng.integers(config.resize_range[0], config.resize_range[1] + 1))
        image = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
    if rng.random() < config.blur_p:
        image = gaussian_blur(image, float(rng.uniform(*config.blur_sigma)))
    if rng.random() < config.jpeg_p:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        image = jpeg(image, quality, config.jpeg_encoders[int(rng.integers(len(config.jpeg_encoders)))])
    return image
