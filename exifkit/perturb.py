"""Robustness protocols: named, versioned lists of pixel operations (see ``protocols.toml``).

Every protocol is applied identically to real and fake test images. ``aligned_jpeg95`` is the
format-aligned protocol: JPEG-encoding everything once removes the JPEG-versus-PNG/WebP difference
between the classes, which a detector could otherwise use instead of the image content.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .augment import gaussian_blur, jpeg
from .errors import SettingError
from .patches import grid_patches

PROTOCOL_FILE = Path(__file__).parent / "protocols.toml"


@dataclass(frozen=True)
class Step:
    op: str
    params: tuple[tuple[str, float], ...]

    def apply(self, image: np.ndarray) -> np.ndarray:
        p = dict(self.params)
        if self.op == "jpeg":
            return jpeg(image, int(p["quality"]), "pillow")
        if self.op == "blur":
            return gaussian_blur(image, float(p["sigma"]))
        if self.op == "resize":
            h, w = image.shape[:2]
            size = (max(1, round(w * p["scale"])), max(1, round(h * p["scale"])))
            return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        if self.op == "center_crop":
            h, w = image.shape[:2]
            size = int(p["size"])
            top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
            return image[top:top + size, left:left + size]
        raise SettingError(f"unknown operation {self.op!r}")

    @property
    def reach(self) -> int | None:
        """How far from an output pixel the step reads its input, for a step that leaves every pixel where
        it was; None for one that moves pixels (resize, crop). A blur reads scipy's truncated kernel
        (4 sigma); a JPEG block depends on its own 16x16 MCU and, through the decoder's chroma
        upsampling, on the MCUs next to it."""
        if self.op == "blur":
            return int(4.0 * float(dict(self.params)["sigma"]) + 0.5)
        return JPEG_MCU if self.op == "jpeg" else None


JPEG_MCU = 16  # 4:2:0 chroma: the block grid is anchored at the encoded image's top-left corner


@dataclass(frozen=True)
class Protocol:
    id: str
    version: int
    description: str
    steps: tuple[Step, ...]
    aligned: bool = False

    @property
    def key(self) -> str:
        """What the feature cache keys on: the id, the version and every parameter."""
        ops = ";".join(f"{s.op}:" + ",".join(f"{k}={v}" for k, v in s.params) for s in self.steps)
        return f"{self.id}@v{self.version}[{ops}]"

    def __call__(self, image: np.ndarray, sample=None) -> np.ndarray:
        for step in self.steps:
            image = step.apply(image)
        return image

    def patches(self, image: np.ndarray, size: int, max_patches: int | None = None) -> np.ndarray:
        """``grid_patches(self(image), size, max_patches)``, byte for byte (tested). When every step leaves
        pixels where they were (blur, JPEG) and the patches are capped, the steps run only on the rows
        of the image the patches come from, widened by what the steps read around them and, for JPEG,
        out to the encoder's block grid: 4 patches of a 12-megapixel photo no longer blur or re-encode
        all of it."""
        reaches = [s.reach for s in self.steps]
        h, w = image.shape[:2]
        if not self.steps or None in reaches or not max_patches or min(h, w) < size:
            return grid_patches(self(image), size, max_patches)
        rows, cols = h // size, w // size
        n = min(max_patches, rows * cols)
        used_rows = -(-n // cols)
        y0, x0 = (h - rows * size) // 2, (w - cols * size) // 2
        y1, x1 = y0 + used_rows * size, x0 + (cols if used_rows > 1 else n) * size
        margin, grid = sum(reaches), JPEG_MCU if any(s.op == "jpeg" for s in self.steps) else 1
        top, left = max(0, y0 - margin) // grid * grid, max(0, x0 - margin) // grid * grid
        bottom, right = min(h, -(-(y1 + margin) // grid) * grid), min(w, -(-(x1 + margin) // grid) * grid)
        region = self(image[top:bottom, left:right])[y0 - top:y1 - top, x0 - left:x1 - left]
        return grid_patches(region, size, n)  # the region is whole patches: the same raster order


def make_protocol(pid: str, spec: dict, where: str = "protocol") -> Protocol:
    """A protocol from a table laid out as in ``protocols.toml`` (``version``, ``steps``, optional
    ``description`` and ``aligned``): how to try one that is not in the file."""
    steps = tuple(Step(s["op"], tuple(sorted((k, v) for k, v in s.items() if k != "op"))) for s in spec["steps"])
    for s in steps:
        if s.op not in ("jpeg", "blur", "resize", "center_crop"):
            raise SettingError(f"{where}: protocol {pid}: unknown operation {s.op!r}")
    return Protocol(pid, int(spec["version"]), spec.get("description", ""), steps, bool(spec.get("aligned")))


def load_protocols(path: str | Path = PROTOCOL_FILE) -> dict[str, Protocol]:
    with Path(path).open("rb") as fh:
        raw = tomllib.load(fh)
    return {pid: make_protocol(pid, spec, str(path)) for pid, spec in raw.items()}
