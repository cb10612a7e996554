from __future__ import annotations

import json

import pytest

from exifkit.cli import main


def test_verify_demo_passes(capsys):
    assert main(["data", "verify", "demo", "--quiet"]) == 0
    assert "0 missing, 0 corrupt" in capsys.readouterr().out


def test_verify_names_every_missing_file_and_fails(capsys, tmp_path):
    assert main(["data", "verify", "paper", "--quiet", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISSING    sdaie/checkpoints/backbone/pretrained.pth" in out
    assert "MISSING    cnndetection/progan_testset.zip" in out


def test_paper_files_without_hash_are_reported_unverified(capsys, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "sdaie" / "checkpoints" / "bc").mkdir(parents=True)
    (mirror / "sdaie" / "checkpoints" / "bc" / "pretrained.pth").write_bytes(b"weights")
    main(["data", "verify", "paper", "--quiet", "--cache", str(tmp_path), "--mirror", str(mirror)])
    out = capsys.readouterr().out
    assert "1 present without a known hash" in out and "UNVERIFIED sdaie/checkpoints/bc/pretrained.pth" in out


def test_exif_show_prints_targets_and_flags_files_without_exif(capsys, demo_camera_paths, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert main(["exif", "show", str(demo_camera_paths[0])]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["Make"] and "FocalLength" in shown
    assert main(["exif", "show", str(tmp_path / "plain.png")]) == 1
    assert "plain.png: no EXIF" in capsys.readouterr().err


def test_exif_card_for_a_folder(tmp_path, demo_camera_paths, capsys):
    import shutil

    for p in demo_camera_paths[:10]:
        shutil.copy(p, tmp_path / p.name)
    assert main(["exif", "card", str(tmp_path), "--out", str(tmp_path / "card")]) == 0
    card = json.loads((tmp_path / "card" / "exif_card.json").read_text())
    assert card["images"] == 10 and len(card["tags"]) == 14


@pytest.mark.slow
def test_extended_verifies_and_fetches_from_the_shared_mirror(capsys, tmp_path, shared):
    assert main(["data", "verify", "extended", "--quiet", "--mirror", str(shared)]) == 0
    assert main(["data", "fetch", "extended", "--quiet", "--mirror", str(shared), "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1624 verified" in out and "0 missing, 0 corrupt" in out
    assert not any(tmp_path.rglob("*.*"))  # everything came from the mirror, nothing was downloaded


@pytest.mark.slow
def test_binary_train_command_trains_against_a_pretext_run(tmp_path, capsys):
    pre, run = tmp_path / "pretext", tmp_path / "binary"
    assert main(["binary", "train", "--profile", "demo", "--pretext", str(pre), "--out", str(run)]) == 2
    assert "no pretext weights" in capsys.readouterr().err
    assert main(["pretext", "train", "--profile", "demo", "--steps", "1", "--out", str(pre), "--quiet"]) == 0
    assert main(["binary", "train", "--profile", "demo", "--steps", "2", "--alpha", "0", "--seed", "3",
                 "--pretext", str(pre), "--out", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "kept for validation" in out and (run / "last.pt").is_file()
    from exifkit.train import load_checkpoint

    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 2 and state["config"]["alpha"] == 0 and state["precision_used"] in ("bf16", "fp32")
    assert state["config"]["seed"] == 3


def test_another_seeds_binary_run_goes_beside_the_profiles_own(tmp_path):
    from exifkit.pipeline import binary_run_folder
    from exifkit.config import load_profile

    profile = load_profile("demo")
    own = binary_run_folder(tmp_path, profile.binary_config(alpha=0.05), profile)
    other = binary_run_folder(tmp_path, profile.binary_config(alpha=0.05, seed=profile.seed + 1), profile)
    assert own == tmp_path / "binary" / "alpha=0.05"  # where notebooks 04-05 read it
    assert other == tmp_path / "binary" / f"alpha=0.05,seed={profile.seed + 1}"


def test_exif_card_refuses_what_is_not_a_folder_of_images(tmp_path, demo_camera_paths, capsys):
    import shutil

    assert main(["exif", "card", str(tmp_path / "nowhere"), "--out", str(tmp_path / "card")]) == 2
    assert "nowhere: not a profile" in capsys.readouterr().err and not (tmp_path / "card").exists()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not an image")
    (tmp_path / "docs" / "fake.jpg").write_bytes(b"not a jpeg either")
    assert main(["exif", "card", str(tmp_path / "docs"), "--out", str(tmp_path / "card")]) == 2
    err = capsys.readouterr().err
    assert "notes.txt: not an image" in err and "fake.jpg: not an image" in err and "no image files" in err
    shutil.copy(demo_camera_paths[0], tmp_path / "docs" / "photo.jpg")
    assert main(["exif", "card", str(tmp_path / "docs"), "--out", str(tmp_path / "card")]) == 0
    assert json.loads((tmp_path / "card" / "exif_card.json").read_text())["images"] == 1
    assert "skipped" in capsys.readouterr().err


def test_exif_show_tells_a_missing_or_unreadable_file_from_one_without_exif(tmp_path, capsys):
    (tmp_path / "folder.jpg").mkdir()
    assert main(["exif", "show", str(tmp_path / "gone.jpg"), str(tmp_path / "folder.jpg")]) == 1
    err = capsys.readouterr().err
    assert "gone.jpg: file not found" in err and "folder.jpg: not a regular file (a folder)" in err
    assert "no EXIF" not in err


def test_data_pack_names_what_it_cannot_pack_and_streams_into_training(tmp_path, demo_camera_paths, capsys):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in demo_camera_paths[:6]:
        shutil.copy(p, photos / p.name)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert main(["data", "pack", str(photos), "--out", str(tmp_path / "shards"), "--workers", "1", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "6 samples in 1 shards" in captured.out and "broken.jpg" in captured.err
    assert main(["pretext", "train", "--profile", "demo", "--data", str(tmp_path / "shards"), "--steps", "2",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "streamed from" in capsys.readouterr().out and (tmp_path / "run" / "last.pt").is_file()


def test_the_paper_profile_refuses_to_train_from_memory(capsys, tmp_path):
    assert main(["pretext", "train", "--profile", "paper", "--out", str(tmp_path)]) == 2
    assert "trains from packed shards" in capsys.readouterr().err
    assert main(["binary", "train", "--profile", "paper", "--out", str(tmp_path)]) == 2
    assert "packed real/fake set" in capsys.readouterr().err
    from exifkit.config import load_profile
    from exifkit.errors import SettingError
    from exifkit.pretext import PhotoSet, train_pretext

    with pytest.raises(SettingError, match="packed collection"):
        train_pretext(load_profile("paper").pretext_config(), PhotoSet([], [], None), tmp_path)


def test_study_scaling_names_a_profile_without_a_study_in_one_line(capsys, tmp_path):
    assert main(["study", "scaling", "--profile", "paper", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "exifkit study scaling: profile paper defines no [study.scaling] table (see the extended profile's)"


def test_data_pack_onto_a_file_is_one_line_naming_it(tmp_path, demo_camera_paths, capsys):
    import shutil

    (tmp_path / "photos").mkdir()
    shutil.copy(demo_camera_paths[0], tmp_path / "photos")
    (tmp_path / "file").write_text("x")
    assert main(["data", "pack", str(tmp_path / "photos"), "--out", str(tmp_path / "file" / "sub"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "file/sub: cannot create the output folder (Not a directory)" in err and "Traceback" not in err
