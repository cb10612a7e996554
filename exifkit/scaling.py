"""The data-scaling study: how much do more camera photos (and more generated images) buy?

One design, read from a profile's ``[study.scaling]`` table:

* the camera photos are split once by file into a **pool** (nested training subsets are its prefixes,
  so every subset holds the smaller ones), **validation** photos (the only ones that choose anything:
  the recipe and the early-stopping step), the profile's **held-out** photos (the camera reals of the
  test suite) and the photos of some **camera models** that no subset contains;
* every subset trains the same number of steps under every seed, logging the pretext loss of the
  validation, held-out and unseen-model photos along the way;
* every run, and a randomly initialised network per seed, is scored the same way: per-tag pretext
  metrics on both held-out views, a linear probe and the one-class detector on the format-aligned test
  suite, each with a bootstrap interval over test images and a paired difference from random init;
* the other axis holds one extractor fixed and grows the generated training images instead.

Every finished step leaves a file (``done.json``, ``evaluation.csv``) and is skipped on a rerun; an
interrupted training run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .binary import (aligned_validation, load_binary, load_training_images, train_binary,
                     validation_split)
from .data.suites import camera_entries, split_indices
from .bundle import default_bundle
from .detect import Detector
from .errors import SettingError
from .exif.read import read_many
from .exif.schema import TAGS
from .features import PatchMemo, cached_outputs
from .loglinear import __doc__ as assumptions, fit_table
from .metrics import paired_difference, seen_unseen_means, suite_table
from .model.heads import head_sizes
from .perturb import load_protocols
from .pretext import (LossMonitor, PhotoSet, PretextModel, image_outputs, load_photos, load_pretext, majority_classes,
                      tag_scores, train_pretext)
from .probe import FeatureSet, choose_strength, feature_set, fit_probe
from .train import load_checkpoint, trained_checkpoint

RANDOM_INIT = "random init"


@dataclass(frozen=True)
class ScalingConfig:
    """One study. ``pretext`` overrides the profile's ``[pretext]`` for every run (the fixed budget);
    ``variants`` (name -> pretext overrides, plus ``keep = "lowest_loss"`` for early stopping) are tried
    at the largest size and first seed, and ``recipe`` names the one the study uses (empty: the variant
    with the lowest validation loss)."""

    sizes: tuple[int, ...] = (20, 40, 80, 160, 300)
    seeds: tuple[int, ...] = (0, 1)
    validation_photos: int = 40
    unseen_model_photos: int = 48
    pretext: dict = field(default_factory=dict)
    variants: dict = field(default_factory=lambda: {"base": {}})
    recipe: str = ""
    monitor_every: int = 25
    monitor_pairs: int = 32
    monitor_patches: int = 16
    pretext_eval_patches: int = 32  # grid patches per held-out photo for the per-tag metrics
    eval_max_patches: int = 16  # per image for probe and one-class features
    bootstrap: int = 500
    oneclass: dict = field(default_factory=dict)  # overrides of the profile's one-class setting
    fake_fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    fake_extractor: str = "reference"  # the fixed extractor of the fake axis: "reference" or "study"
    binary: dict = field(default_factory=dict)  # overrides of the profile's [binary] for the fake axis
    targets: tuple[float, ...] = (0.8, 0.9)

    @classmethod
    def from_profile(cls, profile) -> "ScalingConfig":
        if "scaling" not in profile.study:
            raise SettingError(f"profile {profile.name} defines no [study.scaling] table (see the extended profile's)")
        raw = dict(profile.study["scaling"])
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingError(f"unknown [study.scaling] setting(s) in profile {profile.name}: {sorted(unknown)}")
        for key in ("sizes", "seeds", "fake_fractions", "targets"):
            if key in raw:
                raw[key] = tuple(raw[key])
        config = cls(**raw)
        if sorted(config.sizes) != list(config.sizes) or len(set(config.sizes)) != len(config.sizes):
            raise SettingError(f"[study.scaling] sizes must increase: {list(config.sizes)}")
        if config.recipe and config.recipe not in config.variants:
            raise SettingError(f"[study.scaling] recipe {config.recipe!r} is not one of the variants "
                               f"{sorted(config.variants)}")
        return config

    def training_key(self, variant: str) -> str:
        """Variants that train alike (early stopping only changes which step is kept) share one run:
        the first variant with the same training overrides names it."""
        strip = {k: v for k, v in self.variants[variant].items() if k != "keep"}
        for name, overrides in self.variants.items():
            if {k: v for k, v in overrides.items() if k != "keep"} == strip:
                return name
        return variant

    def keeps(self, variant: str) -> str:
        keep = self.variants[variant].get("keep", "last")
        if keep not in ("last", "lowest_loss"):
            raise SettingError(f"variant {variant!r}: keep must be 'last' or 'lowest_loss', not {keep!r}")
        return keep


# ---------------------------------------------------------------- the photos

def camera_model(entry) -> str:
    return f"{entry.make.strip().lower()} / {entry.model.strip().lower()}"


@dataclass
class StudyPhotos:
    """The camera photos of a study, by role (manifest entries)."""

    pool: list  # in nesting order: a subset of n photos is pool[:n]
    validation: list
    heldout: list
    unseen_models: list

    def subset(self, size: int) -> list:
        if size > len(self.pool):
            raise SettingError(f"a subset of {size} photos asked for, but the pool holds {len(self.pool)}")
        return self.pool[:size]

    def roles(self) -> dict[str, list]:
        return {"pool": self.pool, "validation": self.validation, "held-out": self.heldout,
                "unseen models": self.unseen_models}

    def check_disjoint(self) -> None:
        """Every role disjoint from every other by sha256, and no unseen-model photo's camera model in the
        pool: the study's claims rest on this."""
        seen: dict[str, str] = {}
        for role, entries in self.roles().items():
            for e in entries:
                if e.sha256 in seen and seen[e.sha256] != role:
                    raise ValueError(f"{e.path} is in both {seen[e.sha256]} and {role}")
                seen[e.sha256] = role
        pool_models = {camera_model(e) for e in self.pool}
        clash = sorted({camera_model(e) for e in self.unseen_models} & pool_models)
        if clash:
            raise ValueError(f"camera models both in the pool and in the unseen-model view: {clash[:5]}")

    def describe(self) -> pd.DataFrame:
        return pd.DataFrame([{"role": role, "photos": len(entries), "camera models": len({camera_model(e) for e in entries})}
                             for role, entries in self.roles().items()])


def study_photos(manifest, holdout_fraction: float, seed: int, config: ScalingConfig) -> StudyPhotos:
    """Split the camera photos: the profile's held-out photos stay as they are (the test suite uses them);
    from the rest, whole camera models (drawn under ``seed``) until ``unseen_model_photos`` are set aside,
    then ``validation_photos`` at random; the pool is what remains, in a seeded order."""
    cameras = camera_entries(manifest)
    train_idx, hold_idx = split_indices(len(cameras), holdout_fraction, seed)
    side = [cameras[i] for i in train_idx]
    rng = np.random.default_rng([seed, 24])
    models = sorted({camera_model(e) for e in side})
    unseen: set[str] = set()
    count = 0
    for m in (models[i] for i in rng.permutation(len(models))):
        if count >= config.unseen_model_photos:
            break
        unseen.add(m)
        count += sum(camera_model(e) == m for e in side)
    unseen_photos = [e for e in side if camera_model(e) in unseen]
    rest = [e for e in side if camera_model(e) not in unseen]
    order = rng.permutation(len(rest))
    validation = [rest[i] for i in order[:config.validation_photos]]
    pool = [rest[i] for i in order[config.validation_photos:]]
    photos = StudyPhotos(pool, validation, [cameras[i] for i in hold_idx], unseen_photos)
    photos.check_disjoint()
    if config.sizes and config.sizes[-1] > len(pool):
        raise SettingError(f"the largest subset ({config.sizes[-1]} photos) exceeds the pool ({len(pool)} photos "
                           f"after {len(validation)} validation and {len(unseen_photos)} unseen-model photos)")
    return photos


@dataclass
class LoadedPhotos:
    """The decoded photos of every role, labelled with the pool's vocabularies (one label space for every
    subset, so a tag's accuracy means the same thing at every size)."""

    pool: object  # PhotoSet, in nesting order
    sets: dict  # role -> PhotoSet (validation, held-out, unseen models)

    def subset(self, size: int):

        p, lab = self.pool, self.pool.labels
        labels = replace(lab, paths=lab.paths[:size], categorical=lab.categorical[:size], ranked=lab.ranked[:size],
                         values=lab.values[:size])
        return PhotoSet(p.paths[:size], p.images[:size], labels, p.failures)


def load_study_photos(photos: StudyPhotos, store, label_config, max_side: int) -> LoadedPhotos:

    def load(entries, vocabularies=None):
        paths = [store.path(e) for e in entries]
        return load_photos(paths, read_many(paths), max_side, label_config, vocabularies)

    pool = load(photos.pool)
    if len(pool) < len(photos.pool):
        raise SettingError(f"{len(photos.pool) - len(pool)} pool photos did not decode; nested subsets need them "
                           f"all:\n{pool.failures.to_markdown()}")
    vocab = pool.labels.vocabularies
    return LoadedPhotos(pool, {"validation": load(photos.validation, vocab), "held-out": load(photos.heldout, vocab),
                               "unseen models": load(photos.unseen_models, vocab)})


# ---------------------------------------------------------------- training

def run_dir(out: Path, training_key: str, size: int, seed: int) -> Path:
    return Path(out) / "runs" / training_key / f"photos={size},seed={seed}"


def run_config(profile, config: ScalingConfig, variant: str, seed: int):
    overrides = {**config.pretext, **{k: v for k, v in config.variants[variant].items() if k != "keep"}}
    return profile.pretext_config(**{**overrides, "seed": seed, "validation_fraction": 0.0})


def train_run(profile, config: ScalingConfig, photos: LoadedPhotos, variant: str, size: int, seed: int, out: Path,
              progress: bool = True) -> Path:
    """Train one (variant, size, seed) run unless ``done.json`` says it finished this budget; resumes a
    partial one, and continues a finished one when the study's steps were raised (its score is redone)."""
    folder = run_dir(out, config.training_key(variant), size, seed)
    cfg = run_config(profile, config, variant, seed)
    if (folder / "done.json").exists():
        done = json.loads((folder / "done.json").read_text())["steps"]
        if done == cfg.steps:
            return folder
        if done > cfg.steps:
            raise SettingError(f"{folder} finished {done} steps, more than the study's {cfg.steps}; "
                               "raise the budget or use another --out")
        (folder / "done.json").unlink()  # a larger budget: resume the finished run up to it
        (folder / "evaluation.csv").unlink(missing_ok=True)
    monitor = LossMonitor(photos.sets, every=config.monitor_every, pairs=config.monitor_pairs,
                          n_patches=config.monitor_patches, seed=profile.seed, keep_lowest="validation")
    result = train_pretext(cfg, photos.subset(size), folder, resume=True, progress=progress, monitor=monitor)
    (folder / "done.json").write_text(json.dumps({"variant": config.training_key(variant), "photos": size,
                                                  "seed": seed, "steps": cfg.steps, "batch_pairs": cfg.batch_pairs,
                                                  "seconds_last_segment": round(result.seconds, 1),
                                                  "pairs_per_s": round(result.pairs_per_second, 2)}, indent=2) + "\n")
    return folder


def kept_checkpoint(folder: Path, keep: str) -> Path:
    return Path(folder) / ("lowest_loss.pt" if keep == "lowest_loss" else "last.pt")


def choose_recipe(config: ScalingConfig, out: Path) -> tuple[str, pd.DataFrame]:
    """(recipe, table): each variant's validation loss at the step it keeps (the last one, or its lowest);
    the recipe is the profile's if named, else the lowest. Only validation photos decide."""
    size, seed = config.sizes[-1], config.seeds[0]
    rows = []
    for name in config.variants:
        folder = run_dir(out, config.training_key(name), size, seed)
        log = pd.read_csv(folder / "heldout_loss.csv")
        step = (int(load_checkpoint(kept_checkpoint(folder, config.keeps(name)))["step"])
                if config.keeps(name) == "lowest_loss" else int(log["step"].max()))
        at = log[log["step"] == step].iloc[-1]
        rows.append({"variant": name, "overrides": json.dumps(config.variants[name]), "kept step": step,
                     "validation loss": float(at["validation"]), "held-out loss": float(at.get("held-out", math.nan))})
    table = pd.DataFrame(rows)
    chosen = config.recipe or str(table.loc[table["validation loss"].idxmin(), "variant"])
    table["recipe"] = table["variant"] == chosen
    return chosen, table


# ---------------------------------------------------------------- evaluation

@dataclass
class Evaluator:
    """What every run is scored on, prepared once: held-out photo sets, probe and one-class data."""

    profile: object
    config: ScalingConfig
    photos: LoadedPhotos
    splits: object
    store: object
    cache_root: Path
    protocol: object
    probe_sets: tuple  # (train, validation) samples
    memo: object = None  # aligned patches, decoded once for every network scored

    @classmethod
    def build(cls, profile, config, photos, splits, store, cache_root):

        bcfg = profile.binary_config()
        return cls(profile, config, photos, splits, store, Path(cache_root), load_protocols()["aligned_jpeg95"],
                   validation_split(splits.binary_train, bcfg.validation_fraction, profile.seed), PatchMemo())

    def outputs(self, model) -> dict:
        """Per-photo head outputs of both held-out views, probe and one-class test scores."""
        model.eval()
        cfg = self.config
        out = {"tags": {view: image_outputs(model, self.photos.sets[view], cfg.pretext_eval_patches)
                        for view in ("held-out", "unseen models")}}
        ext = model.extractor
        train, val, test = (feature_set(ext, s, self.store, self.cache_root, cfg.eval_max_patches, self.protocol,
                                        self.memo)[0]
                            for s in (*self.probe_sets, self.splits.suite.samples()))
        strength, _ = choose_strength(train, val)
        out["probe"] = test.by_key(fit_probe(train.features, train.labels, strength).predict_proba(test.features)[:, 1])
        reals, _ = cached_outputs(ext, self.splits.oneclass_train, self.store, self.cache_root,
                                  max_patches=cfg.eval_max_patches, protocol=self.protocol, progress=False,
                                  memo=self.memo)
        det = self.profile.oneclass_detector(**cfg.oneclass).fit(np.stack(list(reals.values())))
        keys = [s.key for s in test.samples]
        out["oneclass"] = dict(zip(keys, (-det.score_samples(test.features)).tolist()))
        return out

    def metric_rows(self, out: dict, train_labels, reference: dict | None) -> list[dict]:
        """Long rows (metric, value, interval, and the paired difference from ``reference``'s outputs)."""
        cfg, rows = self.config, []
        majority = majority_classes(train_labels)
        rng = np.random.default_rng([self.profile.seed, 31])
        for view, outs in out["tags"].items():
            labels = self.photos.sets[view].labels
            n = len(labels.paths)
            draws = [rng.integers(n, size=n) for _ in range(cfg.bootstrap)]
            point = _with_gain(_tag_rows(outs, labels, majority))
            boot = np.array([_with_gain(_tag_rows(outs, labels, majority, d))[:, :2] for d in draws])
            ref_point = ref_boot = None
            if reference is not None:
                ref_outs = reference["tags"][view]
                ref_point = _with_gain(_tag_rows(ref_outs, labels, majority))
                ref_boot = np.array([_with_gain(_tag_rows(ref_outs, labels, majority, d))[:, :2] for d in draws])
            for k, tag in enumerate([t.name for t in TAGS] + ["mean gain over baselines"]):
                row = {"metric": f"pretext {view}: {tag}", "value": point[k, 0], "baseline": point[k, 1],
                       "evaluated": int(point[k, 2]), **_ci(boot[:, k, 0])}
                if tag == "mean gain over baselines":
                    row["baseline"] = 0.0
                if ref_point is not None:
                    row.update(_difference(point[k, 0] - ref_point[k, 0], boot[:, k, 0] - ref_boot[:, k, 0]))
                rows.append(row)
        suite = self.splits.suite
        means = seen_unseen_means(suite, out["probe"], 0.5, cfg.bootstrap, self.profile.seed, columns=("auc",))
        diff = (paired_difference(suite, out["probe"], reference["probe"], cfg.bootstrap, self.profile.seed)
                if reference is not None else None)
        for _, m in means.iterrows():
            row = {"metric": f"probe auc, {m['generators']} generators", "value": m["mean auc"], "baseline": 0.5,
                   "evaluated": int(m["n"]), **_parse_ci(m.get("mean auc 95% CI"))}
            rows.append({**row, **_diff_row(diff, m["generators"])})
        table = suite_table(suite, out["oneclass"], 0.0, cfg.bootstrap, self.profile.seed, columns=("auc",))
        mean = table.iloc[-1]
        diff = (paired_difference(suite, out["oneclass"], reference["oneclass"], cfg.bootstrap, self.profile.seed)
                if reference is not None else None)
        rows.append({"metric": "one-class auc, all generators", "value": float(mean["auc"]), "baseline": 0.5,
                     "evaluated": len(table) - 1, **_parse_ci(mean.get("auc 95% CI")), **_diff_row(diff, "all")})
        return rows


def _tag_rows(outs, labels, majority, idx=None) -> np.ndarray:

    return np.array(tag_scores(outs, labels, majority, idx), dtype=float)


def _with_gain(rows: np.ndarray) -> np.ndarray:
    """The per-tag (score, baseline, evaluated) rows, then one row: the mean gain over the baselines."""
    gain = rows[:, 0] - rows[:, 1]
    mean = np.nanmean(gain) if np.isfinite(gain).any() else math.nan
    return np.vstack([rows, [mean, 0.0, np.isfinite(gain).sum()]])


def _ci(draws) -> dict:
    draws = np.asarray(draws, dtype=float)
    if not np.isfinite(draws).any():
        return {"ci_low": math.nan, "ci_high": math.nan}
    return {"ci_low": float(np.nanpercentile(draws, 2.5)), "ci_high": float(np.nanpercentile(draws, 97.5))}


def _difference(point: float, draws) -> dict:
    ci = _ci(draws)
    return {"vs_random": point, "vs_random_low": ci["ci_low"], "vs_random_high": ci["ci_high"]}


def _parse_ci(text) -> dict:
    if not isinstance(text, str):
        return {"ci_low": math.nan, "ci_high": math.nan}
    lo, hi = (float(v) for v in text.strip("[]").split(","))
    return {"ci_low": lo, "ci_high": hi}


def _diff_row(diff, generators: str) -> dict:
    if diff is None or generators not in set(diff["generators"]):
        return {}
    d = diff[diff["generators"] == generators].iloc[0]
    ci = _parse_ci(d.get("95% CI"))
    return {"vs_random": float(d["auc difference"]), "vs_random_low": ci["ci_low"], "vs_random_high": ci["ci_high"]}


def random_model(profile, config: ScalingConfig, photos: LoadedPhotos, seed: int):
    """The random-init comparison of seed ``seed``: the study's architecture and heads, untrained."""
    cfg = run_config(profile, config, next(iter(config.variants)), seed)
    sizes = head_sizes({k: len(v.classes) for k, v in photos.pool.labels.vocabularies.items()})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return PretextModel(cfg.extractor, sizes).eval()


def evaluate_run(evaluator: Evaluator, folder: Path, model, train_labels, reference: dict | None, meta: dict,
                 outputs: dict | None = None) -> pd.DataFrame:
    """The run's rows (``evaluation.csv`` in its folder; read back instead of recomputed on a rerun)."""
    path = Path(folder) / "evaluation.csv"
    if path.exists():
        return pd.read_csv(path)
    rows = evaluator.metric_rows(outputs or evaluator.outputs(model), train_labels, reference)
    frame = pd.DataFrame([{**meta, **r} for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


# ---------------------------------------------------------------- the generated-image axis

def nested_fake_masks(samples, fractions, seed: int) -> dict[float, np.ndarray]:
    """Per fraction, a mask over ``samples`` keeping every real and that share of each fake group (at
    least one image), the smaller shares inside the larger ones: one order per group, cut at each share."""
    labels = np.array([s.label for s in samples])
    groups = np.array([s.group for s in samples])
    orders = {}
    for g in sorted(set(groups[labels == 1])):
        idx = np.flatnonzero((groups == g) & (labels == 1))
        orders[g] = np.random.default_rng([seed, 29, sum(map(ord, g))]).permutation(idx)
    masks = {}
    for f in sorted(fractions):
        keep = labels == 0
        for idx in orders.values():
            keep[idx[:max(1, int(round(len(idx) * f)))]] = True
        masks[f] = keep
    return masks


def fake_axis(profile, config: ScalingConfig, extractor, splits, store, out: Path, progress: bool = False,
              evaluator: Evaluator | None = None) -> pd.DataFrame:
    """Probe and binary detector against nested shares of the training fakes, ``extractor`` held fixed
    (``fake_axis.csv``; each fraction's binary run is resumed or skipped like the pretext runs)."""
    path = Path(out) / "fake_axis.csv"
    if path.exists():
        return pd.read_csv(path)
    ev = evaluator or Evaluator.build(profile, config, None, splits, store, Path(out) / "feature_cache")
    train_samples, val_samples = ev.probe_sets
    bcfg = profile.binary_config(**config.binary)
    bcfg = replace(bcfg, extractor=extractor.config)
    masks = nested_fake_masks(train_samples, config.fake_fractions, profile.seed)
    suite, test_samples = splits.suite, splits.suite.samples()
    train, val, test = (feature_set(extractor, s, store, ev.cache_root, config.eval_max_patches, ev.protocol, ev.memo)[0]
                        for s in (train_samples, val_samples, test_samples))
    images, labels, failures = load_training_images(train_samples, store)
    if failures or len(train.samples) != len(train_samples):
        raise SettingError("some binary training images did not decode; nested fake subsets need them all:\n"
                           + failures.to_markdown())
    held, _ = aligned_validation(bcfg, val_samples, store)
    rows = []
    for fraction, mask in masks.items():
        strength, _ = choose_strength(_subset(train, mask), val)
        probe = fit_probe(train.features[mask], train.labels[mask], strength)
        scores = {"probe": test.by_key(probe.predict_proba(test.features)[:, 1])}
        folder = Path(out) / "fake_axis" / f"fakes={fraction:g}"
        kept = np.flatnonzero(mask)
        result = train_binary(bcfg, extractor, [images[i] for i in kept], labels[kept], folder, resume=True,
                              progress=progress, validation=held)
        model = load_binary(trained_checkpoint(folder), bcfg.extractor)
        scores["binary"], _ = cached_outputs(model, test_samples, store, ev.cache_root,
                                             max_patches=config.eval_max_patches, protocol=ev.protocol,
                                             progress=False, memo=ev.memo)
        for detector, sc in scores.items():
            means = seen_unseen_means(suite, sc, 0.5, config.bootstrap, profile.seed, columns=("auc",))
            for _, m in means.iterrows():
                rows.append({"detector": detector, "fraction": fraction, "training fakes": int(labels[kept].sum()),
                             "metric": f"{detector} auc, {m['generators']} generators", "value": m["mean auc"],
                             **_parse_ci(m.get("mean auc 95% CI")),
                             "binary seconds": round(result.seconds, 1) if detector == "binary" else math.nan})
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def _subset(fs, mask):

    return FeatureSet([s for s, m in zip(fs.samples, mask) if m], fs.features[mask])


# ---------------------------------------------------------------- the whole study

@dataclass
class StudyResult:
    runs: pd.DataFrame  # one row per (extractor, size, seed, metric)
    variants: pd.DataFrame
    recipe: str
    losses: pd.DataFrame  # held-out pretext loss along the way, every run
    photos: StudyPhotos
    fake_axis: pd.DataFrame | None = None


def run_study(profile, store, out: str | Path, *, fake_axis_too: bool = True, score: bool = True,
              progress: bool = True, log=print) -> StudyResult | None:
    """Train and score everything the profile's ``[study.scaling]`` asks for, skipping what is done
    (``score=False``: train only, for a machine that scores later)."""
    out = Path(out)
    config = ScalingConfig.from_profile(profile)
    base = profile.pretext_config()
    design = study_photos(store.manifest, base.holdout_fraction, profile.seed, config)
    photos = load_study_photos(design, store, profile.label_config(), base.max_side)
    largest, first = config.sizes[-1], config.seeds[0]
    t0 = time.perf_counter()
    for variant in config.variants:
        train_run(profile, config, photos, variant, largest, first, out, progress)
    recipe, variants = choose_recipe(config, out)
    log(f"recipe: {recipe} (variants at {largest} photos, seed {first}, {time.perf_counter() - t0:.0f} s)")
    for seed in config.seeds:
        for size in config.sizes:
            train_run(profile, config, photos, recipe, size, seed, out, progress)
            log(f"trained {recipe} photos={size} seed={seed} ({time.perf_counter() - t0:.0f} s)")
    if not score:
        return None
    splits = profile.splits(store.manifest)
    evaluator = Evaluator.build(profile, config, photos, splits, store, out / "feature_cache")
    frames, losses = [], []
    key = config.training_key(recipe)
    steps = run_config(profile, config, recipe, first).steps
    for seed in config.seeds:
        rand = random_model(profile, config, photos, seed)
        pending = [s for s in config.sizes if not (run_dir(out, key, s, seed) / "evaluation.csv").exists()]
        ref = evaluator.outputs(rand) if pending or not (run_dir(out, RANDOM_INIT, 0, seed) / "evaluation.csv").exists() \
            else None
        frames.append(evaluate_run(evaluator, run_dir(out, RANDOM_INIT, 0, seed), rand, photos.pool.labels, None,
                                   {"extractor": RANDOM_INIT, "recipe": "", "photos": 0, "seed": seed, "steps": 0},
                                   outputs=ref))
        for size in config.sizes:
            folder = run_dir(out, key, size, seed)
            if not (folder / "evaluation.csv").exists():

                state = load_checkpoint(kept_checkpoint(folder, config.keeps(recipe)))
                model = PretextModel(run_config(profile, config, recipe, seed).extractor, state["head_sizes"])
                model.load_state_dict(state["model"])
                meta = {"extractor": "pretext", "recipe": recipe, "photos": size, "seed": seed, "steps": steps,
                        "kept_step": int(state["step"])}
                frames.append(evaluate_run(evaluator, folder, model, photos.subset(size).labels, ref, meta))
            else:
                frames.append(pd.read_csv(folder / "evaluation.csv"))
            log(f"scored photos={size} seed={seed} ({time.perf_counter() - t0:.0f} s)")
            losses.append(pd.read_csv(folder / "heldout_loss.csv").assign(photos=size, seed=seed))
    runs = pd.concat(frames, ignore_index=True)
    fakes = None
    if fake_axis_too:
        fakes = fake_axis(profile, config, fake_axis_extractor(profile, config, out, recipe), splits, store, out,
                          evaluator=evaluator)
        log(f"fake axis done ({time.perf_counter() - t0:.0f} s)")
    return StudyResult(runs, variants, recipe, pd.concat(losses, ignore_index=True), design, fakes)


def fake_axis_extractor(profile, config: ScalingConfig, out: Path, recipe: str):
    """The extractor the fake axis holds fixed: the shipped reference network, or the study's own largest run."""
    if config.fake_extractor == "reference":

        return Detector.from_bundle(default_bundle(profile.root)).extractor.eval()
    if config.fake_extractor != "study":
        raise SettingError(f"[study.scaling] fake_extractor must be 'reference' or 'study', not {config.fake_extractor!r}")

    folder = run_dir(out, config.training_key(recipe), config.sizes[-1], config.seeds[0])
    return load_pretext(kept_checkpoint(folder, config.keeps(recipe)))[0].extractor.eval()


def save_study(result: StudyResult, config: ScalingConfig, out: str | Path) -> dict[str, Path]:
    """The committed record: every run's rows, the variants, the loss curves, the fit (CSV and Markdown)."""
    out = Path(out)
    paths = {name: out / f"{name}.csv" for name in ("runs", "variants", "heldout_loss", "fit", "photos")}
    result.runs.to_csv(paths["runs"], index=False)
    result.variants.to_csv(paths["variants"], index=False)
    result.losses.to_csv(paths["heldout_loss"], index=False)
    result.photos.describe().to_csv(paths["photos"], index=False)
    fit = fit_table(result.runs[result.runs["extractor"] == "pretext"], config.targets)
    fit.to_csv(paths["fit"], index=False)
    paths["fit.md"] = out / "fit.md"
    paths["fit.md"].write_text(fit_markdown(fit, result.recipe))
    return paths


def fit_markdown(fit: pd.DataFrame, recipe: str) -> str:

    cols = [c for c in ("metric", "points", "slope", "slope_low", "slope_high", "fitted at largest",
                        "photos for 0.8", "photos for 0.8 low", "photos for 0.8 high",
                        "photos for 0.9", "photos for 0.9 low", "photos for 0.9 high", "note") if c in fit]
    return (f"# Data-scaling fit (recipe: {recipe})\n\nEach metric against log2(camera photos), every trained run a "
            "point; `slope` is the gain per doubling with its 95 % interval.\n\n"
            + fit[cols].to_markdown(index=False, floatfmt=".3g") + "\n\n## Assumptions\n\n"
            + " ".join(assumptions.split()) + "\n")


HEADLINE_METRICS = ("probe auc, unseen generators", "probe auc, seen generators", "one-class auc, all generators",
                    "pretext held-out: mean gain over baselines", "pretext unseen models: mean gain over baselines")


def headline(runs: pd.DataFrame, fit: pd.DataFrame, metrics=HEADLINE_METRICS) -> pd.DataFrame:
    """Per headline metric: the mean over seeds at the smallest and largest size, random init, the gain
    per doubling with its interval, and what the fit extrapolates to (or why it cannot)."""
    fits = fit.set_index("metric")
    rows = []
    for metric in metrics:
        part = runs[runs["metric"] == metric]
        if part.empty or metric not in fits.index:
            continue
        trained, rand = part[part["photos"] > 0], part[part["photos"] == 0]
        by_size = trained.groupby("photos")["value"].agg(["mean", "min", "max"])
        f = fits.loc[metric]
        row = {"metric": metric, f"at {by_size.index[0]} photos": by_size["mean"].iloc[0],
               f"at {by_size.index[-1]} photos": by_size["mean"].iloc[-1],
               "seed range at largest": f"[{by_size['min'].iloc[-1]:.3f}, {by_size['max'].iloc[-1]:.3f}]",
               "random init": rand["value"].mean() if len(rand) else math.nan,
               "gain per doubling": f["slope"],
               "95% CI": f"[{f['slope_low']:+.3f}, {f['slope_high']:+.3f}]" if np.isfinite(f["slope"]) else ""}
        for target in (0.8, 0.9):
            key = f"photos for {target:g}"
            if key in f and np.isfinite(f[key]):
                row[f"photos for {target:g} (95% CI)"] = f"{f[key]:,.0f} [{f[key + ' low']:,.0f}, {f[key + ' high']:,.0f}]"
            elif "auc" in metric:
                row[f"photos for {target:g} (95% CI)"] = "cannot be extrapolated"
        rows.append(row)
    return pd.DataFrame(rows)
