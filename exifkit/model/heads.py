"""Pretext heads: one linear layer per EXIF target on the image feature."""

from __future__ import annotations

import torch
from torch import nn

from ..exif.schema import RANKED, TAGS


def head_sizes(vocab_sizes: dict[str, int], tags=TAGS) -> list[int]:
    """Output size per tag in label order: 1 (a ranking score) or the number of classes."""
    return [1 if t.kind == RANKED else vocab_sizes[t.name] for t in tags]


#: Output sizes of the authors' released pretext heads, in label order.
AUTHORS_HEAD_SIZES = (1, 7, 1, 1, 1, 6, 4, 1, 1, 6, 4, 2, 1, 5)


class PretextHeads(nn.Module):
    """Heads in label order. Which are ranking scores is said, not guessed from the size: a
    categorical tag whose vocabulary has one class also has a 1-wide head."""

    def __init__(self, feature_dim: int, sizes, ranked=tuple(t.kind == RANKED for t in TAGS)):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.ranked = tuple(bool(r) for r in ranked)
        if len(self.ranked) != len(self.sizes):
            raise ValueError(f"{len(self.sizes)} head sizes but {len(self.ranked)} ranked flags")
        self.heads = nn.ModuleList(nn.Linear(feature_dim, s) for s in self.sizes)

    def forward(self, feature: torch.Tensor) -> list[torch.Tensor]:
        """A (B,) score for ranked tags, (B, classes) logits for categorical ones."""
        return [h(feature).squeeze(-1) if r else h(feature) for h, r in zip(self.heads, self.ranked)]
