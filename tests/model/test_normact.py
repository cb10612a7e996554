"""The fused LayerNorm + clamp must be PyTorch's LayerNorm and ReLU or hardtanh, forward and backward:
to float32 rounding in float32, to bf16 rounding of what it writes in bf16, and step aside where it
cannot run."""

import math

import pytest
import torch
import torch.nn.functional as F

from exifkit.model import Extractor, ExtractorConfig, normact
from exifkit.train import autocast

CLAMPS = {"relu": (0.0, math.inf), "hardtanh": (-0.6, 0.6)}  # tight enough that both bounds clip often


def _inputs(n, c, h, w, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, h, w, generator=g) * 3 + 1).to(dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.rand(h, w, c, generator=g) + 0.5
    bias = torch.randn(h, w, c, generator=g) * 0.2
    grad = torch.randn(n, c, h, w, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    return x, weight, bias, grad


def _exact(x, weight, bias, low, high, grad, pool=False):
    """PyTorch's operators in float64 on the same inputs: values and gradients of x, weight, bias."""
    x, weight, bias = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    y = F.layer_norm(x.permute(0, 2, 3, 1), weight.shape, weight, bias, 1e-5).clamp(low, high).permute(0, 3, 1, 2)
    if pool:
        y = F.avg_pool2d(y, 3, stride=2, padding=1)
    y.backward(_pooled(grad) if pool else grad.double())
    return y.detach(), x.grad, weight.grad, bias.grad


def _pooled(grad):
    """An output gradient of the pooled map's shape, from the full-size one."""
    return grad[:, :, ::2, ::2].double().contiguous(memory_format=torch.channels_last)


def _fused(x, weight, bias, low, high, grad, pool=False):
    x, weight, bias = (t.detach().clone().requires_grad_() for t in (x, weight, bias))
    y = normact.layer_norm_act(x, (weight, bias, 1e-5), low, high, pool=pool)
    y.backward(_pooled(grad).to(grad.dtype) if pool else grad)
    return y.detach(), x.grad, weight.grad, bias.grad


def _relative(a, b):
    return float((a.double() - b).norm() / b.norm())


def test_kernel_is_built():
    assert normact.available(), normact.status()


@pytest.mark.parametrize("pool", [False, True], ids=["map", "pooled"])
@pytest.mark.parametrize("clamp", CLAMPS)
@pytest.mark.parametrize("shape", [(3, 32, 64, 64), (1, 16, 8, 8), (5, 8, 6, 2), (2, 8, 5, 3)])
def test_float32_matches_layer_norm_and_activation_to_float32_rounding(shape, clamp, pool):
    """6 x 2 x 8 = 96 values per map: not a multiple of the vector width; 5 maps on 2 threads; 2 x 2
    pooled windows per map; 5 x 3 cannot be pooled by the kernel, so PyTorch does it."""
    x, weight, bias, grad = _inputs(*shape, torch.float32)
    assert normact.usable(x, weight, bias, pool) == (not pool or shape[2] % 2 == shape[3] % 2 == 0)
    got = _fused(x, weight, bias, *CLAMPS[clamp], grad, pool)
    want = _exact(x, weight, bias, *CLAMPS[clamp], grad, pool)
    assert got[0].shape == want[0].shape and got[1].dtype == torch.float32
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for name, a, b in zip(("output", "input gradient", "weight gradient", "bias gradient"), got, want):
        assert _relative(a, b) < 1e-6, name


@pytest.mark.parametrize("pool", [False, True], ids=["map", "pooled"])
@pytest.mark.parametrize("clamp", CLAMPS)
def test_bf16_writes_the_bf16_rounding_of_the_exact_values_and_sums_in_float32(clamp, pool):
    x, weight, bias, grad = _inputs(4, 32, 16, 16, torch.bfloat16)
    low, high = CLAMPS[clamp]
    (y, dx, dw, db) = _fused(x, weight, bias, low, high, grad, pool)
    (ey, edx, edw, edb) = _exact(x, weight, bias, low, high, grad, pool)
    assert y.dtype == dx.dtype == torch.bfloat16 and dw.dtype == db.dtype == torch.float32
    # the statistics are float32 sums, so the exact value lies within one bf16 rounding of what is stored
    torch.testing.assert_close(y.double(), ey, rtol=2 ** -8, atol=1e-6)
    assert _relative(dx, edx) < 4e-3  # bf16 rounding of each stored value
    assert _relative(dw, edw) < 1e-5 and _relative(db, edb) < 1e-5  # sums of bf16 inputs in float32


def test_gradient_is_zero_where_the_clamp_held_the_output():
    x, weight, bias, grad = _inputs(2, 16, 8, 8, torch.float32)
    y, dx, dw, db = _fused(x, weight, bias, -0.6, 0.6, torch.ones_like(grad))
    clipped = (y.abs() >= 0.6).permute(0, 2, 3, 1)
    assert clipped.any() and (~clipped).any()
    assert db.sum() == pytest.approx(float((~clipped).sum()))  # each unclipped value passes its gradient once


def test_where_the_kernel_cannot_run_pytorch_computes_the_same(monkeypatch):
    x, weight, bias, grad = _inputs(2, 16, 8, 8, torch.float32)
    want = _exact(x, weight, bias, 0.0, math.inf, grad)
    nchw = x.contiguous()
    assert not normact.usable(nchw, weight, bias)
    got = _fused(nchw, weight, bias, 0.0, math.inf, grad)
    for a, b in zip(got, want):
        assert _relative(a, b) < 1e-6
    monkeypatch.setattr(normact, "_state", {})
    monkeypatch.setenv("EXIFKIT_FUSED_NORM", "0")
    assert not normact.available() and "EXIFKIT_FUSED_NORM=0" in normact.status()
    for a, b in zip(_fused(x, weight, bias, 0.0, math.inf, grad), want):
        assert _relative(a, b) < 1e-6


def test_bf16_training_gradients_follow_the_pytorch_path_they_replace(monkeypatch):
    """A bf16 autocast step of a small extractor, with the kernel and with PyTorch's LayerNorm and
    activations (float32 maps, as before the kernel): the same gradients to bf16 noise."""
    config = ExtractorConfig(patch_size=32, width=16, convs_per_stage=(2, 1, 1), transformer_depth=1, heads=2,
                             head_dim=4, mlp_dim=16)
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def grads():
        torch.manual_seed(0)
        model = Extractor(config).train()
        with autocast(torch.device("cpu"), "bf16"):
            out = model(x)
        (out.feature.float().square().sum() + out.stages[0].float().mean()).backward()
        return {k: p.grad for k, p in model.named_parameters() if p.grad is not None}

    fused = grads()
    monkeypatch.setattr(normact, "_state", {})
    monkeypatch.setenv("EXIFKIT_FUSED_NORM", "0")
    plain = grads()
    assert fused.keys() == plain.keys()
    worst = max(_relative(fused[k], plain[k].double()) for k in fused)
    assert worst < 0.05, f"largest relative gradient difference {worst:.3f}"
