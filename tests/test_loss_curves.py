"""Both trainers on a fixed seed, step by step, against the curves recorded in
tests/golden/loss_curves.json before the two shared one training loop: changing the loop must not
change a single step's loss, a validation score or the weights a run ends with.

The curves are recorded per family of vector instructions: the convolution library runs other code on
an AVX2 CPU than on an AVX-512 one, and although every loss agrees to 1e-6 between the two, Adam turns
the rounding of a near-zero gradient into a whole step, so four head biases of the pretext run end
0.5 % apart (measured 2026-12-08). On each family the run is the same to 1e-5."""

from __future__ import annotations

import csv
import json
import os
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from exifkit.augment import AugmentConfig
from exifkit.binary import BinaryConfig, ValidationSet, train_binary
from exifkit.exif.read import read_many
from exifkit.model import Extractor, ExtractorConfig, native
from exifkit.patches import grid_patches, to_tensor
from exifkit.pretext import PretextConfig, load_photos, train_pretext
from exifkit.train import load_checkpoint

GOLDEN = Path(__file__).parent / "golden"


def _golden() -> Path:
    """The recording for this CPU's vector instructions (AVX-512, where the first was made, or AVX2)."""
    flags = native._cpu_signature().split()
    family = "" if "avx512f" in flags else "-avx2" if "avx2" in flags else f"-{platform.machine()}"
    return GOLDEN / f"loss_curves{family}.json"


TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return [{k: float(v) if v else float("nan") for k, v in row.items() if k not in ("pairs_per_s", "images_per_s", "seconds")}
                for row in csv.DictReader(fh)]


def _norms(checkpoint: Path) -> dict:
    return {k: float(v.double().norm()) for k, v in sorted(load_checkpoint(checkpoint)["model"].items())
            if not k.startswith("frozen.")}


def _pretext(tmp: Path, paths: list[Path]) -> dict:
    photos = load_photos(paths[:12], read_many(paths[:12]), max_side=64)
    validation = load_photos(paths[12:18], read_many(paths[12:18]), max_side=64,
                             vocabularies=photos.labels.vocabularies)
    config = PretextConfig(extractor=TINY, steps=6, batch_pairs=3, n_patches=2, checkpoint_every=3, log_every=1,
                           validate_every=3, eval_max_patches=4, seed=5, device="cpu", precision="fp32", max_side=64)
    train_pretext(replace(config, steps=3), photos, tmp, progress=False, validation=validation)
    train_pretext(config, photos, tmp, resume=True, progress=False, validation=validation)
    return {"metrics": _rows(tmp / "metrics.csv"), "validation": _rows(tmp / "validation.csv"),
            "weights": _norms(tmp / "last.pt")}


def _binary(tmp: Path) -> dict:
    rng = np.random.default_rng(1)
    images, labels = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(8)], np.array([0, 1] * 4)
    torch.manual_seed(9)
    frozen = Extractor(TINY).eval()
    config = BinaryConfig(extractor=TINY, steps=6, batch_images=3, n_patches=2, checkpoint_every=3, log_every=1,
                          seed=2, device="cpu", precision="fp32",
                          augment=AugmentConfig(resize_p=0.5, resize_range=(16, 40), blur_p=0.5, jpeg_p=0.5))
    held = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    validation = ValidationSet([to_tensor(grid_patches(im, 16, 4)) for im in held], np.array([0, 1] * 3),
                               ["real", "fake"] * 3)
    train_binary(replace(config, steps=3), frozen, images, labels, tmp, progress=False, validation=validation)
    train_binary(config, frozen, images, labels, tmp, resume=True, progress=False, validation=validation)
    return {"metrics": _rows(tmp / "metrics.csv"), "validation": _rows(tmp / "validation.csv"),
            "weights": _norms(tmp / "last.pt"), "best": _norms(tmp / "best.pt")}


def curves(tmp: Path, camera_paths: list[Path]) -> dict:
    return {"pretext": _pretext(tmp / "pretext", camera_paths), "binary": _binary(tmp / "binary")}


RECORDED_THREADS = 2  # float32 sums split across threads round differently: the curves hold for this many


def test_both_trainers_follow_their_recorded_curves(tmp_path, demo_camera_paths):
    threads = torch.get_num_threads()
    torch.set_num_threads(RECORDED_THREADS)
    try:
        measured = curves(tmp_path, demo_camera_paths)
    finally:
        torch.set_num_threads(threads)
    golden = _golden()
    if os.environ.get("EXIFKIT_RECORD_CURVES"):  # only to record a deliberate change of the numbers
        golden.write_text(json.dumps(measured, indent=1) + "\n")
    assert golden.is_file(), f"no curves recorded for this CPU's instructions: {golden.name} (EXIFKIT_RECORD_CURVES=1)"
    recorded = json.loads(golden.read_text())
    for trainer, parts in recorded.items():
        for part, expected in parts.items():
            got = measured[trainer][part]
            if part in ("weights", "best"):
                assert got.keys() == expected.keys(), trainer
                assert got == pytest.approx(expected, rel=1e-5), trainer
                continue
            assert len(got) == len(expected), (trainer, part)
            for g, e in zip(got, expected):
                assert g.keys() == e.keys() and g == pytest.approx(e, rel=1e-5, abs=1e-7, nan_ok=True), (trainer, part, e["step"])
