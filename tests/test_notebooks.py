"""The numbered notebooks on the tiny profile (the demo's data and settings at a smoke-test budget),
executed once per test run in a fixture of this module (`make test` distributes tests by file, so one
worker runs them all); each test reads what one stage left behind."""

from __future__ import annotations

import json
import shutil

import pytest

from exifkit.cli import main
from exifkit.config import load_profile
from exifkit.runner import run_notebooks

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def tiny_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "results"
    result = run_notebooks(load_profile("tiny", root=root), output_dir=out, progress=False)
    return out, result


def _rows(out, table):
    return (out / "tables" / f"{table}.csv").read_text().splitlines()


def test_every_notebook_runs_in_order_and_the_run_is_recorded(tiny_run):
    out, result = tiny_run
    assert [r.notebook[:2] for r in result.records] == ["00", "01", "02", "03", "04", "05", "06"]
    assert [r.status for r in result.records] == ["ok"] * 7
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["parameters"]["results_dir"] == str(out) and prov["device"]
    assert prov["profile"] == "tiny" and prov["seed"] == 0 and prov["packages"]["torch"] != "not installed"
    assert set(prov["manifests"]) == {"demo.csv"} and len(prov["manifests"]["demo.csv"]) == 64
    assert prov["started"] <= prov["finished"]


def test_solutions_ran_their_checks_without_progress_bars(tiny_run):
    out, _ = tiny_run
    for executed in out.glob("0*.ipynb"):
        text = executed.read_text()
        assert "TqdmWarning" not in text and "img/s]" not in text, executed.name
    notebook_03 = (out / "03_oneclass_gmm.ipynb").read_text()
    assert '"name": "stdout"' in notebook_03 and "gaussian_logpdf matches scipy" in notebook_03
    assert "slope_interval matches" in (out / "06_data_scaling.ipynb").read_text()


def test_data_exif_and_pretext_stages_write_their_card_figures_and_tables(tiny_run):
    out, _ = tiny_run
    card = json.loads((out / "exif_card.json").read_text())
    assert card["dataset"] == "tiny" and len(card["tags"]) == 14
    for fig in ("contact_sheet", "tag_coverage", "categorical_tags", "ranked_tags", "pair_balance",
                "srm_residuals", "scrambled_patches", "pretext_training_curve"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000, fig
    heldout = _rows(out, "pretext_heldout")
    assert len(heldout) == 15 and heldout[0].startswith("tag,kind,metric")
    assert (out / "pretext" / "pretext_official_format.pth").is_file()


def test_detector_tables_have_a_row_per_generator_and_the_mean(tiny_run):
    out, _ = tiny_run
    tables = ["oneclass_ablation", "binary_ablation"]
    tables += [f"oneclass_{x}_{s}_{p}" for x in ("pretext", "random") for s in ("paper", "small_sample")
               for p in ("raw", "aligned_jpeg95")]
    tables += [f"binary_{a}_{p}" for a in ("alpha0.05", "alpha0") for p in ("raw", "aligned_jpeg95")]
    for table in tables:
        assert len(_rows(out, table)) == 1 + 13 + 1, table  # header, 13 generators, mean
    for fig in ("oneclass_histograms", "oneclass_roc", "binary_training", "binary_roc"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000, fig


def test_robustness_covers_every_protocol_and_detector(tiny_run):
    out, _ = tiny_run
    assert len(_rows(out, "robustness_long")) == 1 + 14 * 2 * 14  # 14 protocols x 2 detectors x (13 generators + mean)
    assert (out / "tables" / "robustness_binary_ap.tex").is_file()
    agreement = _rows(out, "precision_agreement")  # header, 2 detectors x (float32, the default)
    assert len(agreement) == 5 and agreement[0].startswith("detector,precision,auc")
    for fig in ("robustness_curves", "format_alignment_binary"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000, fig


def test_the_shipped_bundle_is_rebuilt_from_the_runs_without_a_notebook(tiny_run, tmp_path):
    out, _ = tiny_run
    shipped = json.loads((out / "bundle" / "bundle.json").read_text())
    assert shipped["oneclass_method"] == "small_sample" and shipped["binary_validation"]["validation_images"] > 10
    assert 0 < shipped["binary_threshold"] < 1 and shipped["oneclass_validation"]["fake_acc"] is not None
    rebuild = tmp_path / "results"
    shutil.copytree(out, rebuild)
    shutil.rmtree(rebuild / "bundle")
    assert main(["bundle", "build", "--profile", "tiny", "--results", str(rebuild)]) == 0
    rebuilt = json.loads((rebuild / "bundle" / "bundle.json").read_text())
    assert {k: v for k, v in rebuilt.items() if k not in ("created", "files")} == \
        {k: v for k, v in shipped.items() if k not in ("created", "files")}
    assert rebuilt["files"]["extractor.pt"] == shipped["files"]["extractor.pt"]
    assert (rebuild / "bundle" / "MODEL_CARD.md").read_text().startswith("# Model card")


def test_the_scaling_miniature_includes_random_init_and_its_figures(tiny_run):
    out, _ = tiny_run
    runs = (out / "scaling" / "runs.csv").read_text().splitlines()
    assert any(r.startswith("random init,") for r in runs) and any(r.startswith("pretext,") for r in runs)
    for fig in ("scaling_own", "scaling", "scaling_heldout_loss", "scaling_fake_axis"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000, fig
