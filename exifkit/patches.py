"""From decoded images to the patch sets the extractor reads.

Training takes a few random crops per photo ("scrambled": random places, random order), so the
network cannot rely on scene layout. Evaluation takes every non-overlapping patch in raster order.
Pixels go to [0, 1] and are then normalised with the CLIP statistics, as the authors do.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def ensure_min_side(image: np.ndarray, size: int) -> np.ndarray:
    """An image with a side under ``size`` is resized to size x size (the authors' rule)."""
    h, w = image.shape[:2]
    if min(h, w) >= size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def random_positions(height: int, width: int, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) top-left corners (y, x), drawn independently."""
    return np.stack([rng.integers(0, height - size + 1, n), rng.integers(0, width - size + 1, n)], axis=1)


def random_patches(image: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size, size, 3) crops at independent random positions."""
    image = ensure_min_side(image, size)
    corners = random_positions(image.shape[0], image.shape[1], n, size, rng)
    return np.stack([image[y:y + size, x:x + size] for y, x in corners])


def grid_patches(image: np.ndarray, size: int, max_patches: int | None = None) -> np.ndarray:
    """Centre crop to multiples of ``size``, then every patch in raster order (the first
    ``max_patches`` of them if capped): (n, size, size, 3)."""
    image = ensure_min_side(image, size)
    h, w = image.shape[:2]
    rows, cols = h // size, w // size
    top, left = (h - rows * size) // 2, (w - cols * size) // 2
    crop = image[top:top + rows * size, left:left + cols * size]
    patches = crop.reshape(rows, size, cols, size, 3).transpose(0, 2, 1, 3, 4).reshape(-1, size, size, 3)
    return patches[:max_patches] if max_patches else patches


_MEAN = torch.tensor(CLIP_MEAN, dtype=torch.float64).view(3, 1, 1)
_STD = torch.tensor(CLIP_STD, dtype=torch.float64).view(3, 1, 1)
_SCALE, _SHIFT = (1 / (255 * _STD)).float(), (-_MEAN / _STD).float()


def to_tensor(patches: np.ndarray) -> torch.Tensor:
    """uint8 (..., size, size, 3) -> normalised float32 (..., 3, size, size): (x / 255 - mean) / std,
    as one multiply-add straight from the bytes (2.3x faster than four passes; equal to 2.4e-7)."""
    patches = np.ascontiguousarray(patches)
    if not patches.flags.writeable:  # views of Pillow's buffer: torch would warn, and nothing writes here
        patches = patches.copy()
    x = torch.from_numpy(patches).movedim(-1, -3)
    return torch.addcmul(_SHIFT, x, _SCALE)


def center_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The central ``side`` x ``side`` region (a smaller dimension is kept whole): how decoded training
    photos are bounded without resizing, which would erase the traces the extractor learns."""
    h, w = image.shape[:2]
    th, tw = min(h, side), min(w, side)
    top, left = (h - th) // 2, (w - tw) // 2
    return image[top:top + th, left:left + tw]
