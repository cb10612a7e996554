"""The Detector: a bundle's two detectors scoring images.

Detection reads **pixels only**. EXIF supervises the pretext training and is never consulted when an
image is scored: metadata is stripped by most platforms and forged in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .binary import BinaryModel
from .bundle import ABLATION_FILE, default_bundle, guard_rails, load_bundled_binary, read_bundle
from .checkout import find_root
from .data.images import ImageLoadError, load_rgb
from .features import prefetched
from .model.extractor import Extractor
from .oneclass import OneClassDetector
from .patches import grid_patches, to_tensor


@dataclass
class Score:
    path: str
    loglik: float
    oneclass_verdict: str
    p_fake: float  # NaN when the bundle has no binary detector
    binary_verdict: str  # "real", "AI-generated", or "n/a" without a binary detector
    patches: int


class Detector:
    """Both detectors of a bundle. ``score`` takes a path, a PIL image or an RGB uint8 array."""

    def __init__(self, extractor: Extractor, oneclass: OneClassDetector, binary: BinaryModel | None,
                 max_patches: int | None, meta: dict, precision: str = "auto"):
        self.extractor, self.oneclass = extractor.eval(), oneclass
        self.binary = binary.eval() if binary is not None else None
        self.precision = precision
        self.max_patches, self.meta = max_patches, meta
        self.root: Path | None = None  # the bundle folder, when loaded from one
        self.binary_threshold = float(meta.get("binary_threshold", 0.5))
        self.warnings = guard_rails(meta)

    @property
    def precision(self) -> str:
        """Of both networks' inference (see :attr:`exifkit.model.Extractor.inference_precision`)."""
        return self.extractor.precision

    @precision.setter
    def precision(self, value: str) -> None:
        for network in (self.extractor, self.binary.extractor if self.binary is not None else None):
            if network is not None:
                network.precision = value

    @classmethod
    def from_bundle(cls, path: str | Path | None = None, precision: str = "auto") -> "Detector":
        """``path`` None: the shipped reference bundle (see :func:`~exifkit.bundle.default_bundle`)."""
        root = Path(path) if path is not None else default_bundle(find_root())
        meta, extractor, oneclass, binary = read_bundle(root)
        detector = cls(extractor, oneclass, binary, meta["max_patches"], meta, precision)
        detector.root = root
        return detector

    def shipped_binaries(self) -> dict[str, tuple[BinaryModel, dict]]:
        """The bundle's binary detector and, when shipped, its alpha = 0 ablation, by run name
        ("alpha=A"), each with its validation record (threshold and accuracies)."""
        out = {}
        if self.binary is not None:
            alpha = self.meta.get("binary_alpha")
            out["shipped" if alpha is None else f"alpha={alpha:g}"] = (
                self.binary, self.meta.get("binary_validation") or {"threshold": self.binary_threshold})
        ablation = self.meta.get("ablation_binary")
        if ablation and ABLATION_FILE in self.meta["files"]:
            ablated = load_bundled_binary(self.root / ABLATION_FILE, self.extractor.config)
            ablated.extractor.precision = self.precision
            out[f"alpha={ablation['alpha']:g}"] = (ablated, ablation["validation"])
        return out

    @torch.inference_mode()
    def score(self, image, name: str = "") -> Score:
        if isinstance(image, (str, Path)):
            name = name or str(image)
            image = load_rgb(image)
        image = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
        patches = grid_patches(image, self.extractor.config.patch_size, self.max_patches)
        x = to_tensor(patches)[None]
        loglik = float(self.oneclass.score_samples(self.extractor.embed(x).numpy())[0])
        if self.binary is None:
            p_fake, verdict = float("nan"), "n/a"
        else:
            p_fake = float(self.binary.fake_probability(x)[0, 0])
            verdict = "AI-generated" if p_fake > self.binary_threshold else "real"
        return Score(name, loglik, "real" if loglik > self.oneclass.threshold_ else "AI-generated", p_fake,
                     verdict, len(patches))

    def iter_scores(self, paths):
        """``(path, Score or ImageLoadError)`` for each path, in order, as each is scored: an
        unreadable file is reported in its place and the rest go on."""
        for path, image in prefetched(load_rgb, list(paths), depth=2):  # the next images decode meanwhile
            if isinstance(image, BaseException) and not isinstance(image, ImageLoadError):
                raise image
            yield path, image if isinstance(image, ImageLoadError) else self.score(image, name=str(path))
