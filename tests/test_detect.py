"""The bundle round trip, the Python API and `exifkit detect` on a folder mixing real, fake and broken files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from exifkit.binary import BinaryModel
from exifkit.cli import main
from exifkit.detect import BundleError, Detector, save_bundle
from exifkit.model.extractor import Extractor, ExtractorConfig
from exifkit.oneclass import OneClassDetector

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    extractor = Extractor(TINY).eval()
    feats = np.random.default_rng(0).normal(size=(40, TINY.feature_dim))
    gmm = OneClassDetector().fit(feats)
    binary = BinaryModel(TINY, extractor).eval()
    return save_bundle(tmp_path / "bundle", extractor, gmm, binary, max_patches=8, profile="test"), extractor, binary


def test_bundle_round_trip_gives_identical_scores(bundle, demo_camera_paths):
    path, extractor, binary = bundle
    det = Detector.from_bundle(path)
    s = det.score(demo_camera_paths[0])
    assert det.meta["profile"] == "test" and det.meta["exifkit_version"]
    assert s.patches == 8 and 0 <= s.p_fake <= 1 and s.oneclass_verdict in ("real", "AI-generated")
    from exifkit.data.images import load_rgb
    from exifkit.patches import grid_patches, to_tensor

    x = to_tensor(grid_patches(load_rgb(demo_camera_paths[0]), 16, 8))[None]
    with torch.no_grad():
        assert s.p_fake == pytest.approx(float(binary.fake_probability(x)[0, 0]), abs=1e-6)
        assert s.loglik == pytest.approx(float(det.oneclass.score(extractor(x).feature.numpy())[0]), abs=1e-6)
    assert det.score(load_rgb(demo_camera_paths[0])).p_fake == pytest.approx(s.p_fake)  # arrays work too


def test_tampered_bundle_is_refused(bundle):
    path, _, _ = bundle
    with open(path / "binary.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(BundleError, match="binary.pt: missing or does not match"):
        Detector.from_bundle(path)


def test_detect_command_on_a_mixed_folder(bundle, tmp_path, demo_store, capsys):
    path, _, _ = bundle
    folder = tmp_path / "mixed"
    folder.mkdir()
    camera = next(e for e in demo_store.manifest if e.kind == "camera")
    fake = next(e for e in demo_store.manifest if e.label == "fake" and e.kind == "generated")
    shutil.copy(demo_store.path(camera), folder / "photo.jpg")
    shutil.copy(demo_store.path(fake), folder / ("generated" + demo_store.path(fake).suffix))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "empty.jpg").touch()
    assert main(["detect", str(folder), "--bundle", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert sorted(r["path"].split("/")[-1] for r in report["results"])[1] == "photo.jpg"
    assert len(report["results"]) == 2 and len(report["errors"]) == 2
    assert "broken.png" in captured.err and "empty.jpg: file is empty" in captured.err
    assert main(["detect", str(folder / "photo.jpg"), "--bundle", str(path)]) == 0
    assert "P(fake)" in capsys.readouterr().out


def test_python_api_is_exposed_at_the_top_level(bundle):
    import exifkit

    assert exifkit.Detector is Detector
