"""The report tables on inputs small enough to check by hand."""

from __future__ import annotations

import pandas as pd

from exifkit.report import counts_table, pair_balance_frame, sample_per_group, save_table, side_by_side, with_reported


def test_counts_table_counts_files_and_mebibytes_per_group_reals_first():
    frame = pd.DataFrame({"path": ["a", "b", "c", "d"], "bytes": [2**20, 2**20, 3 * 2**19, 10],
                          "source": ["s", "s", "t", "t"], "label": ["fake", "fake", "real", "fake"],
                          "generator": ["g", "g", None, "h"], "license": ["x"] * 4})
    table = counts_table(frame)
    assert table[["source", "label", "generator", "files", "mib"]].values.tolist() == [
        ["t", "real", "", 1, 1.5], ["s", "fake", "g", 2, 2.0], ["t", "fake", "h", 1, 0.0]]


def test_sample_per_group_takes_at_most_k_of_each_group_in_group_order():
    frame = pd.DataFrame({"g": list("bbbaac"), "i": range(6)})
    picked = sample_per_group(frame, "g", 2, seed=0)
    assert picked["g"].tolist() == ["a", "a", "b", "b", "c"]
    assert set(picked["i"]) <= set(range(6)) and picked["i"].is_unique
    assert picked.equals(sample_per_group(frame, "g", 2, seed=0))


def test_side_by_side_puts_each_runs_values_and_intervals_next_to_each_other():
    base = {"generator": ["a", "mean"], "seen": [True, ""], "reals": [3, 3], "fakes": [4, 4]}
    one = pd.DataFrame({**base, "acc": [0.5, 0.5], "acc 95% CI": ["[0.1, 0.9]", "[0.2, 0.8]"]})
    two = pd.DataFrame({**base, "acc": [0.75, 0.75]})
    table = side_by_side({"pretext": one, "random": two}, columns=("acc",))
    assert list(table.columns) == ["generator", "seen", "reals", "fakes", "acc (pretext)", "acc (pretext) 95% CI",
                                   "acc (random)"]
    assert table["acc (random)"].tolist() == [0.75, 0.75] and table["acc (pretext) 95% CI"][0] == "[0.1, 0.9]"


def test_with_reported_matches_benchmark_detector_metric_and_generator_and_rescales_percent():
    table = pd.DataFrame({"generator": ["biggan", "crn", "mean"], "ap": [0.8, 0.7, 0.75]})
    reported = pd.DataFrame({"benchmark": ["cnnspot", "cnnspot", "cnnspot", "other"],
                             "detector": ["SDAIE", "SDAIE", "SDAIE-OC", "SDAIE"],
                             "metric": ["ap", "acc", "ap", "ap"], "generator": ["biggan", "crn", "crn", "crn"],
                             "value": [91.5, 80.0, 70.0, 60.0]})
    out = with_reported(table, reported, "cnnspot", "SDAIE", "ap", "ap")
    assert list(out.columns) == ["generator", "ap", "ap reported"]
    assert out["ap reported"].iloc[0] == 0.915 and out["ap reported"].iloc[1:].isna().all()


def test_pair_balance_rows_are_the_ranked_tags_of_a_card():
    card = {"tags": [{"name": "Make", "kind": "categorical"},
                     {"name": "FocalLength", "kind": "ranked", "coverage": 0.9, "informative_pair_share": 0.6,
                      "pair_labels": {"tie_share": 0.3, "label1_share": 0.65}}]}
    assert pair_balance_frame(card).to_dict("records") == [
        {"tag": "FocalLength", "coverage": 0.9, "informative pairs": 0.6, "tie share (both present)": 0.3,
         "label 1 share (ties = 1)": 0.65}]


def test_save_table_writes_the_same_numbers_as_csv_markdown_and_latex(tmp_path):
    frame = pd.DataFrame({"generator": ["a"], "auc": [0.8125]})
    csv_path, md_path, tex_path = save_table(frame, tmp_path / "t", "x")
    assert pd.read_csv(csv_path).equals(frame)
    assert "0.8125" in md_path.read_text() and "0.812" in tex_path.read_text() and "\\begin{tabular}" in tex_path.read_text()


def test_a_figure_of_photos_is_shown_as_a_closed_jpeg():
    import matplotlib.pyplot as plt
    import numpy as np

    from exifkit.report import as_jpeg

    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8))
    shown = as_jpeg(fig)
    assert shown.format == "jpeg" and shown.data[:3] == b"\xff\xd8\xff"
    assert not plt.fignum_exists(fig.number)
