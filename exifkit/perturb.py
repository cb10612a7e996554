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
