"""The EXIF pretext task: pairs of photos, a classification loss per categorical tag and a probit
ranking loss per ranked tag, and the loop that trains the extractor on them.

Every random choice (which photos are paired, where patches are cut) is a function of the seed and
the step, so a resumed run sees exactly the batches an uninterrupted one would have seen, and
``torchrun`` ranks draw disjoint slices of the same global batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .data.images import FailureReport, load_many
from .data.stream import PairStream, batch_loader
from .data.suites import split_indices
from .errors import SettingError
from .exif.schema import (ExifLabels, LabelConfig, MISSING_CLASS, TAGS, Vocabulary, build_labels, categorical_tags,
                          ranked_tags)
from .model.extractor import Extractor, ExtractorConfig
from .model.heads import PretextHeads, head_sizes
from .patches import center_crop, grid_patches, random_patches, to_tensor
from .train import (Every, Session, autocast, batch_positions, keep_if_best, load_checkpoint, run_loop,
                    trained_checkpoint)


@dataclass(frozen=True)
class PretextConfig:
    """One pretext run. Defaults follow the authors (16 patches, Adam 1e-4, ties labelled 1)."""

    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    steps: int = 1000
    batch_pairs: int = 64  # per process
    lr: float = 1e-4
    # Decoupled weight decay (AdamW) when above 0; 0 keeps the authors' plain Adam.
    weight_decay: float = 0.0
    n_patches: int = 16
    ties_label: float | None = 1.0  # None: tied pairs are masked out instead
    tag_weights: dict[str, float] = field(default_factory=dict)  # default weight 1
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    max_side: int = 512  # decoded photos are centre-cropped to this (never resized: that would erase traces)
    holdout_fraction: float = 0.2
    # Training-side validation: this share of the *training* photos is kept out of training and scored
    # every ``validate_every`` steps; the best step is kept as best.pt. The held-out (test) photos are
    # never looked at while training.
    validation_fraction: float = 0.0
    validate_every: int = 100
    eval_max_patches: int = 64
    # Streaming from shards only: DataLoader workers (0: decode in this process) and the shuffle buffer.
    # Both fix the order of the pairs, so a resume must keep them.
    workers: int = 0
    shuffle_buffer: int = 1000
    streaming: bool = False  # the profile's data cannot be held in memory: train only from shards
    device: str = "auto"
    precision: str = "auto"  # "bf16" autocast where the hardware runs it natively, else "fp32"

    @classmethod
    def from_dict(cls, raw: dict) -> "PretextConfig":
        raw = dict(raw)
        ext_keys = {f.name for f in fields(ExtractorConfig)}
        ext = {k: raw.pop(k) for k in list(raw) if k in ext_keys}
        if "convs_per_stage" in ext:
            ext["convs_per_stage"] = tuple(ext["convs_per_stage"])
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingError(f"unknown pretext setting(s): {sorted(unknown)}")
        return cls(extractor=ExtractorConfig(**ext), **raw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extractor"]["convs_per_stage"] = list(d["extractor"]["convs_per_stage"])
        return d


# ---------------------------------------------------------------- data

@dataclass
class PhotoSet:
    """Decoded photos held in memory with their EXIF labels."""

    paths: list[str]
    images: list[np.ndarray]
    labels: ExifLabels
    failures: FailureReport = field(default_factory=FailureReport)

    def __len__(self) -> int:
        return len(self.images)


def load_photos(paths, records, max_side: int, config: LabelConfig | None = None,
                vocabularies: dict[str, Vocabulary] | None = None) -> PhotoSet:
    """Decode photos (failures are reported, not dropped silently) and label the ones that decoded."""
    images, failures = load_many(paths)
    keep = [i for i, p in enumerate(paths) if p in images]
    labels = build_labels([records[i] for i in keep], config, vocabularies)
    return PhotoSet([str(paths[i]) for i in keep], [center_crop(images[paths[i]], max_side) for i in keep],
                    labels, failures)


def pair_batch(n_images: int, step: int, batch: int, seed: int, rank: int = 0, world: int = 1):
    """This rank's share of the global batch at ``step``: (first, second, crop seeds). Each first
    image is paired with a photo drawn at random, as in the authors' pair sampler."""
    first, second, crop_seeds = [], [], []
    for epoch, k, item in batch_positions(n_images, step, batch, seed, rank, world):
        first.append(item)
        second.append(int(np.random.default_rng([seed, epoch, k, 1]).integers(n_images)))
        crop_seeds.append([seed, epoch, k, 2])
    return first, second, crop_seeds


def make_batch(photos: PhotoSet, first, second, crop_seeds, n_patches: int, size: int):
    """Patch sets of both sides of each pair, and the labels the loss needs."""
    def patches(idx, side):
        return np.stack([random_patches(photos.images[i], n_patches, size, np.random.default_rng(s + [side]))
                         for i, s in zip(idx, crop_seeds)])

    return {
        "x1": to_tensor(patches(first, 0)), "x2": to_tensor(patches(second, 1)),
        "cat1": torch.from_numpy(photos.labels.categorical[first]),
        "rank1": torch.from_numpy(photos.labels.ranked[first]).float(),
        "rank2": torch.from_numpy(photos.labels.ranked[second]).float(),
    }


# ---------------------------------------------------------------- loss

def ranking_loss(s1: torch.Tensor, s2: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor,
                 ties_label: float | None = 1.0) -> torch.Tensor:
    """BCE between P(v1 >= v2) = Phi(s1 - s2) and the observed order; pairs with a missing value
    (and ties, if ``ties_label`` is None) are masked out. Zero when nothing is left."""
    target = (v1 > v2).float()
    mask = ~(torch.isnan(v1) | torch.isnan(v2))
    ties = v1 == v2
    if ties_label is None:
        mask &= ~ties
    else:
        target = torch.where(ties, torch.full_like(target, ties_label), target)
    if not mask.any():
        return s1.sum() * 0.0
    d = (s1 - s2)[mask]
    t = target[mask]
    # log Phi(d) and log(1 - Phi(d)) = log Phi(-d), computed without underflow
    return -(t * torch.special.log_ndtr(d) + (1 - t) * torch.special.log_ndtr(-d)).mean()


def categorical_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if not (target != MISSING_CLASS).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=MISSING_CLASS)


def pretext_loss(out1: list[torch.Tensor], out2: list[torch.Tensor], batch: dict,
                 ties_label: float | None = 1.0, weights: dict[str, float] | None = None):
    """Weighted sum over the 14 tags (categorical on the first image only, as the authors do)."""
    weights = weights or {}
    cat_col = {t.name: i for i, t in enumerate(categorical_tags())}
    rank_col = {t.name: i for i, t in enumerate(ranked_tags())}
    per_tag = {}
    for t, o1, o2 in zip(TAGS, out1, out2):
        if t.name in cat_col:
            per_tag[t.name] = categorical_loss(o1, batch["cat1"][:, cat_col[t.name]])
        else:
            c = rank_col[t.name]
            per_tag[t.name] = ranking_loss(o1, o2, batch["rank1"][:, c], batch["rank2"][:, c], ties_label)
    total = sum(weights.get(name, 1.0) * loss for name, loss in per_tag.items())
    return total, per_tag


# ---------------------------------------------------------------- model

class PretextModel(nn.Module):
    def __init__(self, extractor_config: ExtractorConfig, sizes):
        super().__init__()
        self.extractor = Extractor(extractor_config)
        self.heads = PretextHeads(self.extractor.feature_dim, sizes)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        """Both sides of every pair in one pass through the extractor."""
        b = x1.shape[0]
        outs = self.heads(self.extractor(torch.cat([x1, x2])).feature)
        return [o[:b] for o in outs], [o[b:] for o in outs]


def pretext_step(net: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, config: PretextConfig,
                 precision: str = "fp32"):
    """One optimisation step on a batch of pairs (what the trainer and the benchmark time); the loss is
    taken in fp32 whatever the forward pass ran in."""
    with autocast(batch["x1"].device, precision):
        out1, out2 = net(batch["x1"], batch["x2"])
    out1, out2 = [o.float() for o in out1], [o.float() for o in out2]
    loss, per_tag = pretext_loss(out1, out2, batch, config.ties_label, config.tag_weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, per_tag


@dataclass
class LossMonitor:
    """Photos whose pretext loss is logged every ``every`` steps (``heldout_loss.csv``): fixed pairs and
    patches drawn once from ``seed``, all 14 tags unweighted and ``n_patches`` per side whatever the run
    trains with, so runs with other tag weights or patch counts are compared on the same number. With
    ``keep_lowest`` (a set's name) the step with the lowest loss there is kept in ``lowest_loss.pt``."""

    sets: dict[str, PhotoSet]
    every: int = 50
    pairs: int = 64
    n_patches: int = 16
    seed: int = 0
    keep_lowest: str | None = None

    def batches(self, photos: PhotoSet, patch_size: int, batch: int = 16) -> list[dict]:
        n = len(photos)
        rng = np.random.default_rng([self.seed, 11])
        first = np.arange(self.pairs) % n
        second = rng.integers(n, size=self.pairs)
        out = []
        for lo in range(0, self.pairs, batch):
            idx = range(lo, min(lo + batch, self.pairs))
            out.append(make_batch(photos, [int(first[i]) for i in idx], [int(second[i]) for i in idx],
                                  [[self.seed, 12, i] for i in idx], self.n_patches, patch_size))
        return out


@torch.no_grad()
def monitored_loss(model: nn.Module, batches: list[dict], precision: str = "fp32") -> float:
    """Mean unweighted pretext loss of fixed batches (model left in eval mode; the caller restores train)."""
    model.eval()
    total, n = 0.0, 0
    for batch in batches:
        with autocast(batch["x1"].device, precision):
            out1, out2 = model(batch["x1"], batch["x2"])
        loss, _ = pretext_loss([o.float() for o in out1], [o.float() for o in out2], batch)
        total += loss.item() * len(batch["x1"])
        n += len(batch["x1"])
    return total / n


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: Path
    steps: int
    seconds: float
    pairs_per_second: float


def _vocab_lists(vocabs: dict[str, Vocabulary]) -> dict[str, list[str]]:
    return {k: list(v.classes) for k, v in vocabs.items()}


def validation_score(table: pd.DataFrame) -> float:
    """One number per validation pass: the mean gain over the baselines across the tags that could be scored."""
    return float(table["gain"].dropna().mean()) if table["gain"].notna().any() else math.nan


def _batches(photos, config: PretextConfig, start: int, ctx, device):
    """The batches of steps ``start``, ``start + 1``, ...: drawn from decoded photos in memory, or
    streamed from a packed collection by ``config.workers`` DataLoader workers (see
    :mod:`exifkit.data.stream`). Both make the same kind of batch from (seed, step) alone."""
    if isinstance(photos, PhotoSet):
        for step in range(start, config.steps):
            first, second, seeds = pair_batch(len(photos), step, config.batch_pairs, config.seed, ctx.rank,
                                              ctx.world_size)
            yield make_batch(photos, first, second, seeds, config.n_patches, config.extractor.patch_size)
        return

    stream = PairStream(photos, batch_pairs=config.batch_pairs, n_patches=config.n_patches,
                        patch_size=config.extractor.patch_size, max_side=config.max_side, seed=config.seed,
                        rank=ctx.rank, world=ctx.world_size, workers=config.workers, start_step=start,
                        buffer=config.shuffle_buffer)
    yield from batch_loader(stream, pin_memory=device.type == "cuda")


def train_pretext(config: PretextConfig, photos, out_dir: str | Path, resume: bool = False,
                  progress: bool = True, validation: PhotoSet | None = None,
                  monitor: LossMonitor | None = None) -> TrainResult:
    """Train (or continue) a pretext run on a :class:`PhotoSet` in memory or a packed collection
    (:class:`exifkit.data.shards.Shards`, streamed); checkpoints ``out_dir/last.pt`` every
    ``checkpoint_every`` steps.
    With ``validation`` photos, scores them every ``validate_every`` steps (``validation.csv``) and keeps
    the best step's weights in ``best.pt``. With a ``monitor``, logs the loss of its photos along the way."""
    if config.streaming and isinstance(photos, PhotoSet):
        raise SettingError("this profile trains from a packed collection, not from photos in memory: pack them with "
                           "`exifkit data pack PHOTOS --out SHARDS` and run `exifkit pretext train --data SHARDS`")
    if validation is not None and not isinstance(photos, PhotoSet):
        raise SettingError("validation photos need the training labels in memory; a run streamed from shards "
                           "keeps its last step (evaluate it on held-out shards afterwards)")
    session = Session.open(out_dir, config.device, config.seed, config.precision)
    out, precision = session.out, session.precision
    vocabularies = photos.labels.vocabularies if isinstance(photos, PhotoSet) else photos.vocabularies()
    sizes = head_sizes({k: len(v.classes) for k, v in vocabularies.items()})
    model = PretextModel(config.extractor, sizes).to(session.device)
    optimizer = (torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
                 if config.weight_decay > 0 else torch.optim.Adam(model.parameters(), lr=config.lr))
    start = session.resume(model, optimizer, config.to_dict(), PretextConfig().to_dict(), resume, progress)

    def weights(step: int) -> dict:
        """What loading a kept step needs (``last.pt`` adds the state to resume from)."""
        return {"step": step, "model": model.state_dict(), "config": config.to_dict(), "head_sizes": list(sizes),
                "vocabularies": _vocab_lists(vocabularies)}

    periodic = []
    if validation is not None and session.ctx.is_main:
        val_log = session.log("validation.csv", ["step", "score"] + [t.name for t in TAGS])

        def validate(step: int):
            if not len(validation):
                return
            table = evaluate_pretext(model, validation, photos.labels, config.eval_max_patches)
            model.train()
            score = validation_score(table)
            val_log.append({"step": step, "score": round(score, 5),
                            **{r.tag: round(r.score, 5) for r in table.itertuples()}})
            keep_if_best(out / "best.pt", score, weights(step))

        periodic.append(Every(config.validate_every, validate))
    monitored = {}
    if monitor is not None and session.ctx.is_main:
        monitored = {name: monitor.batches(p, config.extractor.patch_size)
                     for name, p in monitor.sets.items() if len(p)}
    if monitored:
        monitor_log = session.log("heldout_loss.csv", ["step", *monitored])

        def watch(step: int):
            losses = {name: monitored_loss(model, b, precision) for name, b in monitored.items()}
            model.train()
            monitor_log.append({"step": step, **{k: round(v, 5) for k, v in losses.items()}})
            if monitor.keep_lowest in losses:
                keep_if_best(out / "lowest_loss.pt", -losses[monitor.keep_lowest],
                             {**weights(step), "kept_on": f"lowest {monitor.keep_lowest} loss"})

        if not start:
            watch(0)
        periodic.append(Every(monitor.every, watch))

    def step(net, batch):
        loss, per_tag = pretext_step(net, optimizer, batch, config, precision)
        return {"loss": loss.detach(), **{f"loss_{k}": v.detach() for k, v in per_tag.items()}}

    seconds = run_loop(session, name="pretext", model=model, optimizer=optimizer,
                       batches=_batches(photos, config, start, session.ctx, session.device), step=step,
                       steps=config.steps, items_per_step=config.batch_pairs * session.ctx.world_size, unit="pair",
                       fields=["step", "loss", "pairs_per_s", "seconds"] + [f"loss_{t.name}" for t in TAGS],
                       payload=weights, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                       periodic=tuple(periodic), progress=progress)
    trained = config.steps - start
    return TrainResult(out / "last.pt", out / "metrics.csv", config.steps, seconds,
                       trained * config.batch_pairs * session.ctx.world_size / seconds if seconds else 0.0)


def load_pretext(path: str | Path) -> tuple[PretextModel, PretextConfig, dict[str, Vocabulary]]:
    """A trained pretext model from one of our checkpoints, in eval mode."""
    state = load_checkpoint(path)
    config = PretextConfig.from_dict({**{k: v for k, v in state["config"].items() if k != "extractor"},
                                      **state["config"]["extractor"]})
    model = PretextModel(config.extractor, state["head_sizes"])
    model.load_state_dict(state["model"])
    vocabs = {k: Vocabulary(k, list(v)) for k, v in state["vocabularies"].items()}
    return model.eval(), config, vocabs


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def image_outputs(model: PretextModel, photos: PhotoSet, max_patches: int) -> list[np.ndarray]:
    """Head outputs per held-out photo, from its evaluation grid of patches."""
    size = model.extractor.config.patch_size
    rows = []
    for image in photos.images:
        x = to_tensor(grid_patches(image, size, max_patches))[None]
        rows.append([o.squeeze(0).numpy() for o in model.heads(model.extractor(x).feature)])
    return [np.stack([r[j] for r in rows]) for j in range(len(rows[0]))] if rows else []


def majority_classes(train_labels: ExifLabels) -> np.ndarray:
    """Per categorical tag, the most frequent class of the training photos (-1 where none is known):
    what a model without image information would answer."""
    out = []
    for j in range(train_labels.categorical.shape[1]):
        y = train_labels.categorical[:, j]
        y = y[y != MISSING_CLASS]
        out.append(np.bincount(y).argmax() if len(y) else -1)
    return np.array(out)


def tag_scores(outs: list[np.ndarray], labels: ExifLabels, majority: np.ndarray, idx: np.ndarray | None = None):
    """Per tag (in ``TAGS`` order) of the photos ``idx`` (all by default; repeats allowed, as a bootstrap
    draw makes them): (score, baseline, evaluated). Categorical: accuracy against the share the majority
    class gets; ranked: pairwise ranking accuracy on informative pairs (values differ) against 0.5."""
    idx = np.arange(len(labels.paths)) if idx is None else np.asarray(idx)
    cat_col = {t.name: i for i, t in enumerate(categorical_tags())}
    rank_col = {t.name: i for i, t in enumerate(ranked_tags())}
    rows = []
    for j, t in enumerate(TAGS):
        if t.name in cat_col:
            c = cat_col[t.name]
            y = labels.categorical[idx, c]
            ok = y != MISSING_CLASS
            pred = outs[j][idx].argmax(axis=1) if outs else np.array([])
            rows.append((float((pred[ok] == y[ok]).mean()) if ok.any() else math.nan,
                         float((y[ok] == majority[c]).mean()) if ok.any() else math.nan, int(ok.sum())))
        else:
            v = labels.ranked[idx, rank_col[t.name]]
            s = outs[j][idx] if outs else np.array([])
            i1, i2 = np.triu_indices(len(v), k=1)
            informative = ~np.isnan(v[i1]) & ~np.isnan(v[i2]) & (v[i1] != v[i2])
            a, b = i1[informative], i2[informative]
            correct = np.sign(s[a] - s[b]) == np.sign(v[a] - v[b])
            rows.append((float(correct.mean()) if len(a) else math.nan, 0.5, int(len(a))))
    return rows


def evaluate_pretext(model: PretextModel, heldout: PhotoSet, train_labels: ExifLabels,
                     max_patches: int = 64) -> pd.DataFrame:
    """Per tag: held-out accuracy (categorical) or pairwise ranking accuracy on informative pairs
    (ranked), next to the baseline a model without image information would reach."""
    outs = image_outputs(model.eval(), heldout, max_patches)
    scores = tag_scores(outs, heldout.labels, majority_classes(train_labels))
    rows = [{"tag": t.name, "kind": t.kind,
             "metric": "accuracy" if t.kind == "categorical" else "pairwise ranking accuracy",
             "evaluated": n, "score": score, "baseline": baseline,
             "baseline_kind": "majority class of the training photos" if t.kind == "categorical"
             else "chance on informative pairs"}
            for t, (score, baseline, n) in zip(TAGS, scores)]
    table = pd.DataFrame(rows)
    table["gain"] = table["score"] - table["baseline"]
    return table


def run_pretext(paths, records, config: PretextConfig, out_dir: str | Path, label_config: LabelConfig | None = None,
                resume: bool = False, progress: bool = True):
    """Split, decode, train and evaluate: one pretext run from a list of photos, from Python or the CLI."""
    train_idx, hold_idx = split_indices(len(paths), config.holdout_fraction, config.seed)
    val_idx = np.array([], dtype=int)
    if config.validation_fraction > 0:
        keep, val = split_indices(len(train_idx), config.validation_fraction, config.seed + 1)
        train_idx, val_idx = train_idx[keep], train_idx[val]
    train = load_photos([paths[i] for i in train_idx], [records[i] for i in train_idx], config.max_side, label_config)
    heldout = load_photos([paths[i] for i in hold_idx], [records[i] for i in hold_idx], config.max_side,
                          label_config, vocabularies=train.labels.vocabularies)
    validation = load_photos([paths[i] for i in val_idx], [records[i] for i in val_idx], config.max_side,
                             label_config, vocabularies=train.labels.vocabularies) if len(val_idx) else None
    result = train_pretext(config, train, out_dir, resume=resume, progress=progress, validation=validation)
    if int(os.environ.get("RANK", "0")) != 0:
        return result, None, train, heldout  # under torchrun only rank 0 evaluates
    model, _, _ = load_pretext(trained_checkpoint(out_dir) if validation is not None else result.checkpoint)
    table = evaluate_pretext(model, heldout, train.labels, config.eval_max_patches)
    return result, table, train, heldout


__all__ = ["LossMonitor", "PretextConfig", "PhotoSet", "PretextModel", "TrainResult", "evaluate_pretext", "load_photos",
           "load_pretext", "majority_classes", "make_batch", "monitored_loss", "trained_checkpoint", "pair_batch", "pretext_loss", "pretext_step", "ranking_loss", "run_pretext",
           "split_indices", "tag_scores", "train_pretext"]
