import numpy as np
import pytest
import torch

from exifkit.binary import (AugmentConfig, BinaryConfig, BinaryModel, augment, binary_loss, gaussian_blur, jpeg,
                            train_binary)
from exifkit.model import Extractor, ExtractorConfig
from exifkit.train import load_checkpoint

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def test_blur_and_jpeg_keep_shape_and_dtype(image):
    for out in (gaussian_blur(image, 0.7), jpeg(image, 95, "pillow"), jpeg(image, 95, "opencv")):
        assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(gaussian_blur(image, 0.0), image)
    assert not np.array_equal(jpeg(image, 90, "opencv"), image)


def test_augment_is_seeded_and_resizes_to_a_square(image):
    always = AugmentConfig(resize_p=1.0, blur_p=1.0, jpeg_p=1.0)
    a = augment(image, np.random.default_rng(3), always)
    b = augment(image, np.random.default_rng(3), always)
    assert np.array_equal(a, b) and a.dtype == np.uint8
    assert a.shape[0] == a.shape[1] and 64 <= a.shape[0] <= 128
    never = AugmentConfig(resize_p=0, blur_p=0, jpeg_p=0)
    assert np.array_equal(augment(image, np.random.default_rng(3), never), image)


def test_regulariser_is_the_sum_of_stage_distances_and_vanishes_at_alpha_zero():
    torch.manual_seed(0)
    model = BinaryModel(TINY, Extractor(TINY))
    x, y = torch.randn(3, 2, 3, 16, 16), torch.tensor([0, 1, 1])
    logits, out, ref = model(x)
    total, ce, reg, dists = binary_loss(logits, y, out, ref, alpha=0.05)
    assert len(dists) == 4  # three stages in this tiny network + the patch vectors
    expected = sum(torch.mean((a - b) ** 2) for a, b in zip(out.stages + [out.patch_vectors],
                                                            ref.stages + [ref.patch_vectors]))
    assert reg.item() == pytest.approx(expected.item(), rel=1e-6)
    assert total.item() == pytest.approx(ce.item() + 0.05 * expected.item(), rel=1e-6)
    total0, ce0, _, _ = binary_loss(logits, y, out, ref, alpha=0.0)
    assert total0.item() == pytest.approx(ce0.item())


def test_frozen_extractor_gets_no_gradient_and_stays_in_eval():
    frozen = Extractor(TINY)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    model = BinaryModel(TINY, frozen).train()
    assert not frozen.training and all(not p.requires_grad for p in frozen.parameters())
    logits, out, ref = model(torch.randn(2, 2, 3, 16, 16))
    binary_loss(logits, torch.tensor([0, 1]), out, ref, 0.05)[0].backward()
    assert all(p.grad is None for p in frozen.parameters())
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())


def _images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(8)], np.array([0, 1] * 4)


def test_binary_training_resumes_exactly(tmp_path):
    images, labels = _images()
    frozen = Extractor(TINY)
    cfg = BinaryConfig(extractor=TINY, steps=4, batch_images=3, n_patches=2, checkpoint_every=2, log_every=1,
                       device="cpu", augment=AugmentConfig(resize_p=0.5, blur_p=0.5, jpeg_p=0.5))
    train_binary(cfg, frozen, images, labels, tmp_path / "a", progress=False)
    train_binary(BinaryConfig(**{**cfg.__dict__, "steps": 2}), frozen, images, labels, tmp_path / "b", progress=False)
    train_binary(cfg, frozen, images, labels, tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_the_authors_binary_checkpoint_scores_through_the_same_model(tmp_path):
    from exifkit.binary import from_official
    from exifkit.model import load_official
    from tests.model.reference_net import reference_forward, synthetic_official_state

    frozen, trained = synthetic_official_state(1), synthetic_official_state(2)
    blob = {f"module.diffusionextractor_pretrained.{k}": v for k, v in frozen.items()}
    blob |= {f"module.diffusionextractor_random.{k}": v for k, v in trained.items()}
    fc_w, fc_b = torch.randn(2, 528), torch.randn(2)
    blob |= {"module.fc.weight": fc_w, "module.fc.bias": fc_b}
    torch.save({"state_net": blob}, tmp_path / "bc.pth")
    model = from_official(load_official(tmp_path / "bc.pth"))
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        expected = 1 - torch.softmax(reference_forward(trained, x) @ fc_w.T + fc_b, dim=1)[:, :1]
        torch.testing.assert_close(model.fake_probability(x), expected, atol=1e-4, rtol=1e-4)
