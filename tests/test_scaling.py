from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from exifkit.config import data_store, load_profile
from exifkit.errors import SettingError
from exifkit.exif.read import read_many
from exifkit.pretext import load_photos
from exifkit.scaling import (LoadedPhotos, ScalingConfig, StudyPhotos, camera_model, evaluate_run, nested_fake_masks,
                             run_dir, study_photos, train_run)

TINY = {"patch_size": 16, "width": 4, "convs_per_stage": [1, 1, 1], "transformer_depth": 1, "heads": 2,
        "head_dim": 4, "mlp_dim": 8, "device": "cpu"}


@pytest.mark.parametrize("name", ["demo", "extended"])
def test_study_photos_are_disjoint_by_sha256_from_each_other_and_from_every_training_set(root, name):
    """Pool, validation, held-out and unseen-model photos never share a file; the held-out photos are the
    test suite's camera reals and nothing the pretext runs train or choose on is tested on."""
    profile = load_profile(name, root=root)
    store = data_store(profile)
    config = ScalingConfig.from_profile(profile)
    photos = study_photos(store.manifest, profile.pretext_config().holdout_fraction, profile.seed, config)
    roles = {role: {e.sha256 for e in entries} for role, entries in photos.roles().items()}
    for a in roles:
        for b in roles:
            assert a == b or not roles[a] & roles[b], (a, b)
    assert sum(map(len, roles.values())) == sum(e.kind == "camera" for e in store.manifest)
    splits = profile.splits(store.manifest)
    test = {s.entry.sha256 for s in splits.suite.samples()}
    assert roles["held-out"] <= test
    assert not (roles["pool"] | roles["validation"] | roles["unseen models"]) & test
    assert not {camera_model(e) for e in photos.unseen_models} & {camera_model(e) for e in photos.pool}
    assert config.sizes[-1] <= len(photos.pool)


def test_subsets_are_nested_prefixes_and_the_split_does_not_move_with_the_sizes(root):
    profile = load_profile("extended", root=root)
    manifest = data_store(profile).manifest
    config = ScalingConfig.from_profile(profile)
    a = study_photos(manifest, 0.2, 0, config)
    b = study_photos(manifest, 0.2, 0, dataclasses.replace(config, sizes=(10, 20)))
    assert [e.sha256 for e in a.pool] == [e.sha256 for e in b.pool]
    subsets = [{e.sha256 for e in a.subset(n)} for n in config.sizes]
    assert [len(s) for s in subsets] == list(config.sizes)
    assert all(small < large for small, large in zip(subsets, subsets[1:]))
    with pytest.raises(SettingError, match="pool holds"):
        a.subset(len(a.pool) + 1)


def test_nested_fake_masks_keep_every_real_and_grow_inside_each_other():
    from exifkit.data.manifest import Entry
    from exifkit.data.suites import Sample

    samples = [Sample(Entry(path=f"r{i}", sha256=f"r{i}"), 0, "camera") for i in range(5)]
    samples += [Sample(Entry(path=f"{g}{i}", sha256=f"{g}{i}"), 1, g) for g, n in (("gan", 16), ("sd", 3)) for i in range(n)]
    masks = nested_fake_masks(samples, (0.5, 0.125, 1.0, 0.25), seed=0)
    assert list(masks) == [0.125, 0.25, 0.5, 1.0]
    labels = np.array([s.label for s in samples])
    groups = np.array([s.group for s in samples])
    for small, large in zip(list(masks.values()), list(masks.values())[1:]):
        assert (large | ~small).all()  # every image kept at the smaller share is kept at the larger
    for f, m in masks.items():
        assert m[labels == 0].all()
        assert (m & (groups == "gan")).sum() == max(1, round(16 * f)) and (m & (groups == "sd")).sum() >= 1


def test_the_config_is_checked_and_early_stopping_shares_its_base_run(root):
    profile = load_profile("extended", root=root)
    config = ScalingConfig.from_profile(profile)
    assert config.training_key("early_stop") == "base" and config.keeps("early_stop") == "lowest_loss"
    assert config.training_key("weight_decay") == "weight_decay" and config.keeps("base") == "last"
    for bad, match in (({"sizes": [40, 20]}, "sizes must increase"), ({"bogus": 1}, "unknown"),
                       ({"recipe": "nope"}, "not one of the variants")):
        with pytest.raises(SettingError, match=match):
            ScalingConfig.from_profile(dataclasses.replace(profile, study={"scaling": bad}))
    with pytest.raises(SettingError, match=r"profile paper defines no \[study.scaling\]"):
        ScalingConfig.from_profile(load_profile("paper", root=root))


@pytest.fixture(scope="module")
def tiny_study(demo_camera_paths):
    paths = demo_camera_paths[:30]
    pool = load_photos(paths[:16], read_many(paths[:16]), max_side=64)
    vocab = pool.labels.vocabularies
    sets = {role: load_photos(p, read_many(p), max_side=64, vocabularies=vocab)
            for role, p in (("validation", paths[16:21]), ("held-out", paths[21:26]), ("unseen models", paths[26:30]))}
    return LoadedPhotos(pool, sets)


def test_a_finished_run_is_skipped_on_rerun_and_a_partial_one_resumes(root, tmp_path, tiny_study, monkeypatch):
    import exifkit.pretext as pretext

    profile = dataclasses.replace(load_profile("demo", root=root), pretext={**TINY, "n_patches": 2})
    config = ScalingConfig(sizes=(8, 16), seeds=(0,), monitor_every=2, monitor_pairs=3, monitor_patches=2,
                           pretext={"steps": 4, "batch_pairs": 2, "checkpoint_every": 2, "log_every": 1})
    assert len(tiny_study.subset(8)) == 8 and tiny_study.subset(8).labels.paths == tiny_study.pool.labels.paths[:8]
    real, calls = pretext.pretext_step, []

    def interrupted(*a, **k):  # stops during step 4, after the checkpoint at step 2
        calls.append(1)
        if len(calls) == 4:
            raise KeyError("interrupted")
        return real(*a, **k)

    monkeypatch.setattr(pretext, "pretext_step", interrupted)
    with pytest.raises(KeyError):
        train_run(profile, config, tiny_study, "base", 8, 0, tmp_path, progress=False)
    folder = run_dir(tmp_path, "base", 8, 0)
    assert not (folder / "done.json").exists()
    calls.clear()
    monkeypatch.setattr(pretext, "pretext_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    train_run(profile, config, tiny_study, "base", 8, 0, tmp_path, progress=False)
    assert len(calls) == 2 and (folder / "done.json").exists()  # steps 3-4 only
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    monkeypatch.setattr(pretext, "train_pretext", lambda *a, **k: pytest.fail("a finished run was retrained"))
    train_run(profile, config, tiny_study, "base", 8, 0, tmp_path, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before

    class NoEvaluator:
        def outputs(self, model):
            pytest.fail("a scored run was scored again")

    (folder / "evaluation.csv").write_text("metric,value\nx,0.5\n")
    assert evaluate_run(NoEvaluator(), folder, None, None, None, {})["value"].tolist() == [0.5]


def test_a_larger_budget_continues_finished_runs_and_a_smaller_one_is_refused(root, tmp_path, tiny_study):
    from exifkit.train import load_checkpoint

    profile = dataclasses.replace(load_profile("demo", root=root), pretext={**TINY, "n_patches": 2})
    config = ScalingConfig(sizes=(8,), seeds=(0,), monitor_every=2, monitor_pairs=3, monitor_patches=2,
                           pretext={"steps": 2, "batch_pairs": 2, "checkpoint_every": 2, "log_every": 1})
    folder = train_run(profile, config, tiny_study, "base", 8, 0, tmp_path, progress=False)
    (folder / "evaluation.csv").write_text("metric,value\nx,0.5\n")
    longer = dataclasses.replace(config, pretext={**config.pretext, "steps": 4})
    train_run(profile, longer, tiny_study, "base", 8, 0, tmp_path, progress=False)
    assert load_checkpoint(folder / "last.pt")["segments"] == [[0, 2], [2, 4]]
    assert not (folder / "evaluation.csv").exists()  # scored again at the new budget
    with pytest.raises(SettingError, match="more than the study's 2"):
        train_run(profile, config, tiny_study, "base", 8, 0, tmp_path, progress=False)
