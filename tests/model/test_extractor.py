import pytest
import torch

from exifkit.model import Extractor, ExtractorConfig, count_trainable


def test_paper_configuration_has_the_papers_parameter_count():
    assert count_trainable(Extractor()) == 2_148_448


def test_outputs_and_stage_shapes():
    m = Extractor().eval()
    out = m(torch.randn(2, 3, 3, 64, 64))
    assert out.feature.shape == (2, 528) and out.patch_vectors.shape == (2, 3, 528)
    assert [tuple(s.shape) for s in out.stages] == [(6, 32, 32, 32), (6, 32, 16, 16), (6, 32, 8, 8), (6, 32, 8, 8)]


def test_feature_ignores_the_order_of_the_other_patches():
    m = Extractor(ExtractorConfig(patch_size=32, width=8, convs_per_stage=(1, 1, 1, 1))).eval()
    x = torch.randn(1, 5, 3, 32, 32)
    perm = torch.tensor([0, 3, 1, 4, 2])  # token 0 stays first; the rest are shuffled
    torch.testing.assert_close(m(x).feature, m(x[:, perm]).feature, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_trainable_parameter():
    m = Extractor()
    out = m(torch.randn(2, 2, 3, 64, 64))
    out.feature.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_wrong_patch_size_is_a_clear_error():
    with pytest.raises(ValueError, match="patches are 32x32, the extractor expects 64"):
        Extractor()(torch.randn(1, 2, 3, 32, 32))


def test_the_random_ablation_extractor_is_the_same_for_a_seed_and_leaves_the_global_generator_alone():
    from exifkit.model.extractor import ExtractorConfig, random_extractor

    cfg = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                          head_dim=4, mlp_dim=8)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = random_extractor(cfg, 0), random_extractor(cfg, 0), random_extractor(cfg, 1)
    assert torch.equal(torch.rand(3), expected_next)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not a.training
