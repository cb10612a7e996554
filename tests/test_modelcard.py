import pandas as pd

from exifkit.modelcard import NOT_FOR, model_card


def _table():
    return pd.DataFrame([
        {"generator": "gan", "seen": True, "reals": 10, "fakes": 10, "acc": 0.9, "real_acc": 0.8, "fake_acc": 1.0,
         "auc": 0.95, "auc 95% CI": "[0.900, 0.990]", "acc 95% CI": "[0.800, 1.000]"},
        {"generator": "mean", "seen": "", "reals": 10, "fakes": 10, "acc": 0.9, "real_acc": 0.8, "fake_acc": 1.0,
         "auc": 0.95},
    ])


def test_model_card_states_data_budget_thresholds_intervals_and_limits():
    meta = {"training_manifest_sha256": "abc123", "binary_threshold": 0.42, "oneclass_threshold": -12.5,
            "oneclass_method": "small_sample", "oneclass_density": "ppca_32",
            "binary_validation": {"validation_images": 50, "real_acc": 0.8, "fake_acc": 0.9},
            "oneclass_validation": {"real_acc": 0.95, "fake_acc": 0.4}}
    card = model_card(profile="extended", bundle_meta=meta,
                      composition=pd.DataFrame([{"set": "test", "label": "real", "source": "camera", "images": 99}]),
                      budget={"pretext": "600 steps"}, binary_aligned=_table(), binary_raw=_table(),
                      seen_unseen=pd.DataFrame([{"generators": "seen", "mean auc": 0.95}]),
                      oneclass_summary=pd.DataFrame([{"setting": "paper", "auc": 0.6}]), oneclass_aligned=_table(),
                      notes=["tiny scale"])
    for needle in ("abc123", "P(fake) > 0.4200", "50 validation images", "ppca_32", "0.950 [0.900, 0.990]",
                   "600 steps", "tiny scale", "False-positive rate", NOT_FOR[0][:40]):
        assert needle in card, needle


def test_budget_of_a_resumed_run_counts_every_segment(tmp_path):
    import torch

    from exifkit.modelcard import pretext_budget

    # Two segments: the clock restarts at the resume (step 30), so the last row alone says 100 s.
    pd.DataFrame({"step": [10, 20, 30, 40, 50], "pairs_per_s": [6.0, 7.0, 7.0, 8.0, 7.5],
                  "seconds": [60.0, 600.0, 1200.0, 50.0, 100.0]}).to_csv(tmp_path / "metrics.csv", index=False)
    state = {"step": 50, "precision_used": "bf16",
             "config": {"batch_pairs": 16, "n_patches": 16, "extractor": {"patch_size": 64}}}
    torch.save(state, tmp_path / "last.pt")
    line = pretext_budget(tmp_path)
    assert "22 min of wall time in 2 segments, 2 min at its median 7.0 pairs/s" in line, line
    assert line.startswith("50 steps x 16 pairs") and "precision bf16" in line
