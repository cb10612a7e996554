"""A trained pipeline as one folder, a *bundle*: its format, how it is written and read back with its
guard rails, and the bundles made for a user's own reals or from the authors' released checkpoints.

Contents, all in formats that load without running code: ``bundle.json`` (configuration, thresholds,
vocabularies, kit version, data manifest hash, file hashes), ``extractor.pt`` and ``binary.pt`` (tensors
only, read with ``weights_only=True``), ``gmm.npz`` + ``gmm.json``. :class:`exifkit.detect.Detector`
scores images with one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from sklearn.base import clone

from .binary import BinaryModel, from_official
from .data.images import FailureReport
from .data.inputs import collect_files
from .data.manifest import sha256_file
from .errors import UserError
from .features import folder_features
from .model.extractor import Extractor, ExtractorConfig
from .model.official import load_official
from .oneclass import OneClassDetector
from .version import __version__

BUNDLE_FORMAT = 1
ABLATION_FILE = "binary_alpha0.pt"
TRAINING_FILES = "training_sha256.txt"


def save_bundle(path: str | Path, extractor: Extractor, oneclass: OneClassDetector, binary: BinaryModel | None, *,
                max_patches: int | None, vocabularies: dict | None = None, profile: str = "",
                manifest_sha256: str = "", binary_threshold: float = 0.5, binary_validation: dict | None = None,
                extra: dict | None = None, trained_on=None, binary_alpha: float | None = None,
                ablation: tuple[BinaryModel, dict] | None = None) -> Path:
    """``binary_validation`` (accuracies at the threshold on the run's validation images) is what the
    guard rail in :class:`Detector` reads; ``extra`` is stored as is (model card facts). ``binary`` None
    makes a one-class-only bundle. ``trained_on``, the sha256 of every file the models trained or
    validated on, lets another evaluation leave them out (:meth:`exifkit.data.suites.Suite.excluding`).
    ``ablation`` (the alpha = 0 binary detector and its validation record) travels along so an evaluation
    can show the regulariser's effect without training; detection never reads it."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(extractor.state_dict(), out / "extractor.pt")
    names = ["extractor.pt", "gmm.npz", "gmm.json"]
    for name, model in (("binary.pt", binary), (ABLATION_FILE, ablation[0] if ablation else None)):
        if model is not None:
            torch.save(model.state_dict(), out / name)
            names.append(name)
        else:
            (out / name).unlink(missing_ok=True)
    oneclass.save(out / "gmm")
    if trained_on is not None:
        (out / TRAINING_FILES).write_text("".join(f"{h}\n" for h in sorted(trained_on)))
        names.append(TRAINING_FILES)
    else:
        (out / TRAINING_FILES).unlink(missing_ok=True)
    files = {name: sha256_file(out / name) for name in names}
    meta = {"format": BUNDLE_FORMAT, "exifkit_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "profile": profile, "training_manifest_sha256": manifest_sha256,
            "extractor": {**asdict(extractor.config), "convs_per_stage": list(extractor.config.convs_per_stage)},
            "max_patches": max_patches, "oneclass_threshold": oneclass.threshold_, "binary_threshold": binary_threshold,
            "oneclass_density": oneclass.density_name_, "oneclass_method": oneclass.method,
            "binary_validation": binary_validation, "binary_alpha": binary_alpha,
            "ablation_binary": None if ablation is None else {"alpha": 0.0, "validation": ablation[1]}, **(extra or {}),
            "vocabularies": {k: list(getattr(v, "classes", v)) for k, v in (vocabularies or {}).items()}, "files": files}
    (out / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


class BundleError(UserError):
    pass


def load_bundled_binary(path: Path, config: ExtractorConfig) -> BinaryModel:
    """A bundled binary detector: its trainable extractor and head (the teacher is never shipped)."""
    model = BinaryModel(config)
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BundleError(f"{path}: not a binary detector of this architecture (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    return model.eval()


DEGENERATE_BELOW = 0.2


def guard_rails(meta: dict) -> list[str]:
    """Warnings for detectors whose verdicts were degenerate on the bundle's own validation images
    (real or fake accuracy below 0.2 at the shipped threshold): their verdicts are not informative."""
    out = []
    for key, name in (("oneclass_validation", "one-class"), ("binary_validation", "binary")):
        if key == "binary_validation" and "binary.pt" not in meta.get("files", {"binary.pt": ""}):
            continue
        v = meta.get(key) or {}
        low = [f"{cls} accuracy {v[f'{cls}_acc']:.2f}" for cls in ("real", "fake")
               if v.get(f"{cls}_acc") is not None and v[f"{cls}_acc"] < DEGENERATE_BELOW]
        if low:
            out.append(f"the {name} detector of this bundle is degenerate on its own validation images "
                       f"({', '.join(low)} over {v.get('validation_images', '?')} images): its verdicts say "
                       "nothing about your images")
    if not meta.get("oneclass_validation") and not meta.get("binary_validation"):
        out.append("this bundle records no validation accuracy: nothing shows its verdicts are informative")
    return out


def read_bundle(path: str | Path) -> tuple[dict, Extractor, OneClassDetector, BinaryModel | None]:
    """(meta, extractor, one-class detector, binary detector or None) of a bundle folder, after checking
    its format and every file against the hashes in ``bundle.json``."""
    root = Path(path)
    meta_file = root / "bundle.json"
    if not meta_file.is_file():
        raise BundleError(f"{root}: not a bundle (no bundle.json); `make reproduce` writes one to "
                          "results/<profile>/bundle")
    try:
        meta = json.loads(meta_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_file}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise BundleError(f"{meta_file}: bundle format {found} is not {BUNDLE_FORMAT}")
    missing = [k for k in ("files", "extractor", "max_patches") if k not in meta]
    if missing or not isinstance(meta["files"], dict):
        raise BundleError(f"{meta_file}: incomplete, no {', '.join(missing) or 'file table'}; rebuild the bundle")
    for name, digest in meta["files"].items():
        if not (root / name).is_file() or sha256_file(root / name) != digest:
            raise BundleError(f"{root / name}: missing or does not match the hash in bundle.json")
    config = ExtractorConfig.from_dict(meta["extractor"])
    extractor = Extractor(config)
    extractor.load_state_dict(torch.load(root / "extractor.pt", map_location="cpu", weights_only=True))
    binary = load_bundled_binary(root / "binary.pt", config) if "binary.pt" in meta["files"] else None
    return meta, extractor, OneClassDetector.load(root / "gmm.json"), binary


#: The one-class setting fitted on a user's own folder of reals: chosen on held-out reals, threshold at
#: the 5th percentile of the reals kept out of fitting.
FOR_OWN_REALS = OneClassDetector(method="small_sample", threshold_percentile=5.0)


def _fit_reals(extractor: Extractor, reals_dir: str | Path, max_patches: int | None, detector: OneClassDetector,
               progress: bool = True) -> tuple[OneClassDetector, dict, FailureReport]:
    """The small-sample one-class density fitted on a folder of real photos: part held out to set the
    threshold, its false-positive rate on those held-out reals reported."""
    found = collect_files([reals_dir])
    if not found.files:
        raise BundleError(f"{reals_dir}: no image files" + (f" ({found.problems.failures[0]})" if found.problems else ""))
    files = found.files
    feats, ok, failures = folder_features(extractor, files, max_patches=max_patches, progress=progress)
    for problem in found.problems.failures:
        failures.add(problem)
    detector = clone(detector).fit(feats)
    digest = hashlib.sha256("".join(sorted(sha256_file(f) for f, o in zip(files, ok) if o)).encode()).hexdigest()
    report = {"reals": int(ok.sum()), "unreadable": len(failures), "fitted_on": detector.n_train_,
              "held_out_for_threshold": detector.n_calibration_, "density": detector.density_name_,
              "held_out_real_acc": detector.calibration_real_acc_,
              "held_out_false_positive_rate": 1 - detector.calibration_real_acc_, "reals_sha256": digest}
    return detector, report, failures


def refit_bundle(source: str | Path, reals_dir: str | Path, out: str | Path, oneclass: OneClassDetector | None = None,
                 progress: bool = True) -> tuple[Path, dict, FailureReport]:
    """A copy of ``source`` whose one-class detector is refitted on the user's own real photos (the
    extractor and the binary detector are kept): the one-class method needs reals only."""
    meta, extractor, _, binary = read_bundle(source)
    oneclass, report, failures = _fit_reals(extractor, reals_dir, meta["max_patches"], oneclass or FOR_OWN_REALS,
                                            progress)
    path = save_bundle(out, extractor, oneclass, binary, max_patches=meta["max_patches"],
                       profile=f"{meta.get('profile', '')} refitted on {Path(reals_dir).name}",
                       manifest_sha256=meta.get("training_manifest_sha256", ""),
                       binary_threshold=float(meta.get("binary_threshold", 0.5)), binary_validation=meta.get("binary_validation"),
                       extra={"oneclass_validation": {"real_acc": report["held_out_real_acc"], "fake_acc": None,
                                                      "validation_images": report["held_out_for_threshold"]},
                              "refit": {"from": str(source), **report}})
    return path, report, failures


def bundle_from_official(backbone: str | Path, reals_dir: str | Path, out: str | Path, binary: str | Path | None = None,
                         max_patches: int | None = 256, oneclass: OneClassDetector | None = None,
                         progress: bool = True) -> tuple[Path, dict, FailureReport]:
    """A bundle from the authors' released checkpoints: their pretext backbone for the one-class detector
    (fitted here on ``reals_dir``, as they release no mixture) and, if given, their binary detector."""
    pretext = load_official(backbone)
    if pretext.kind != "pretext":
        raise BundleError(f"{backbone}: a {pretext.kind} checkpoint; --backbone takes the pretext one")
    detector_binary = None
    if binary is not None:
        official = load_official(binary)
        if official.kind != "binary":
            raise BundleError(f"{binary}: a {official.kind} checkpoint; --binary takes the binary one")
        detector_binary = from_official(official)
    oneclass, report, failures = _fit_reals(pretext.extractor, reals_dir, max_patches, oneclass or FOR_OWN_REALS,
                                            progress)
    path = save_bundle(out, pretext.extractor, oneclass, detector_binary, max_patches=max_patches,
                       profile="official checkpoints", manifest_sha256="",
                       extra={"oneclass_validation": {"real_acc": report["held_out_real_acc"], "fake_acc": None,
                                                      "validation_images": report["held_out_for_threshold"]},
                              "official": {"backbone": str(backbone), "backbone_sha256": sha256_file(backbone),
                                           "binary": None if binary is None else str(binary),
                                           "binary_sha256": None if binary is None else sha256_file(binary)},
                              "refit": report})
    return path, report, failures


def default_bundle(root: Path) -> Path:
    """The shipped reference bundle (trained on the extended profile); the demo's bundle only when a
    checkout lacks it."""
    reference = Path(root) / "results" / "extended" / "bundle"
    return reference if (reference / "bundle.json").is_file() else Path(root) / "results" / "demo" / "bundle"
