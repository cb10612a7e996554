"""The authors' checkpoint layouts, built by hand from the published key list, both ways."""

import pytest
import torch

from exifkit.model import load_official, save_official
from exifkit.model.heads import AUTHORS_HEAD_SIZES
from exifkit.model.official import CheckpointFormatError
from tests.model.reference_net import reference_forward, synthetic_official_state


def _pretext_checkpoint(path, state):
    blob = {f"module.backbone.{k}": v for k, v in state.items()}
    for j, size in enumerate(AUTHORS_HEAD_SIZES, start=1):
        blob[f"module.fc{j}.weight"] = torch.randn(size, 528)
        blob[f"module.fc{j}.bias"] = torch.randn(size)
    torch.save({"state_net": blob}, path)
    return blob


def test_pretext_checkpoint_round_trip_and_features(tmp_path):
    state = synthetic_official_state()
    blob = _pretext_checkpoint(tmp_path / "pretrained.pth", state)
    model = load_official(tmp_path / "pretrained.pth")
    assert model.kind == "pretext" and model.heads.sizes == AUTHORS_HEAD_SIZES
    assert not model.extractor.training
    x = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model.extractor(x).feature, reference_forward(state, x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    save_official(tmp_path / "again.pth", model.extractor, model.heads)
    again = torch.load(tmp_path / "again.pth", weights_only=True)["state_net"]
    assert again.keys() == blob.keys()
    assert all(torch.equal(again[k], blob[k]) for k in blob)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_binary_checkpoint_with_and_without_module_prefix(tmp_path, prefix):
    frozen, trained = synthetic_official_state(1), synthetic_official_state(2)
    blob = {f"{prefix}diffusionextractor_pretrained.{k}": v for k, v in frozen.items()}
    blob |= {f"{prefix}diffusionextractor_random.{k}": v for k, v in trained.items()}
    blob |= {f"{prefix}fc.weight": torch.randn(2, 528), f"{prefix}fc.bias": torch.randn(2)}
    torch.save({"state_net": blob}, tmp_path / "bc.pth")
    model = load_official(tmp_path / "bc.pth")
    assert model.kind == "binary" and model.classifier.weight.shape == (2, 528)
    x = torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.extractor(x).feature, reference_forward(trained, x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.frozen_extractor(x).feature, reference_forward(frozen, x),
                                   atol=1e-4, rtol=1e-4)


def test_bad_checkpoints_say_what_is_wrong(tmp_path):
    state = synthetic_official_state()
    state["group2.0.weight"] = torch.randn(32, 32, 5, 5)
    _pretext_checkpoint(tmp_path / "shape.pth", state)
    with pytest.raises(CheckpointFormatError, match=r"group2.0.weight has shape \(32, 32, 5, 5\)"):
        load_official(tmp_path / "shape.pth")
    torch.save({"something": 1}, tmp_path / "other.pth")
    with pytest.raises(CheckpointFormatError, match="no 'state_net'"):
        load_official(tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointFormatError, match="text.pth: not a loadable weights file"):
        load_official(tmp_path / "text.pth")
