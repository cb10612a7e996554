"""A trained pipeline as one folder (a *bundle*) and the Detector that scores images with it.

Detection reads **pixels only**. EXIF supervises the pretext training and is never consulted when an
image is scored: metadata is stripped by most platforms and forged in seconds.

Bundle contents, all in formats that load without running code: ``bundle.json`` (configuration,
threshold, vocabularies, kit version, data manifest hash, file hashes), ``extractor.pt`` and
``binary.pt`` (tensors only, read with ``weights_only=True``), ``gmm.npz`` + ``gmm.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .binary import BinaryModel
from .data.images import ImageLoadError, load_rgb
from .data.manifest import sha256_file
from .model.extractor import Extractor, ExtractorConfig
from .oneclass import OneClassDetector
from .patches import grid_patches, to_tensor

BUNDLE_FORMAT = 1


def save_bundle(path: str | Path, extractor: Extractor, oneclass: OneClassDetector, binary: BinaryModel, *,
                max_patches: int | None, vocabularies: dict | None = None, profile: str = "",
                manifest_sha256: str = "") -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(extractor.state_dict(), out / "extractor.pt")
    torch.save({k: v for k, v in binary.state_dict().items() if not k.startswith("frozen.")}, out / "binary.pt")
    oneclass.save(out / "gmm")
    files = {name: sha256_file(out / name) for name in ("extractor.pt", "binary.pt", "gmm.npz", "gmm.json")}
    meta = {"format": BUNDLE_FORMAT, "exifkit_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "profile": profile, "training_manifest_sha256": manifest_sha256,
            "extractor": {**asdict(extractor.config), "convs_per_stage": list(extractor.config.convs_per_stage)},
            "max_patches": max_patches, "oneclass_threshold": oneclass.threshold, "binary_threshold": 0.5,
            "vocabularies": {k: list(v.classes) for k, v in (vocabularies or {}).items()}, "files": files}
    (out / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


class BundleError(Exception):
    pass


@dataclass
class Score:
    path: str
    loglik: float
    oneclass_verdict: str
    p_fake: float
    binary_verdict: str
    patches: int


class Detector:
    """Both detectors of a bundle. ``score`` takes a path, a PIL image or an RGB uint8 array."""

    def __init__(self, extractor: Extractor, oneclass: OneClassDetector, binary: BinaryModel,
                 max_patches: int | None, meta: dict):
        self.extractor, self.oneclass, self.binary = extractor.eval(), oneclass, binary.eval()
        self.max_patches, self.meta = max_patches, meta

    @classmethod
    def from_bundle(cls, path: str | Path) -> "Detector":
        root = Path(path)
        meta_file = root / "bundle.json"
        if not meta_file.is_file():
            raise BundleError(f"{root}: not a bundle (no bundle.json); `make reproduce` writes one to "
                              "results/<profile>/bundle")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{root}: bundle format {meta.get('format')} is not {BUNDLE_FORMAT}")
        for name, digest in meta["files"].items():
            if not (root / name).is_file() or sha256_file(root / name) != digest:
                raise BundleError(f"{root / name}: missing or does not match the hash in bundle.json")
        raw = dict(meta["extractor"])
        raw["convs_per_stage"] = tuple(raw["convs_per_stage"])
        config = ExtractorConfig(**raw)
        extractor = Extractor(config)
        extractor.load_state_dict(torch.load(root / "extractor.pt", map_location="cpu", weights_only=True))
        binary = BinaryModel(config, Extractor(config))
        binary.load_state_dict(torch.load(root / "binary.pt", map_location="cpu", weights_only=True), strict=False)
        return cls(extractor, OneClassDetector.load(root / "gmm.json"), binary, meta["max_patches"], meta)

    @torch.inference_mode()
    def score(self, image, name: str = "") -> Score:
        if isinstance(image, (str, Path)):
            name = name or str(image)
            image = load_rgb(image)
        image = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
        patches = grid_patches(image, self.extractor.config.patch_size, self.max_patches)
        x = to_tensor(patches)[None]
        loglik = float(self.oneclass.score(self.extractor.embed(x).numpy())[0])
        p_fake = float(self.binary.fake_probability(x)[0, 0])
        return Score(name, loglik, "real" if loglik > self.oneclass.threshold else "AI-generated", p_fake,
                     "AI-generated" if p_fake > 0.5 else "real", len(patches))

    def score_paths(self, paths):
        """Scores for every readable file; an unreadable one becomes an error entry, the rest go on."""
        from .features import prefetched

        results, errors = [], []
        for path, image in prefetched(load_rgb, list(paths), depth=2):  # the next images decode meanwhile
            if isinstance(image, ImageLoadError):
                errors.append(image)
            elif isinstance(image, BaseException):
                raise image
            else:
                results.append(self.score(image, name=str(path)))
        return results, errors


def expand_paths(items) -> list[Path]:
    """Files as given, folders walked recursively (sorted); hidden files skipped."""
    out = []
    for item in map(Path, items):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            out.append(item)
    return out
