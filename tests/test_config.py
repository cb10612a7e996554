from __future__ import annotations

import pytest

from exifkit.config import available_profiles, find_root, load_profile


def test_every_profile_loads_and_names_an_existing_manifest(root):
    assert set(available_profiles()) >= {"demo", "extended", "paper"}
    for name in available_profiles():
        p = load_profile(name, root=root)
        assert p.name == name and p.manifest_path().is_file()
        assert p.results_dir() == root / "results" / name


def test_unknown_profile_and_unknown_keys_are_refused(tmp_path, root):
    with pytest.raises(ValueError, match="unknown profile 'nope'; available: demo"):
        load_profile("nope", root=root)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nmanifest = "demo.csv"\nseeed = 3\n')
    with pytest.raises(ValueError, match="unknown key.*seeed"):
        load_profile(bad, root=root)


def test_root_is_found_from_a_subfolder_and_from_the_environment(root, tmp_path, monkeypatch):
    assert find_root(root / "notebooks") == root
    monkeypatch.setenv("EXIFKIT_ROOT", str(tmp_path))
    assert find_root() == tmp_path


def test_every_profile_builds_its_typed_configurations(root):
    for name in available_profiles():
        p = load_profile(name, root=root)
        p.pretext_config(), p.binary_config(), p.oneclass_detector()
        small = p.oneclass_detector(method="small_sample")
        assert small.method == "small_sample" and p.oneclass_detector(method="gmm").method == "gmm"
    extended = load_profile("extended", root=root)
    assert extended.oneclass_detector().method == "small_sample"
    assert extended.oneclass_detector(method="small_sample").threshold_percentile == 5.0
    assert extended.oneclass_detector(method="gmm").threshold_percentile == 2.0  # the authors'
    aligned = extended.binary_config().augment
    assert aligned.crop == 256 and aligned.jpeg_p == 1.0


def test_a_based_profile_is_its_base_with_its_own_tables_merged_on_top(root, tmp_path, monkeypatch):
    demo, tiny = load_profile("demo", root=root), load_profile("tiny", root=root)
    assert tiny.name == "tiny" and tiny.manifest == demo.manifest and tiny.description != demo.description
    assert tiny.pretext_config().steps == 30 and tiny.pretext_config().extractor == demo.pretext_config().extractor
    assert tiny.evaluation["seen_generators"] == demo.evaluation["seen_generators"]  # kept from the base
    assert tiny.evaluation["eval_max_patches"] < demo.evaluation["eval_max_patches"]  # its own
    assert tiny.oneclass_detector().threshold_percentile == demo.oneclass_detector().threshold_percentile
    assert tiny.study["scaling"]["sizes"] == demo.study["scaling"]["sizes"]
    monkeypatch.setattr("exifkit.config.PROFILE_DIR", tmp_path)
    (tmp_path / "a.toml").write_text('name = "a"\nbase = "b"\nmanifest = "demo.csv"\n')
    (tmp_path / "b.toml").write_text('name = "b"\nbase = "a"\nmanifest = "demo.csv"\n')
    with pytest.raises(ValueError, match="based on each other: a -> b -> a"):
        load_profile("a", root=root)
    (tmp_path / "c.toml").write_text('name = "c"\nbase = "nope"\nmanifest = "demo.csv"\n')
    with pytest.raises(ValueError, match="base profile 'nope' not found"):
        load_profile("c", root=root)
