"""The papermill runner: notebooks in order, provenance, and a failure that names notebook and cell."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from exifkit.cli import main
from exifkit.config import load_profile
from exifkit.runner import NotebookFailed, run_notebooks


@pytest.mark.slow
def test_demo_notebooks_run_end_to_end(root, tmp_path):
    out = tmp_path / "results"
    # notebooks 02 and 04 train on a shortened budget here; `make reproduce` runs the profile's
    result = run_notebooks(load_profile("demo", root=root), output_dir=out, progress=False,
                           parameters={"steps": 30})
    assert [r.status for r in result.records] == ["ok"] * 7
    card = json.loads((out / "exif_card.json").read_text())
    assert card["dataset"] == "demo" and len(card["tags"]) == 14
    for fig in ("contact_sheet", "tag_coverage", "categorical_tags", "ranked_tags", "pair_balance",
                "srm_residuals", "scrambled_patches", "pretext_training_curve", "oneclass_histograms",
                "oneclass_roc", "binary_training", "binary_roc", "robustness_curves", "format_alignment_binary"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000
    heldout = (out / "tables" / "pretext_heldout.csv").read_text().splitlines()
    assert len(heldout) == 15 and heldout[0].startswith("tag,kind,metric")
    assert (out / "pretext" / "pretext_official_format.pth").is_file()
    tables = ["oneclass_ablation", "binary_ablation"]
    tables += [f"oneclass_{x}_{s}_{p}" for x in ("pretext", "random") for s in ("paper", "small_sample")
               for p in ("raw", "aligned_jpeg95")]
    tables += [f"binary_{a}_{p}" for a in ("alpha0.05", "alpha0") for p in ("raw", "aligned_jpeg95")]
    for table in tables:
        rows = (out / "tables" / f"{table}.csv").read_text().splitlines()
        assert len(rows) == 1 + 13 + 1, table  # header, 13 generators, mean
    long = (out / "tables" / "robustness_long.csv").read_text().splitlines()
    assert len(long) == 1 + 14 * 2 * 14  # 14 protocols x 2 detectors x (13 generators + mean)
    assert (out / "tables" / "robustness_binary_ap.tex").is_file()
    bundle = json.loads((out / "bundle" / "bundle.json").read_text())
    assert bundle["oneclass_method"] == "small_sample" and bundle["binary_validation"]["validation_images"] > 10
    assert 0 < bundle["binary_threshold"] < 1 and bundle["oneclass_validation"]["fake_acc"] is not None
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["parameters"]["steps"] == 30 and prov["device"]
    assert prov["profile"] == "demo" and prov["seed"] == 0 and prov["packages"]["torch"] != "not installed"
    assert set(prov["manifests"]) == {"demo.csv"} and len(prov["manifests"]["demo.csv"]) == 64
    assert prov["started"] <= prov["finished"]
    for executed in out.glob("0*.ipynb"):  # solutions ran and passed their checks; no progress-bar spam
        text = executed.read_text()
        assert "TqdmWarning" not in text and "img/s]" not in text, executed.name
    assert '"name": "stdout"' in (out / "03_oneclass_gmm.ipynb").read_text()
    assert "gaussian_logpdf matches scipy" in (out / "03_oneclass_gmm.ipynb").read_text()
    shipped = json.loads((out / "bundle" / "bundle.json").read_text())
    shutil.rmtree(out / "bundle")
    assert main(["bundle", "build", "--profile", "demo", "--results", str(out)]) == 0  # no notebook needed
    rebuilt = json.loads((out / "bundle" / "bundle.json").read_text())
    assert {k: v for k, v in rebuilt.items() if k not in ("created", "files")} == \
        {k: v for k, v in shipped.items() if k not in ("created", "files")}
    assert rebuilt["files"]["extractor.pt"] == shipped["files"]["extractor.pt"]
    assert (out / "bundle" / "MODEL_CARD.md").read_text().startswith("# Model card")
    runs = (out / "scaling" / "runs.csv").read_text().splitlines()  # the miniature study, random init included
    assert any(r.startswith("random init,") for r in runs) and any(r.startswith("pretext,") for r in runs)
    assert "slope_interval matches" in (out / "06_data_scaling.ipynb").read_text()
    for fig in ("scaling_own", "scaling", "scaling_heldout_loss", "scaling_fake_axis"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000, fig


@pytest.mark.slow
def test_demo_notebooks_still_teach_with_their_own_network(root, tmp_path):
    """extractor = "pretext": notebook 03 evaluates the network notebook 02 trains on the whole demo
    suite, and notebook 04 trains both binary detectors against it, keeping the validated step."""
    out = tmp_path / "results"
    result = run_notebooks(load_profile("demo", root=root), names=("02", "03", "04"), output_dir=out, progress=False,
                           parameters={"steps": 20, "extractor": "pretext"})
    assert [r.status for r in result.records] == ["ok"] * 3
    for run in ("alpha=0.05", "alpha=0"):
        assert (out / "binary" / run / "best.pt").is_file()
        assert (out / "binary" / run / "validation.csv").read_text().splitlines()[1].startswith("20,")
    for table in ("oneclass_pretext_small_sample_raw", "binary_alpha0.05_aligned_jpeg95"):
        rows = (out / "tables" / f"{table}.csv").read_text().splitlines()
        assert len(rows) == 1 + 13 + 1, table
    sd15 = next(r for r in rows if r.startswith("sd15_artist_grids_webp,"))
    assert sd15.split(",")[3] == "200"  # nothing left out: this network trained on no demo test image


def _fake_checkout(root, tmp_path, body):
    fake = tmp_path / "checkout"
    (fake / "notebooks").mkdir(parents=True)
    shutil.copytree(root / "data_manifests", fake / "data_manifests")
    header = '# %% tags=["parameters"]\nprofile = "demo"\nresults_dir = "x"\nseed = 0\n\n'
    (fake / "notebooks" / "00_ok.py").write_text(header + "# %%\nx = 1\n")
    (fake / "notebooks" / "01_broken.py").write_text(header + "# %%\ny = 2\n\n# %%\n" + body + "\n")
    (fake / "notebooks" / "02_never.py").write_text(header + "# %%\nz = 3\n")
    return fake


@pytest.mark.slow
def test_failure_names_notebook_and_cell_and_keeps_earlier_results(root, tmp_path):
    fake = _fake_checkout(root, tmp_path, "raise ValueError('bad threshold')")
    profile = load_profile("demo", root=fake)
    out = tmp_path / "out"
    with pytest.raises(NotebookFailed) as info:
        run_notebooks(profile, names=("00", "01", "02"), output_dir=out, progress=False)
    message = str(info.value)
    assert "01_broken failed at cell" in message and "ValueError: bad threshold" in message
    assert (out / "00_ok.ipynb").is_file() and not (out / "02_never.ipynb").exists()
    prov = json.loads((out / "provenance.json").read_text())
    assert [n["status"] for n in prov["notebooks"]] == ["ok", "failed"]


@pytest.mark.slow
def test_a_partial_rerun_is_appended_to_the_provenance(root, tmp_path, capfd):
    fake = _fake_checkout(root, tmp_path, "y = 3")
    profile = load_profile("demo", root=fake)
    profile = dataclasses.replace(profile, notebooks=["00_ok", "01_broken", "02_never"])
    out = tmp_path / "out"
    run_notebooks(profile, output_dir=out, progress=False)
    run_notebooks(profile, names=("01",), output_dir=out, progress=False, parameters={"why": "fixed a cell"})
    prov = json.loads((out / "provenance.json").read_text())
    assert [n["name"] for n in prov["notebooks"]] == ["00_ok", "01_broken", "02_never"]
    assert [[n["name"] for n in r["notebooks"]] for r in prov["reruns"]] == [["01_broken"]]
    assert prov["reruns"][0]["parameters"]["why"] == "fixed a cell"
    run_notebooks(profile, output_dir=out, progress=False)  # a full run starts a fresh record
    assert "reruns" not in json.loads((out / "provenance.json").read_text())
    # the kernels talk over local sockets: no "running over TCP without encryption" warning, nothing left behind
    assert "WARNING" not in capfd.readouterr().err
    assert not list(fake.glob("kernel*"))


def test_executed_notebooks_get_no_progress_bars_and_the_setting_is_restored(monkeypatch):
    import os

    from exifkit.progress import bars_disabled

    from exifkit.progress import progress_bar

    monkeypatch.setenv("TQDM_DISABLE", "0")
    with bars_disabled():
        assert os.environ["TQDM_DISABLE"] == "1"
        assert progress_bar(range(3), disable=False).disable  # the kit's bars ask for themselves explicitly
    assert os.environ["TQDM_DISABLE"] == "0"
    assert not progress_bar(range(3), disable=False).disable
    monkeypatch.delenv("TQDM_DISABLE")
    with bars_disabled():
        pass
    assert "TQDM_DISABLE" not in os.environ
