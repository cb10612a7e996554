"""The stages between trained runs and the evaluation, on the demo profile's own small network: what
notebooks 03 and 04 do with ``extractor = "pretext"`` (the notebook run itself uses the reference
bundle), here called directly with a short budget."""

from __future__ import annotations

import pytest

from exifkit.binary import load_binary_runs, train_binary_runs
from exifkit.config import load_profile
from exifkit.errors import MissingInputError
from exifkit.exif.read import read_many
from exifkit.oneclass import evaluate_and_save
from exifkit.perturb import load_protocols
from exifkit.pipeline import evaluation_inputs
from exifkit.pretext import run_pretext


@pytest.mark.slow
def test_an_own_pretext_network_is_tested_on_the_whole_suite_and_trains_both_binary_runs(root, demo_store,
                                                                                          tmp_path):
    profile = load_profile("demo", root=root)
    with pytest.raises(MissingInputError, match="no pretext weights"):
        evaluation_inputs(profile, demo_store, tmp_path, "pretext")
    paths = [demo_store.path(e) for e in demo_store.manifest if e.kind == "camera"]
    run_pretext(paths, read_many(paths), profile.pretext_config(steps=10, checkpoint_every=10), tmp_path / "pretext",
                profile.label_config(), progress=False)

    choice, splits = evaluation_inputs(profile, demo_store, tmp_path, "pretext", mark_seen=False)
    whole = profile.splits(demo_store.manifest)
    assert choice.source == "pretext" and choice.trains_binary("demo")
    assert len(splits.suite.samples()) == len(whole.suite.samples())  # nothing left out: it trained on no test image
    shipped = {"small_sample": profile.oneclass_settings()["small_sample"]}
    runs = evaluate_and_save(choice.extractor, splits, demo_store, tmp_path, shipped, "pretext",
                             protocols={"raw": None}, max_patches=4, progress=False)
    table = runs["raw", "small_sample"].table.set_index("generator")
    assert len(table) == 13 + 1 and table.loc["sd15_artist_grids_webp", "fakes"] == 200
    assert (tmp_path / "tables" / "oneclass_pretext_small_sample_raw.csv").is_file()
    aligned = load_protocols()["aligned_jpeg95"]

    config = profile.binary_config(steps=6, checkpoint_every=3, batch_images=4, eval_max_patches=4)
    trained = train_binary_runs(config, choice.extractor, splits, demo_store, tmp_path, protocol=aligned)
    assert list(trained.models) == ["alpha=0.05", "alpha=0"]
    for run in trained.models:
        folder = tmp_path / "binary" / run
        assert (folder / "best.pt").is_file() and (folder / "threshold.json").is_file()
        assert [line.split(",")[0] for line in (folder / "validation.csv").read_text().splitlines()[1:]] == ["3", "6"]
        assert trained.thresholds[run]["validation_images"] > 10
    again = load_binary_runs(tmp_path, config.alpha, choice.extractor.config)  # what the robustness stage and the bundle read
    assert again.thresholds == trained.thresholds and list(again.logs) == list(trained.models)
