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
