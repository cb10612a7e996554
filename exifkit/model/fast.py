"""The extractor's fast path: the same function as the module-by-module reference, computed cheaper.

Where the reference spends its time (see ``benchmarks/README.md``): the stem convolution reads the
90 SRM residual maps (90 -> 32 channels, 3x3), and the 24 MB residual tensor of every 16 patches is
written and read back; the other convolutions convert between PyTorch's NCHW layout and the blocked
layout of the convolution library on every call. These changes remove most of that:

* **SRM folded into the stem.** The SRM bank is a fixed linear map and the stem convolution is the
  next thing applied to its output, so the two compose into one 7x7 convolution from the 3 colour
  channels (147 multiply-adds per output value instead of 810 plus the residuals). The composition
  is exact everywhere but on the outer ring of pixels: the reference pads the *residuals* with zeros,
  the composite would see residuals computed from padded pixels there. Those ring residuals depend
  on only the two outermost rows or columns of pixels, so their contribution is subtracted with four
  thin convolutions and four 2x2 corner terms, each again folded into a kernel on the pixels.
* **Channels-last activations** end to end, so the convolution library reads and writes them in
  place; LayerNorm runs over the contiguous (H, W, C) view with its affine weights permuted once.
* **LayerNorm and its activation fused** (``normact.py``): one pass each way over a map in its own
  precision instead of separate LayerNorm, activation and cast passes over float32 copies; at
  inference, chunks of patches small enough to stay in cache.
* **bf16 at CPU inference** (precision "auto" on a CPU with AVX512-BF16): the stage convolutions' products
  in bf16 with float32 sums; the folded stem, the covariance pooling and the Transformer stay float32.
* **The faster convolutions for this CPU**: at inference each precision uses the Winograd kernel or the
  convolution library's direct convolutions, whichever this machine runs faster (``conv_choice.py``).

Every function here is differentiable and built from the module's own parameters, so training uses
it too and checkpoints are shared with the reference mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import conv_choice, normact, winograd
from .covariance import covariance_pool

CHANNELS_LAST = torch.channels_last


def _compose(stem: torch.Tensor, srm: torch.Tensor) -> torch.Tensor:
    """Kernel of ``conv(conv(x, srm), stem)`` without padding: the full 2-D convolution of the two.

    ``stem`` is (O, C*K, h, w) with input channels colour-major (K residuals of each of C colours),
    ``srm`` is (K, 1, 5, 5); the result is (O, C, h + 4, w + 4)."""
    o, ck, h, w = stem.shape
    k = srm.shape[0]
    return F.conv_transpose2d(stem.reshape(o * (ck // k), k, h, w), srm).reshape(o, ck // k, h + 4, w + 4)


@dataclass
class StemKernels:
    """The folded SRM + stem convolution and the pieces that correct its outer ring (the corrections
    are stored negated: they are added)."""

    full: torch.Tensor  # (O, C, 7, 7)
    top: torch.Tensor  # (O, C, 2, 7) on the first two pixel rows
    bottom: torch.Tensor  # (O, C, 2, 7) on the last two
    left: torch.Tensor  # (O, C, 7, 2)
    right: torch.Tensor  # (O, C, 7, 2)
    corners: tuple[torch.Tensor, ...]  # 4 x (O, C, 2, 2): top-left, top-right, bottom-left, bottom-right


def fold_stem(srm: torch.Tensor, stem: torch.Tensor) -> StemKernels:
    """A residual on the ring just outside the image reads pixels only from the two nearest rows
    (columns): rows 3-4 of the SRM kernel for the top ring, rows 0-1 for the bottom one."""
    if srm.shape[-1] != 5 or stem.shape[-1] != 3:
        raise ValueError("the folded stem expects 5x5 SRM kernels and a 3x3 stem convolution")
    top_edge, bottom_edge = slice(3, 5), slice(0, 2)
    row = [_compose(stem[:, :, i:i + 1, :], srm) for i in range(3)]  # (O, C, 5, 7) each
    col = [_compose(stem[:, :, :, j:j + 1], srm) for j in range(3)]  # (O, C, 7, 5) each
    corner = {(i, j): _compose(stem[:, :, i:i + 1, j:j + 1], srm) for i in (0, 2) for j in (0, 2)}
    return StemKernels(
        full=_compose(stem, srm),
        top=-row[0][:, :, top_edge], bottom=-row[2][:, :, bottom_edge],
        left=-col[0][..., top_edge], right=-col[2][..., bottom_edge],
        corners=(corner[0, 0][:, :, top_edge, top_edge], corner[0, 2][:, :, top_edge, bottom_edge],
                 corner[2, 0][:, :, bottom_edge, top_edge], corner[2, 2][:, :, bottom_edge, bottom_edge]))


class _AddToBorder(torch.autograd.Function):
    """``out`` plus corrections on its outer rows, columns and corners, in place.

    Written as an autograd function because in-place updates of slices would make autograd copy the
    whole gradient once per slice; here the gradient of each correction is just a slice of it."""

    @staticmethod
    def forward(ctx, out, top, bottom, left, right, corners):
        out[:, :, :1, :] += top
        out[:, :, -1:, :] += bottom
        out[:, :, :, :1] += left
        out[:, :, :, -1:] += right
        out[:, :, 0, 0] += corners[..., 0]
        out[:, :, 0, -1] += corners[..., 1]
        out[:, :, -1, 0] += corners[..., 2]
        out[:, :, -1, -1] += corners[..., 3]
        ctx.mark_dirty(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        corners = torch.stack([grad[:, :, 0, 0], grad[:, :, 0, -1], grad[:, :, -1, 0], grad[:, :, -1, -1]], -1)
        return grad, grad[:, :, :1, :], grad[:, :, -1:, :], grad[:, :, :, :1], grad[:, :, :, -1:], corners


def srm_stem(x: torch.Tensor, k: StemKernels, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv3x3(zero_pad(srm(x)))`` of the reference, from the folded kernels.

    The top and bottom corrections each include the corner residual; the left and right ones do too,
    so the corners are added back once."""
    if min(x.shape[-2:]) < 2:
        raise ValueError(f"the folded stem needs patches of at least 2x2 pixels, got {tuple(x.shape[-2:])}")
    corner = lambda kernel, px: torch.einsum("ocij,bcij->bo", kernel, px)  # noqa: E731
    tl, tr, bl, br = k.corners
    return _AddToBorder.apply(
        F.conv2d(x, k.full, bias, padding=3),
        F.conv2d(x[:, :, :2, :], k.top, padding=(0, 3)),
        F.conv2d(x[:, :, -2:, :], k.bottom, padding=(0, 3)),
        F.conv2d(x[:, :, :, :2], k.left, padding=(3, 0)),
        F.conv2d(x[:, :, :, -2:], k.right, padding=(3, 0)),
        torch.stack([corner(tl, x[:, :, :2, :2]), corner(tr, x[:, :, :2, -2:]),
                     corner(bl, x[:, :, -2:, :2]), corner(br, x[:, :, -2:, -2:])], -1))


def direct_stage(x: torch.Tensor, layers, pool, norms, convs) -> torch.Tensor:
    """A stage at CPU inference where the convolution library's convolutions beat the Winograd kernel's
    (``conv_choice.py``): each layer's convolution in its weights' dtype (bf16 or float32), then its
    LayerNorm + ReLU (and the stage's pool after the last) by the fused kernel, every sum float32."""
    pooled = winograd.is_stage_pool(pool)
    for j, (weight, bias) in enumerate(convs[:len(layers)]):
        last = pooled and j == len(layers) - 1
        x = normact.layer_norm_act(F.conv2d(x.to(weight.dtype), weight, bias, padding=1), norms[j], pool=last)
    return x if pooled else pool(x)


def stage(x: torch.Tensor, layers, pool, norms, transformed) -> torch.Tensor:
    """Each layer's convolution, LayerNorm and ReLU, then the stage's pool.

    At CPU inference the convolutions run by Winograd (``winograd.py``) and no LayerNorm + ReLU is
    written out as a map of its own: each is applied by the next convolution while it reads its
    input, from the sums this one returned, and the last by the pooling kernel. In training the last
    LayerNorm and the pool are one kernel (``normact.py``)."""
    owed, pooled = None, winograd.is_stage_pool(pool)
    for j, layer in enumerate(layers):
        conv, norm = layer.conv, norms[j]
        y, sums = winograd.conv3x3(x, conv.weight, conv.bias, transformed[j], owed)
        if sums is None and pooled and j == len(layers) - 1:
            return normact.layer_norm_act(y, norm, pool=True)
        if sums is None:
            x, owed = normact.layer_norm_act(y, norm), None
        else:
            x, owed = y, winograd.PendingNorm.from_sums(sums, y[0].numel(), *norm)
    if owed is None:
        return pool(x)
    if winograd.is_stage_pool(pool):
        return winograd.norm_pool(x, owed, pool)
    return pool(owed.apply(x))


@dataclass
class FastWeights:
    """What the fast path derives from the parameters once per call (not per chunk of patches)."""

    stem: StemKernels
    norms: list[tuple[torch.Tensor, torch.Tensor, float]]  # per LayerNorm, in network order
    winograd: list[torch.Tensor | None]  # per stage convolution: its Winograd filters, at CPU inference
    direct: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None  # or weights and biases, for direct_stage


def derived_from(extractor) -> list[torch.Tensor]:
    """The tensors :func:`prepare` reads: what a kept :class:`FastWeights` must be checked against."""
    layers = [layer for stage in extractor.stages for layer in stage.layers]
    return [extractor.srm.weight, extractor.stem.conv.weight, extractor.stem.norm.weight, extractor.stem.norm.bias,
            *(t for layer in layers for t in (layer.conv.weight, layer.norm.weight, layer.norm.bias))]


def prepare(extractor, bf16: bool = False) -> FastWeights:
    """At CPU inference, the convolutions ``conv_choice`` chose for the precision; ``bf16``: with bf16
    products (on a CPU that has them; layers whose channels the Winograd kernel takes, multiples of 16)."""
    norms = [extractor.stem.norm] + [layer.norm for stage in extractor.stages for layer in stage.layers]
    convs = [layer.conv for stage in extractor.stages for layer in stage.layers]
    inference = not torch.is_grad_enabled() and extractor.device.type == "cpu" and winograd.available()
    bf16 = bf16 and inference and winograd.bf16_available()
    direct = inference and conv_choice.inference_convolutions(bf16) == "direct"

    def direct_weights(conv):
        dtype = torch.bfloat16 if bf16 and conv.in_channels % 16 == 0 else torch.float32
        bias = None if conv.bias is None else conv.bias.detach().to(dtype)
        return conv.weight.detach().to(dtype).contiguous(memory_format=CHANNELS_LAST), bias

    return FastWeights(
        stem=fold_stem(extractor.srm.weight, extractor.stem.conv.weight),
        norms=[(n.weight.permute(1, 2, 0).contiguous(), n.bias.permute(1, 2, 0).contiguous(), n.eps)
               for n in norms],
        winograd=[winograd.transform_weight(c.weight, bf16) if inference and not direct else None for c in convs],
        direct=[direct_weights(c) for c in convs] if direct else None)


def trunk(extractor, weights: FastWeights, patches: torch.Tensor, keep_stages: bool = True):
    """(M, 3, P, P) -> covariance vectors (M, D) and the stage maps (channels-last), as the reference."""
    clip = extractor.config.stem_clip
    x = patches.contiguous(memory_format=CHANNELS_LAST)
    x = srm_stem(x, weights.stem, extractor.stem.conv.bias)
    x = normact.layer_norm_act(x, weights.norms[0], -clip, clip)
    stages, i = [], 1
    for block in extractor.stages:
        if weights.direct:
            x = direct_stage(x, block.layers, block.pool, weights.norms[i:], weights.direct[i - 1:])
        else:
            x = stage(x, block.layers, block.pool, weights.norms[i:], weights.winograd[i - 1:])
        i += len(block.layers)
        if keep_stages:
            stages.append(x)
    return covariance_pool(x.float(), extractor.config.sqrt_iterations), stages
