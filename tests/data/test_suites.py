import pytest

from exifkit.config import load_profile


@pytest.fixture(scope="module")
def splits(demo_store, root):
    return load_profile("demo", root=root).splits(demo_store.manifest)


def test_training_sets_are_disjoint_from_every_test_image(splits):
    test = {s.entry.sha256 for s in splits.suite.samples()}
    assert not test & {s.entry.sha256 for s in splits.oneclass_train}
    assert not test & {s.entry.sha256 for s in splits.binary_train}
    assert all(s.label == 0 for s in splits.oneclass_train)


def test_pretext_photos_never_appear_in_the_test_suite(splits, demo_store, root):
    from exifkit.data.suites import camera_entries, split_indices

    profile = load_profile("demo", root=root)
    cams = camera_entries(demo_store.manifest)
    train_idx, _ = split_indices(len(cams), profile.pretext_config().holdout_fraction, profile.seed)
    pretext = {cams[i].sha256 for i in train_idx}
    assert not pretext & {s.entry.sha256 for s in splits.suite.samples()}


def test_views_crop_the_label_border_and_split_grids(splits, demo_store):
    from exifkit.data.suites import load_sample

    cnn = next(p for p in splits.suite.pairs if p.generator == "biggan")
    assert load_sample(cnn.fakes[0], demo_store).shape == (248, 248, 3)
    grid = next(p for p in splits.suite.pairs if p.generator == "sd15_artist_grids_webp")
    assert len(grid.fakes) == 4 * len({s.entry.path for s in grid.fakes})
    assert {load_sample(s, demo_store).shape for s in grid.fakes[:4]} == {(512, 512, 3)}


def test_seen_and_unseen_generators_are_marked(splits):
    seen = {p.generator for p in splits.suite.pairs if p.seen_in_training}
    assert seen == set(splits.seen_generators) and len(seen) < len(splits.suite.pairs)
    trained_fakes = {s.group for s in splits.binary_train if s.label == 1}
    assert trained_fakes == seen


def test_overlap_is_refused(splits):
    from dataclasses import replace

    bad = replace(splits, oneclass_train=splits.oneclass_train + [splits.suite.pairs[0].reals[0]])
    with pytest.raises(ValueError, match="one-class training overlaps the test suite"):
        bad.check_disjoint()


def test_official_inputs_from_the_papers_archives(tmp_path, demo_camera_paths):
    import zipfile

    from exifkit.data.manifest import DataStore, Entry, Manifest
    from exifkit.data.suites import load_sample, official_inputs

    mirror = tmp_path / "mirror" / "sdaie"
    mirror.mkdir(parents=True)
    img = demo_camera_paths[0].read_bytes()
    with zipfile.ZipFile(mirror / "test_sets.zip", "w") as zf:  # nested one level, as archives often are
        for gen in ("progan", "Midjourney"):
            for cls in ("0_real", "1_fake"):
                for i in range(2):
                    zf.writestr(f"test/{gen}/{cls}/{i}.jpg", img)
    with zipfile.ZipFile(mirror / "oneclass_real_train.zip", "w") as zf:
        for i in range(3):
            zf.writestr(f"imagenet/{i}.jpg", img)
    manifest = Manifest("paper", [Entry(path="sdaie/test_sets.zip", kind="archive"),
                                  Entry(path="sdaie/oneclass_real_train.zip", kind="archive")])
    store = DataStore(manifest, mirrors=[tmp_path / "mirror"], cache_dir=tmp_path / "cache")
    suite, suite_store, reals, reals_store = official_inputs(store, tmp_path / "extracted")
    assert [p.generator for p in suite.pairs] == ["Midjourney", "progan"]
    assert [p.seen_in_training for p in suite.pairs] == [False, True]
    assert all(len(p.reals) == len(p.fakes) == 2 for p in suite.pairs) and len(reals) == 3
    assert load_sample(suite.pairs[0].fakes[0], suite_store).shape[2] == 3
    assert load_sample(reals[0], reals_store).ndim == 3
    again = official_inputs(store, tmp_path / "extracted")  # already extracted: reused
    assert len(again[0].samples()) == len(suite.samples())


def test_seen_generated_collections_split_by_file_and_cameras_join_training(demo_store, root):
    from exifkit.data.suites import camera_entries, profile_splits

    cams = camera_entries(demo_store.manifest)
    base = profile_splits(demo_store.manifest, ["biggan"], 0.2, 0)
    more = profile_splits(demo_store.manifest, ["biggan", "sd15_artist_grids_webp"], 0.2, 0, train_on_cameras=True)
    grid_train = [s for s in more.binary_train if s.group == "sd15_artist_grids_webp"]
    grid_test = next(p for p in more.suite.pairs if p.generator == "sd15_artist_grids_webp")
    assert grid_train and grid_test.seen_in_training and len(grid_train) % 4 == 0
    assert not {s.entry.sha256 for s in grid_train} & {s.entry.sha256 for s in grid_test.fakes}
    base_grid = next(p for p in base.suite.pairs if p.generator == "sd15_artist_grids_webp")
    assert len(grid_train) + len(grid_test.fakes) == len(base_grid.fakes)
    camera_reals = [s for s in more.oneclass_train if s.group == "camera (pretext side)"]
    assert len(camera_reals) == len(cams) - round(0.2 * len(cams))
    assert {s.entry.sha256 for s in camera_reals} <= {s.entry.sha256 for s in more.binary_train}
    more.check_disjoint()


def test_excluding_drops_those_files_from_the_tests_only(splits):
    some_fakes = {s.entry.sha256 for s in splits.suite.pairs[0].fakes[:3]}
    every_real = {s.entry.sha256 for s in splits.suite.pairs[1].reals}
    out = splits.excluding(some_fakes | every_real)
    kept = {s.entry.sha256 for s in out.suite.samples()}
    assert not kept & (some_fakes | every_real)
    dropped_pair = {s.entry.sha256 for s in splits.suite.pairs[1].fakes}
    assert kept == {s.entry.sha256 for s in splits.suite.samples()} - some_fakes - every_real - dropped_pair
    assert splits.suite.pairs[1].generator not in {p.generator for p in out.suite.pairs}  # no reals left
    assert out.oneclass_train == splits.oneclass_train and out.binary_train == splits.binary_train


def test_training_files_cover_pretext_photos_and_both_training_sets(splits):
    hashes = splits.training_sha256()
    assert {e.sha256 for e in splits.pretext_photos} <= hashes
    assert {s.entry.sha256 for s in splits.oneclass_train + splits.binary_train} <= hashes
    assert not hashes & {s.entry.sha256 for s in splits.suite.samples()}


def test_with_seen_remarks_the_pairs_for_another_models_generators(splits):
    out = splits.with_seen(["crn", "sentry_mpbench"])
    assert {p.generator for p in out.suite.pairs if p.seen_in_training} == {"crn", "sentry_mpbench"}
    assert [len(p.fakes) for p in out.suite.pairs] == [len(p.fakes) for p in splits.suite.pairs]
