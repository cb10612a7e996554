"""The authors' released checkpoint formats, read and written through an explicit name mapping.

Pretext checkpoint: ``{"state_net": {"module.backbone.<name>": ..., "module.fc1.weight": ..., ...}}``.
Binary checkpoint: ``{"state_net": {"diffusionextractor_pretrained.<name>", "diffusionextractor_random.<name>",
"fc.weight", "fc.bias"}}``, possibly with a ``module.`` prefix. ``<name>`` is the authors' module path;
``official_names`` maps each of our parameter names to it one-to-one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .extractor import Extractor, ExtractorConfig
from .heads import PretextHeads

PRETEXT_PREFIX = "module.backbone."
BINARY_FROZEN, BINARY_TRAINED = "diffusionextractor_pretrained.", "diffusionextractor_random."


class CheckpointFormatError(UserError):
    pass


def official_names(config: ExtractorConfig) -> dict[str, str]:
    """Our state-dict key -> the authors' key, for an extractor of this configuration."""
    names = {"srm.weight": "group1.hpf.weight"}
    for p in ("weight", "bias"):
        names[f"stem.conv.{p}"] = f"group1_b.0.{p}"
        names[f"stem.norm.{p}"] = f"group1_b.1.{p}"
        for s, n_convs in enumerate(config.convs_per_stage):
            for k in range(n_convs):  # Sequential of (conv, norm, act) triples
                names[f"stages.{s}.layers.{k}.conv.{p}"] = f"group{s + 2}.{3 * k}.{p}"
                names[f"stages.{s}.layers.{k}.norm.{p}"] = f"group{s + 2}.{3 * k + 1}.{p}"
        for i in range(config.transformer_depth):
            t = f"transformer.layers.{i}"
            names[f"blocks.{i}.attn_norm.{p}"] = f"{t}.0.norm.{p}"
            names[f"blocks.{i}.mlp_norm.{p}"] = f"{t}.1.norm.{p}"
            names[f"blocks.{i}.mlp.fc1.{p}"] = f"{t}.1.fn.net.0.{p}"
            names[f"blocks.{i}.mlp.fc2.{p}"] = f"{t}.1.fn.net.3.{p}"
            names[f"blocks.{i}.attn.out.{p}"] = f"{t}.0.fn.to_out.0.{p}"
    for i in range(config.transformer_depth):
        names[f"blocks.{i}.attn.qkv.weight"] = f"transformer.layers.{i}.0.fn.to_qkv.weight"
    return names


def to_official(extractor: Extractor) -> dict[str, torch.Tensor]:
    names = official_names(extractor.config)
    state = extractor.state_dict()
    if set(state) != set(names):
        raise CheckpointFormatError(f"unmapped keys: {sorted(set(state) ^ set(names))}")
    return {names[k]: v.detach().clone() for k, v in state.items()}


def from_official(state: dict[str, torch.Tensor], config: ExtractorConfig | None = None,
                  source: str = "checkpoint") -> Extractor:
    extractor = Extractor(config)
    names = official_names(extractor.config)
    missing = [theirs for theirs in names.values() if theirs not in state]
    unexpected = sorted(set(state) - set(names.values()))
    if missing or unexpected:
        raise CheckpointFormatError(f"{source}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                                    f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    ours = {}
    for mine, theirs in names.items():
        expected = extractor.state_dict()[mine].shape
        if state[theirs].shape != expected:
            raise CheckpointFormatError(f"{source}: {theirs} has shape {tuple(state[theirs].shape)}, "
                                        f"expected {tuple(expected)}")
        ours[mine] = state[theirs]
    extractor.load_state_dict(ours)
    return extractor.eval()


@dataclass
class OfficialModel:
    """What a released checkpoint holds, as exifkit modules in eval mode."""

    kind: str  # "pretext" | "binary"
    extractor: Extractor  # pretext: the backbone; binary: the trained (formerly random-init) extractor
    heads: PretextHeads | None = None
    frozen_extractor: Extractor | None = None  # binary only: the pretext extractor it was regularised towards
    classifier: nn.Linear | None = None  # binary only: 528 -> 2 (index 0 = real)


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_official(path: str | Path, config: ExtractorConfig | None = None) -> OfficialModel:
    """Read either released format (``torch.load`` with ``weights_only=True``: no code runs)."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointFormatError(f"{path}: not a loadable weights file ({type(exc).__name__}: {exc})") from exc
    state = blob.get("state_net") if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{path}: no 'state_net' dictionary")
    if any(k.startswith(PRETEXT_PREFIX) for k in state):
        extractor = from_official(_strip(state, PRETEXT_PREFIX), config, str(path))
        sizes, i = [], 1
        while f"module.fc{i}.weight" in state:
            sizes.append(state[f"module.fc{i}.weight"].shape[0])
            i += 1
        heads = PretextHeads(extractor.feature_dim, sizes)
        heads.load_state_dict({f"heads.{j}.{p}": state[f"module.fc{j + 1}.{p}"]
                               for j in range(len(sizes)) for p in ("weight", "bias")})
        return OfficialModel("pretext", extractor, heads=heads.eval())
    state = _strip(state, "module.") if all(k.startswith("module.") for k in state) else state
    if any(k.startswith(BINARY_TRAINED) for k in state):
        trained = from_official(_strip(state, BINARY_TRAINED), config, str(path))
        frozen = from_official(_strip(state, BINARY_FROZEN), config, str(path))
        fc = nn.Linear(state["fc.weight"].shape[1], state["fc.weight"].shape[0])
        fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
        return OfficialModel("binary", trained, frozen_extractor=frozen, classifier=fc.eval())
    raise CheckpointFormatError(f"{path}: neither the pretext nor the binary checkpoint layout")


def save_official(path: str | Path, extractor: Extractor, heads: PretextHeads) -> Path:
    """Write our weights in the authors' pretext format, loadable by their code and by ours."""
    state = {PRETEXT_PREFIX + k: v for k, v in to_official(extractor).items()}
    for j, head in enumerate(heads.heads, start=1):
        state[f"module.fc{j}.weight"] = head.weight.detach().clone()
        state[f"module.fc{j}.bias"] = head.bias.detach().clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_net": state}, path)
    return path
