"""The bundle round trip, the Python API and `exifkit detect` on a folder mixing real, fake and broken files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from exifkit.binary import BinaryModel
from exifkit.cli import main
from exifkit.bundle import BundleError, save_bundle
from exifkit.detect import Detector
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
    binary = BinaryModel(TINY).eval()
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
        assert s.loglik == pytest.approx(float(det.oneclass.score_samples(extractor(x).feature.numpy())[0]), abs=1e-6)
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


def test_degenerate_bundles_are_flagged_by_detect(tmp_path, demo_camera_paths, capsys):
    from exifkit.bundle import guard_rails

    torch.manual_seed(0)
    extractor = Extractor(TINY).eval()
    gmm = OneClassDetector().fit(np.random.default_rng(0).normal(size=(40, TINY.feature_dim)))
    binary = BinaryModel(TINY).eval()
    bad = {"threshold": 0.3, "validation_images": 40, "real_acc": 1.0, "fake_acc": 0.05}
    path = save_bundle(tmp_path / "b", extractor, gmm, binary, max_patches=8, binary_threshold=0.3,
                       binary_validation=bad, extra={"oneclass_validation": {"real_acc": 0.9, "fake_acc": 0.8}})
    det = Detector.from_bundle(path)
    assert det.binary_threshold == 0.3
    assert len(det.warnings) == 1 and "binary detector" in det.warnings[0] and "fake accuracy 0.05" in det.warnings[0]
    assert main(["detect", str(demo_camera_paths[0]), "--bundle", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["bundle"]["path"] == str(path) and report["bundle"]["binary_threshold"] == 0.3
    assert "training_manifest_sha256" in report["bundle"] and report["bundle"]["warnings"] == det.warnings
    assert "warning: the binary detector" in captured.err
    assert guard_rails({}) == ["this bundle records no validation accuracy: nothing shows its verdicts are informative"]
    good = {"binary_validation": {"real_acc": 0.8, "fake_acc": 0.9}}
    assert guard_rails(good) == []


def test_the_reference_bundle_is_the_default_and_the_demo_one_is_opt_in(tmp_path):
    from exifkit.bundle import default_bundle

    assert default_bundle(tmp_path) == tmp_path / "results" / "demo" / "bundle"
    (tmp_path / "results" / "extended" / "bundle").mkdir(parents=True)
    (tmp_path / "results" / "extended" / "bundle" / "bundle.json").write_text("{}")
    assert default_bundle(tmp_path) == tmp_path / "results" / "extended" / "bundle"


def _reals_folder(tmp_path, demo_store, n=60):
    folder = tmp_path / "my_reals"
    folder.mkdir()
    for e in [e for e in demo_store.manifest if e.kind == "camera"][:n]:
        shutil.copy(demo_store.path(e), folder / demo_store.path(e).name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_bundle_refit_on_the_users_reals_reports_the_heldout_false_positive_rate(bundle, tmp_path, demo_store, capsys):
    path, _, _ = bundle
    reals = _reals_folder(tmp_path, demo_store)
    new = tmp_path / "refit"
    assert main(["bundle", "refit", "--reals", str(reals), "--from", str(path), "--out", str(new), "--quiet"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["reals"] == 60 and report["unreadable"] == 1 and "notes.txt" in captured.err
    assert report["held_out_for_threshold"] == 12 and 0 <= report["held_out_false_positive_rate"] <= 0.2
    det = Detector.from_bundle(new)
    assert det.oneclass.method == "small_sample" and det.meta["refit"]["reals_sha256"] == report["reals_sha256"]
    assert det.binary is not None and det.warnings == []  # binary kept, one-class validated on held-out reals
    assert main(["bundle", "refit", "--reals", str(tmp_path / "nowhere"), "--from", str(path),
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2


def test_bundle_from_the_authors_checkpoints(tmp_path, demo_store, capsys):
    from tests.model.reference_net import synthetic_official_state
    from tests.model.test_official import _pretext_checkpoint

    _pretext_checkpoint(tmp_path / "pretrained.pth", synthetic_official_state())
    frozen, trained = synthetic_official_state(1), synthetic_official_state(2)
    blob = {f"diffusionextractor_pretrained.{k}": v for k, v in frozen.items()}
    blob |= {f"diffusionextractor_random.{k}": v for k, v in trained.items()}
    blob |= {"fc.weight": torch.randn(2, 528), "fc.bias": torch.randn(2)}
    torch.save({"state_net": blob}, tmp_path / "bc.pth")
    reals = _reals_folder(tmp_path, demo_store)
    out = tmp_path / "official_bundle"
    assert main(["bundle", "from-official", "--backbone", str(tmp_path / "pretrained.pth"), "--binary",
                 str(tmp_path / "bc.pth"), "--reals", str(reals), "--out", str(out), "--max-patches", "4",
                 "--quiet"]) == 0
    capsys.readouterr()
    det = Detector.from_bundle(out)
    assert det.meta["official"]["backbone_sha256"] and det.binary is not None
    score = det.score(demo_store.path(next(e for e in demo_store.manifest if e.kind == "camera")))
    assert 0 <= score.p_fake <= 1 and score.patches == 4
    only = tmp_path / "oneclass_only"
    assert main(["bundle", "from-official", "--backbone", str(tmp_path / "pretrained.pth"), "--reals", str(reals),
                 "--out", str(only), "--max-patches", "4", "--quiet"]) == 0
    det = Detector.from_bundle(only)
    assert det.binary is None and det.score(reals / sorted(p.name for p in reals.glob("*.jpg"))[0]).binary_verdict == "n/a"
    assert main(["bundle", "from-official", "--backbone", str(tmp_path / "bc.pth"), "--reals", str(reals),
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "--backbone takes the pretext one" in capsys.readouterr().err


def test_a_bundle_ships_its_training_files_and_the_ablation(tmp_path):
    from exifkit.bundle import TRAINING_FILES
    from exifkit.pipeline import choose_extractor

    torch.manual_seed(0)
    extractor = Extractor(TINY).eval()
    gmm = OneClassDetector(method="small_sample").fit(np.random.default_rng(0).normal(size=(60, TINY.feature_dim)))
    main_model, ablation = BinaryModel(TINY).eval(), BinaryModel(TINY).eval()
    path = save_bundle(tmp_path / "b", extractor, gmm, main_model, max_patches=8, profile="extended",
                       binary_alpha=0.05, ablation=(ablation, {"threshold": 0.3}), trained_on={"ab" * 32, "cd" * 32},
                       binary_validation={"threshold": 0.4})
    shipped = Detector.from_bundle(path).shipped_binaries()
    assert list(shipped) == ["alpha=0.05", "alpha=0"]
    assert shipped["alpha=0.05"][1]["threshold"] == 0.4 and shipped["alpha=0"][1]["threshold"] == 0.3
    x = torch.randn(1, 2, 3, 16, 16)
    torch.testing.assert_close(shipped["alpha=0"][0].fake_probability(x), ablation.fake_probability(x))
    choice = choose_extractor(path, tmp_path, profile="demo")
    assert choice.trained_on == {"ab" * 32, "cd" * 32} and not choice.trains_binary("demo")
    assert choose_extractor(path, tmp_path, profile="extended").trains_binary("extended")
    (path / TRAINING_FILES).write_text("ef" * 32 + "\n")  # a list that does not match its hash is refused
    with pytest.raises(BundleError, match="hash"):
        choose_extractor(path, tmp_path, profile="demo")


def test_a_bundle_from_another_profile_must_list_its_training_files(bundle, tmp_path):
    from exifkit.pipeline import choose_extractor

    path = bundle[0]
    with pytest.raises(BundleError, match="training files"):
        choose_extractor(path, tmp_path, profile="demo")
    assert choose_extractor(path, tmp_path, profile="test").trained_on == frozenset()


def test_a_binary_file_with_missing_weights_is_refused(bundle):
    path = bundle[0]
    state = torch.load(path / "binary.pt", weights_only=True)
    state.pop("classifier.weight")
    torch.save(state, path / "binary.pt")
    meta = json.loads((path / "bundle.json").read_text())
    from exifkit.data.manifest import sha256_file

    meta["files"]["binary.pt"] = sha256_file(path / "binary.pt")
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="classifier.weight"):
        Detector.from_bundle(path)


def _image(path, seed=0):
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_detect_names_every_path_it_cannot_score_and_scores_the_rest(bundle, tmp_path, capsys):
    import os

    path, _, _ = bundle
    folder = tmp_path / "photos"
    (folder / "empty_sub").mkdir(parents=True)  # nothing in it, so nothing to name
    _image(folder / "good.jpg")
    (folder / ".thumb.jpg").write_bytes(b"x")
    os.symlink("nowhere.jpg", folder / "dangling.jpg")
    os.symlink("loop_b", folder / "loop_a")
    os.symlink("loop_a", folder / "loop_b")
    (tmp_path / "x.jpg").mkdir()
    args = [str(folder), str(tmp_path / "x.jpg"), str(tmp_path / ("n" * 300 + ".jpg")), str(tmp_path / "gone.jpg")]
    assert main(["detect", *args, "--bundle", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [r["path"] for r in report["results"]] == [str(folder / "good.jpg")]
    assert {e["cause"] for e in report["errors"]} == {
        "symbolic link to nothing", "symbolic link loop", "folder holds no files", "path too long for the file system",
        "file not found"}
    assert len(report["errors"]) == 6
    for name in ("dangling.jpg", "loop_a", "loop_b", "x.jpg", "nnnn", "gone.jpg"):
        assert name in captured.err
    assert "1 hidden entry skipped" in captured.err


def test_detect_on_nothing_to_score_says_so_and_fails(bundle, tmp_path, capsys):
    path, _, _ = bundle
    (tmp_path / "empty").mkdir()
    assert main(["detect", str(tmp_path / "empty"), "--bundle", str(path)]) == 1
    assert "empty: folder holds no files" in capsys.readouterr().err


def test_results_stream_as_they_are_scored_with_a_progress_bar_on_a_terminal(bundle, tmp_path, capsys, monkeypatch):
    import sys

    path, _, _ = bundle
    (tmp_path / "in").mkdir()
    for i in range(3):
        _image(tmp_path / "in" / f"{i}.jpg", seed=i)
    printed_before = []
    score = Detector.score

    def watching(self, image, name=""):
        printed_before.append(capsys.readouterr().out.count("P(fake)"))
        return score(self, image, name)

    monkeypatch.setattr(Detector, "score", watching)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["detect", str(tmp_path / "in"), "--bundle", str(path)]) == 0
    assert printed_before == [0, 1, 1]  # each result was out before the next image was scored
    assert "image" in capsys.readouterr().err  # tqdm's bar: "3/3 [..., image/s]"


def test_a_file_name_the_terminal_cannot_encode_is_escaped_not_fatal(bundle, tmp_path):
    import os
    import subprocess
    import sys

    path, _, _ = bundle
    folder = tmp_path / "names"
    folder.mkdir()
    _image(folder / "good.jpg")
    _image(os.path.join(os.fsencode(folder), b"bad\xff.jpg"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONWARNINGS": "default"}
    run = subprocess.run([sys.executable, "-m", "exifkit.cli", "detect", str(folder), "--bundle", str(path), "--csv"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "bad\\udcff.jpg" in run.stdout and "good.jpg" in run.stdout
    leaks = [line for line in run.stderr.splitlines() if not line.startswith("exifkit detect: ")]
    assert leaks == []  # no warning leaks: not Pillow's, not PyTorch's


def test_bugs_keep_their_traceback_user_errors_do_not(bundle, tmp_path, capsys, monkeypatch):
    path, _, _ = bundle
    _image(tmp_path / "a.jpg")
    assert main(["detect", str(tmp_path), "--bundle", str(tmp_path / "no_bundle")]) == 2
    assert capsys.readouterr().err.startswith("exifkit detect: ")
    with pytest.raises(BundleError):
        main(["--debug", "detect", str(tmp_path), "--bundle", str(tmp_path / "no_bundle")])

    def broken(self, image, name=""):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(Detector, "score", broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(["detect", str(tmp_path), "--bundle", str(path)])


@pytest.mark.parametrize("text, says", [
    ("{\n", "bundle.json: not valid JSON"),
    ('{"format": 1}', "bundle.json: incomplete, no files, extractor, max_patches"),
    ("[1, 2]", "bundle.json: bundle format list is not 1"),
])
def test_a_broken_bundle_description_is_named(bundle, text, says):
    path, _, _ = bundle
    (path / "bundle.json").write_text(text)
    with pytest.raises(BundleError, match=says):
        Detector.from_bundle(path)
