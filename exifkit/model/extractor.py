"""The SDAIE feature extractor: residuals of scrambled patches -> CNN -> covariance -> Transformer.

Input is a batch of patch sets (B, N, 3, P, P), already normalised (see :mod:`exifkit.patches`).
Each patch is encoded on its own; only the Transformer lets the N patches of an image talk to each
other. It has no positional embedding, so the patches form a set, which is what "scrambled" means.
The image feature is the Transformer's output at the first token.

Two modes compute the same function. ``"reference"`` runs the modules one after the other, in
float32 and contiguous NCHW, and evaluates one image at a time: it is the plain reading of the
architecture and the baseline the benchmarks compare against. ``"fast"`` (the default) computes the
same outputs, to float32 rounding, with the rewrites described in :mod:`exifkit.model.fast`.
The modes share every parameter, so a checkpoint loads into either. At inference the fast mode may
compute the convolutions' products in bf16 (``precision``, "auto" by default: see
:attr:`Extractor.inference_precision` and docs/speed.md); training and :meth:`Extractor.forward` never do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import conv_choice, fast, winograd
from .covariance import covariance_pool
from .srm import SRMFilterBank

MODES = ("fast", "reference")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class ExtractorConfig:
    """Defaults are the paper's network; smaller values make CPU experiments possible."""

    patch_size: int = 64
    width: int = 32
    convs_per_stage: tuple[int, ...] = (4, 2, 2, 2)  # a 3x3 average pool (stride 2) after every stage but the last
    stem_clip: float = 5.0
    sqrt_iterations: int = 5
    transformer_depth: int = 2
    heads: int = 4
    head_dim: int = 16
    mlp_dim: int = 128

    @classmethod
    def from_dict(cls, raw: dict) -> "ExtractorConfig":
        """From its stored form (JSON and checkpoints keep the stage list as a list)."""
        return cls(**{**raw, "convs_per_stage": tuple(raw["convs_per_stage"])})

    @property
    def feature_dim(self) -> int:
        return self.width * (self.width + 1) // 2

    def stage_sizes(self) -> list[int]:
        return [self.patch_size // 2 ** i for i in range(len(self.convs_per_stage))]


@dataclass
class ExtractorOutput:
    feature: torch.Tensor  # (B, D): the image feature
    stages: list[torch.Tensor] = field(default_factory=list)  # per-stage maps, (B*N, width, s, s)
    patch_vectors: torch.Tensor | None = None  # (B, N, D): covariance vectors before the Transformer


class ConvNormAct(nn.Module):
    """3x3 conv, LayerNorm over the whole (C, H, W) map, activation."""

    def __init__(self, cin: int, cout: int, size: int, act: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.LayerNorm([cout, size, size])
        self.act = act

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class Stage(nn.Module):
    def __init__(self, n_convs: int, width: int, size: int, pool: bool):
        super().__init__()
        self.layers = nn.ModuleList(ConvNormAct(width, width, size, nn.ReLU()) for _ in range(n_convs))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1) if pool else nn.Identity()

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.pool(x)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim)

    def forward(self, x, fused: bool = False):
        """``fused`` uses PyTorch's attention kernel, whose memory does not grow with N^2 (a
        24-megapixel photo has 5,766 patches of 64 pixels)."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if fused:
            mixed = nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            mixed = torch.softmax((q @ k.transpose(-1, -2)) * self.head_dim ** -0.5, dim=-1) @ v
        return self.out(mixed.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm attention and MLP, each with a residual connection."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int):
        super().__init__()
        self.attn_norm, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads, head_dim)
        self.mlp_norm, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp_dim)

    def forward(self, x, fused: bool = False):
        x = x + self.attn(self.attn_norm(x), fused)
        return x + self.mlp(self.mlp_norm(x))


class Extractor(nn.Module):
    def __init__(self, config: ExtractorConfig | None = None, mode: str = "fast", chunk_patches: int = 16,
                 precision: str = "auto"):
        super().__init__()
        self.config = cfg = config or ExtractorConfig()
        self.mode = mode
        self.precision = precision  # of inference (patch_vectors, embed); training and forward() stay float32
        self.chunk_patches = chunk_patches  # at inference; 16 patches of 64 px keep the maps in cache
        self._prepared: tuple | None = None  # (what it was derived from, fast.FastWeights) at inference
        sizes = cfg.stage_sizes()
        if cfg.patch_size % 2 ** (len(sizes) - 1):
            raise ValueError(f"patch size {cfg.patch_size} is not divisible by 2^{len(sizes) - 1}")
        self.srm = SRMFilterBank()
        self.stem = ConvNormAct(3 * self.srm.n_kernels, cfg.width, cfg.patch_size,
                                nn.Hardtanh(-cfg.stem_clip, cfg.stem_clip))
        self.stages = nn.ModuleList(
            Stage(n, cfg.width, size, pool=i < len(sizes) - 1)
            for i, (n, size) in enumerate(zip(cfg.convs_per_stage, sizes)))
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.feature_dim, cfg.heads, cfg.head_dim, cfg.mlp_dim)
            for _ in range(cfg.transformer_depth))

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def device(self) -> torch.device:
        return self.srm.weight.device

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {value!r}")
        self._mode = value

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {value!r}")
        self._precision = value

    @property
    def inference_precision(self) -> str:
        """What :meth:`patch_vectors` and :meth:`embed` compute in: "bf16" means the stage convolutions'
        products in bf16 with float32 sums (on a CPU with AVX512-BF16, where the Winograd kernel is built;
        see :attr:`inference_numerics` for which convolutions), everything else float32. "auto" is bf16
        there, else fp32. The reference mode is always fp32."""
        if self.mode == "reference" or self.precision == "fp32" or self.device.type != "cpu":
            return "fp32"
        return "bf16" if winograd.bf16_available() else "fp32"

    @property
    def inference_numerics(self) -> str:
        """:attr:`inference_precision`, and for bf16 which convolutions compute it: "bf16" (the Winograd
        kernel's products) or "bf16 direct" (the convolution library's, ``conv_choice.py``). Their features
        differ by about 0.5 %, so feature caches are kept apart by this; in float32 both agree to 1e-6."""
        precision = self.inference_precision
        if precision == "bf16" and conv_choice.inference_convolutions(bf16=True) == "direct":
            return "bf16 direct"
        return precision

    def fast_weights(self, bf16: bool = False) -> fast.FastWeights:
        """What the fast path derives from the parameters (folded stem, Winograd filters: about 5 ms for
        the paper's network), kept between inference calls while the tensors it is derived from and the
        autocast state stay the same (under bf16 autocast the folded stem comes out in bf16: the frozen
        extractor of a binary run, reused in float32 afterwards, must not keep those). "The same" is
        judged by each tensor's storage and its float64 sum (0.45 ms): a replaced tensor, a loaded state
        dict or an edit in place all show; only an edit that keeps every sum exactly would not."""
        if torch.is_grad_enabled():  # training: derive afresh, inside the autograd graph
            return fast.prepare(self)
        device = self.device.type
        autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        key = (autocast, bf16, *((t.data_ptr(), t.device, float(t.detach().sum(dtype=torch.float64)))
                                 for t in fast.derived_from(self)))
        if self._prepared is None or self._prepared[0] != key:
            self._prepared = (key, fast.prepare(self, bf16))
        return self._prepared[1]

    def encode_patches(self, patches: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(M, 3, P, P) -> per-patch covariance vectors (M, D) and the stage maps."""
        if self.mode == "fast":
            return fast.trunk(self, self.fast_weights(), patches)
        x = self.stem(self.srm(patches))
        stages = []
        for stage in self.stages:
            x = stage(x)
            stages.append(x)
        return covariance_pool(x, self.config.sqrt_iterations), stages

    def aggregate(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch vectors of each image (B, N, D) -> image features (B, D)."""
        x = tokens
        for block in self.blocks:
            x = block(x, fused=self.mode == "fast")
        return x[:, 0]

    def _check(self, patches: torch.Tensor) -> None:
        h, w = patches.shape[-2:]
        if h != self.config.patch_size or w != self.config.patch_size:
            raise ValueError(f"patches are {h}x{w}, the extractor expects {self.config.patch_size}")

    def forward(self, patch_sets: torch.Tensor) -> ExtractorOutput:
        """Everything training needs (the stage maps too); see :meth:`embed` for inference."""
        self._check(patch_sets)
        b, n, c, h, w = patch_sets.shape
        vectors, stages = self.encode_patches(patch_sets.reshape(b * n, c, h, w))
        tokens = vectors.reshape(b, n, -1)
        return ExtractorOutput(feature=self.aggregate(tokens), stages=stages, patch_vectors=tokens)

    @torch.inference_mode()
    def patch_vectors(self, patches: torch.Tensor) -> torch.Tensor:
        """(M, 3, P, P) -> (M, D) without the stage maps, in chunks, so memory stays flat in M."""
        self._check(patches)
        if self.mode == "reference":
            return self.encode_patches(patches)[0]
        weights = self.fast_weights(self.inference_precision == "bf16")
        chunk = max(self.chunk_patches, conv_choice.DIRECT_CHUNK) if weights.direct else self.chunk_patches
        return torch.cat([fast.trunk(self, weights, part, keep_stages=False)[0] for part in patches.split(chunk)])

    @torch.inference_mode()
    def embed(self, patch_sets: torch.Tensor) -> torch.Tensor:
        """Image features (B, D) for inference. The reference mode takes one image at a time."""
        self._check(patch_sets)
        if self.mode == "reference":
            return torch.cat([self(one[None]).feature for one in patch_sets])
        b, n = patch_sets.shape[:2]
        return self.aggregate(self.patch_vectors(patch_sets.flatten(0, 1)).reshape(b, n, -1))


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def random_extractor(config: ExtractorConfig, seed: int) -> Extractor:
    """The ablation's extractor: same architecture, untrained weights drawn under ``seed`` (the same in
    the one-class evaluation and the robustness sweep, so both score the same random network)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Extractor(config).eval()
