"""The binary detector: a classifier of the extractor's architecture, regularised towards the frozen
pretext extractor.

Loss = cross-entropy + alpha * (sum over five stages of the mean squared difference between the
trainable and the frozen extractor): the four feature-map stages and the per-patch covariance vectors.
The regulariser keeps the classifier's intermediate representation close to the camera-trace features,
so it cannot drift to whatever shortcut separates the few training generators.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, augment
from .data.images import FailureReport, ImageLoadError
from .data.manifest import DataStore
from .data.stream import ImageStream, batch_loader
from .data.suites import Sample, load_sample
from .errors import MissingInputError, SettingError
from .features import cached_outputs, weights_hash
from .metrics import balanced_threshold, class_accuracy, macro_auc, seen_unseen_means, suite_table
from .model.extractor import Extractor, ExtractorConfig, ExtractorOutput
from .patches import grid_patches, random_patches, to_tensor
from .perturb import load_protocols
from .report import save_table
from .train import (Every, Session, autocast, batch_positions, keep_if_best, load_checkpoint, run_loop,
                    trained_checkpoint)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- model

@dataclass(frozen=True)
class BinaryConfig:
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    alpha: float = 0.05
    init: str = "random"  # the authors'; "pretext": start the trainable extractor from the frozen one's weights
    lr: float = 1e-3
    steps: int = 1000
    batch_images: int = 100  # per process
    n_patches: int = 16
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    eval_max_patches: int = 256
    balance_classes: bool = False  # draw the minority class as often as the majority (by repetition)
    validation_fraction: float = 0.0  # of the training images, per class and source: sets the threshold
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Streaming from shards only (``exifkit binary train --data``): DataLoader workers and the shuffle
    # buffer, both part of the order of the images, so a resume keeps them.
    workers: int = 0
    shuffle_buffer: int = 1000
    streaming: bool = False  # the profile's data cannot be held in memory: train only from shards
    device: str = "auto"
    precision: str = "auto"  # "bf16" autocast where the hardware runs it natively, else "fp32"

    @classmethod
    def from_dict(cls, raw: dict, extractor: ExtractorConfig) -> "BinaryConfig":
        raw = dict(raw)
        aug = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.pop("augment", {}).items()}
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingError(f"unknown binary setting(s): {sorted(unknown)}")
        return cls(extractor=extractor, augment=AugmentConfig(**aug), **raw)


def stage_distances(a: ExtractorOutput, b: ExtractorOutput) -> list[torch.Tensor]:
    """Mean squared difference at each regularised stage: the feature maps, then the patch vectors."""
    return [F.mse_loss(x, y) for x, y in zip(a.stages + [a.patch_vectors], b.stages + [b.patch_vectors])]


def _without_teacher(module, state_dict, prefix, *args) -> None:
    """Checkpoints and bundles written while the teacher was a submodule carry it under ``frozen.``:
    they load, the teacher's copy is dropped."""
    for key in [k for k in state_dict if k.startswith(prefix + "frozen.")]:
        del state_dict[key]


class BinaryModel(nn.Module):
    """The trainable network only: an extractor and a linear head. The frozen pretext extractor it is
    regularised towards (the teacher) is not part of it, so checkpoints and bundles hold only what was
    trained; the trainer holds the teacher beside it."""

    def __init__(self, config: ExtractorConfig):
        super().__init__()
        self.extractor = Extractor(config)
        self.classifier = nn.Linear(self.extractor.feature_dim, 2)
        self.register_load_state_dict_pre_hook(_without_teacher)

    def forward(self, x: torch.Tensor):
        out = self.extractor(x)
        return self.classifier(out.feature), out

    def fake_probability_of(self, features: torch.Tensor) -> torch.Tensor:
        """P(fake) = 1 - softmax[:, 0] from image features, shape (B, 1)."""
        return 1 - torch.softmax(self.classifier(features), dim=1)[:, :1]

    @torch.inference_mode()
    def fake_probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(fake) of patch sets (B, N, 3, P, P), shape (B, 1)."""
        return self.fake_probability_of(self.extractor.embed(x))

    #: What :meth:`predict` returns, as a scikit-learn classifier names them: 0 real, 1 AI-generated
    #: (the label convention of :mod:`exifkit.metrics`).
    classes_ = np.array([0, 1])

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        """(P(real), P(AI-generated)) of each patch set, shape (B, 2), columns in :attr:`classes_` order,
        as scikit-learn's classifiers give them. It is trained by :func:`train_binary`, not ``fit``."""
        fake = self.fake_probability(x)[:, 0].float().cpu().numpy()
        return np.stack([1 - fake, fake], axis=1)

    def predict(self, x: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
        """1 (AI-generated) where P(fake) > ``threshold``, else 0. The threshold a run ships is set on its
        validation images (:func:`validation_threshold`), not 0.5."""
        return (self.predict_proba(x)[:, 1] > threshold).astype(int)


def binary_loss(logits, labels, out, ref, alpha: float):
    ce = F.cross_entropy(logits, labels)
    dists = stage_distances(out, ref) if ref is not None else []
    reg = sum(dists) if dists else logits.sum() * 0.0
    return ce + alpha * reg, ce, reg, dists


# ---------------------------------------------------------------- training

@dataclass
class BinaryTrainResult:
    checkpoint: Path
    metrics: Path
    seconds: float
    images_per_second: float


def load_training_images(samples: list[Sample], store: DataStore):
    """Decode the training samples once; failures are reported, not dropped silently."""
    images, labels, failures = [], [], FailureReport()
    for s in samples:
        try:
            images.append(load_sample(s, store))
            labels.append(s.label)
        except ImageLoadError as exc:
            failures.add(exc)
    return images, np.array(labels, dtype=np.int64), failures


def balanced(images: list[np.ndarray], labels: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The minority class repeated (whole copies first, then its first items) until both are equal:
    an epoch then holds as many fakes as reals. The arrays are shared, not copied."""
    idx = [np.flatnonzero(labels == c) for c in (0, 1)]
    if any(len(i) == 0 for i in idx):
        return images, labels
    small, large = sorted(idx, key=len)
    extra = np.resize(small, len(large) - len(small))
    order = np.concatenate([large, small, extra])
    return [images[i] for i in order], labels[order]


def validation_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(training, validation) from the binary training samples, the same fraction of every (label, source)
    group, whole files together (the tiles of one grid never straddle the split)."""
    if fraction <= 0:
        return list(samples), []
    by_group: dict[tuple[int, str], list[str]] = {}
    for s in samples:
        files = by_group.setdefault((s.label, s.group), [])
        if s.entry.sha256 not in files:
            files.append(s.entry.sha256)
    held = set()
    for (label, group), files in sorted(by_group.items()):
        rng = np.random.default_rng([seed, 11, label, sum(map(ord, group))])
        n = int(round(len(files) * fraction))
        held.update(files[i] for i in rng.permutation(len(files))[:n])
    return [s for s in samples if s.entry.sha256 not in held], [s for s in samples if s.entry.sha256 in held]


def training_data(config: BinaryConfig, splits, store: DataStore):
    """What a binary run trains on, the same from Python and the CLI: the profile's binary training
    images minus the validation share, decoded once; and the validation samples."""
    train, validation = validation_split(splits.binary_train, config.validation_fraction, config.seed)
    images, labels, failures = load_training_images(train, store)
    return images, labels, failures, validation


def binary_batch(images: list[np.ndarray], labels: np.ndarray, step: int, config: BinaryConfig,
                 rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's augmented patch sets and labels at ``step``, reproducible from the seed."""
    sets, ys = [], []
    for epoch, k, item in batch_positions(len(images), step, config.batch_images, config.seed, rank, world):
        rng = np.random.default_rng([config.seed, epoch, k, 3])
        sets.append(random_patches(augment(images[item], rng, config.augment), config.n_patches,
                                   config.extractor.patch_size, rng))
        ys.append(labels[item])
    return to_tensor(np.stack(sets)), torch.as_tensor(np.array(ys))


def _batches(images, labels, config: BinaryConfig, start: int, ctx, device):
    """Batches ``{"x": patch sets, "y": labels}`` of steps ``start``, ``start + 1``, ...: from decoded images in memory, or
    streamed from a packed binary collection (``images`` a :class:`~exifkit.data.shards.Shards`, ``labels``
    None) by ``config.workers`` DataLoader workers."""
    if labels is not None:
        for step in range(start, config.steps):
            x, y = binary_batch(images, labels, step, config, ctx.rank, ctx.world_size)
            yield {"x": x, "y": y}
        return

    stream = ImageStream(images, config, rank=ctx.rank, world=ctx.world_size, workers=config.workers,
                         start_step=start, buffer=config.shuffle_buffer)
    yield from batch_loader(stream, pin_memory=device.type == "cuda")


@dataclass
class ValidationSet:
    """Training-side validation images, perturbed and cut into evaluation patches once, so the trainer
    can score them at every checkpoint without decoding again."""
    patches: list[torch.Tensor]
    labels: np.ndarray
    groups: list[str]
    pairing: dict[str, list[str]] | None = None  # fake group -> the real groups it is scored against


def suite_pairing(samples: list[Sample]) -> dict[str, list[str]]:
    """Which validation reals each fake group is scored against, as the test suites pair them (see
    :mod:`exifkit.data.suites`): fakes of a collection that publishes its own reals (CNNDetection) meet
    those reals only; other generated images meet the reals of collections without fakes (camera and
    natural photos). Scoring CNNDetection fakes against camera photos would reward telling the
    collections apart, which the test never asks."""
    reals, fakes = {}, {}
    for s in samples:
        (fakes if s.label else reals).setdefault(s.entry.kind, set()).add(s.group)
    standalone = sorted(g for kind, gs in reals.items() if kind not in fakes for g in gs)
    return {g: sorted(reals[kind]) if kind in reals else standalone for kind, gs in fakes.items() for g in gs}


def validation_set(samples: list[Sample], store: DataStore, patch_size: int, max_patches: int | None,
                   protocol=None):
    """(ValidationSet, FailureReport): each sample under ``protocol`` (None: the raw file), every patch."""
    patches, labels, groups, failures = [], [], [], FailureReport()
    for s in samples:
        try:
            image = load_sample(s, store)
        except ImageLoadError as exc:
            failures.add(exc)
            continue
        image = image if protocol is None else protocol(image, s)
        patches.append(to_tensor(grid_patches(image, patch_size, max_patches)))
        labels.append(s.label)
        groups.append(s.group)
    return ValidationSet(patches, np.array(labels, dtype=np.int64), groups, suite_pairing(samples)), failures


def aligned_validation(config: BinaryConfig, samples: list[Sample], store: DataStore):
    """The run's validation images under the format-aligned protocol, the view the shipped threshold is
    set on: what :func:`train_binary_runs` and the CLI hand to :func:`train_binary`."""
    return validation_set(samples, store, config.extractor.patch_size, config.eval_max_patches,
                          load_protocols()["aligned_jpeg95"])


def validation_auc(model: "BinaryModel", validation: ValidationSet) -> float:
    """Macro ROC-AUC (see :func:`exifkit.metrics.macro_auc`) of P(fake) on the validation images, each
    fake group against the reals of its ``pairing`` (:func:`suite_pairing`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores = [float(model.fake_probability(x[None].to(device))[0, 0]) for x in validation.patches]
    model.train(was_training)
    return macro_auc(validation.labels, scores, validation.groups, validation.pairing)


def _as_float(out: ExtractorOutput | None) -> ExtractorOutput | None:
    if out is None:
        return None
    return ExtractorOutput(out.feature.float(), [s.float() for s in out.stages], out.patch_vectors.float())


def frozen_teacher(extractor: Extractor) -> Extractor:
    """The pretext extractor as the regulariser's fixed reference: eval mode, no gradients."""
    for p in extractor.parameters():
        p.requires_grad_(False)
    return extractor.eval()


def binary_step(net: nn.Module, teacher: Extractor | None, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, alpha: float, precision: str = "fp32"):
    """One optimisation step (what the trainer and the benchmark time); losses in fp32. Without a
    ``teacher`` there is no regulariser (and no stage distances to log)."""
    with autocast(x.device, precision):
        logits, feats = net(x)
        ref = None
        if teacher is not None:
            with torch.no_grad():
                ref = teacher(x)
    logits, feats, ref = logits.float(), _as_float(feats), _as_float(ref)
    loss, ce, reg, dists = binary_loss(logits, y, feats, ref, alpha)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, loss, ce, reg, dists


def train_binary(config: BinaryConfig, pretext: Extractor, images, labels: np.ndarray | None,
                 out_dir: str | Path, resume: bool = False, progress: bool = True,
                 validation: ValidationSet | None = None) -> BinaryTrainResult:
    """Train (or continue) a binary run on decoded ``images`` and their ``labels``, or streamed from a
    packed binary collection (``images`` a :class:`~exifkit.data.shards.Shards`, ``labels`` None);
    ``out_dir/last.pt`` every ``checkpoint_every`` steps. With ``validation`` images, each checkpoint
    also scores them (``validation.csv``, paired macro AUC) and the best step's weights are kept as
    ``best.pt``: the step is chosen on training-side data, never on tests."""
    if config.streaming and labels is not None:
        raise SettingError("this profile trains from a packed real/fake set, not from images in memory: pack it with "
                           "`exifkit data pack SET --binary --out SHARDS` and run `exifkit binary train --data SHARDS`")
    if config.init not in ("random", "pretext"):
        raise SettingError(f"init must be 'random' or 'pretext', not {config.init!r}")
    if config.balance_classes and labels is not None:
        images, labels = balanced(images, labels)
    elif config.balance_classes:
        log.warning("balance_classes is not applied to a streamed set: its class mix is the one packed")
    session = Session.open(out_dir, config.device, config.seed, config.precision)
    out, ctx = session.out, session.ctx
    teacher = frozen_teacher(pretext).to(session.device)
    model = BinaryModel(config.extractor)
    if config.init == "pretext":
        model.extractor.load_state_dict(pretext.state_dict())
    model.to(session.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    config_dict = {**asdict(config), "extractor": asdict(config.extractor), "teacher": weights_hash(teacher)}
    defaults = {**asdict(BinaryConfig(extractor=config.extractor)),  # asdict turns the extractor into a dict too
                "teacher": config_dict["teacher"]}  # checkpoints from before it was recorded
    start = session.resume(model, optimizer, config_dict, defaults, resume, progress=False)

    def weights(step: int) -> dict:
        return {"step": step, "model": model.state_dict(), "config": config_dict}

    periodic = ()
    if ctx.is_main and validation is not None and len(validation.labels):
        val_log = session.log("validation.csv", ["step", "paired_macro_auc"])

        def validate(step: int) -> None:
            score = validation_auc(model, validation)
            val_log.append({"step": step, "paired_macro_auc": round(score, 5)})
            keep_if_best(out / "best.pt", score, {**weights(step), "validation_metric": "paired macro AUC"})

        periodic = (Every(config.checkpoint_every, validate),)
    stages = [f"dist_stage{i + 1}" for i in range(len(config.extractor.convs_per_stage))] + ["dist_patch_vectors"]
    step_teacher = teacher if config.alpha > 0 or ctx.is_main else None  # rank 0 logs the distances

    def step(net, batch):
        x, y = batch["x"], batch["y"]
        logits, loss, ce, reg, dists = binary_step(net, step_teacher, optimizer, x, y, config.alpha, session.precision)
        return {"loss": loss.detach(), "ce": ce.detach(), "reg": reg.detach(),
                "acc": (logits.argmax(1) == y).float().mean(), **dict(zip(stages, (d.detach() for d in dists)))}

    seconds = run_loop(session, name="binary", model=model, optimizer=optimizer,
                       batches=_batches(images, labels, config, start, ctx, session.device), step=step,
                       steps=config.steps, items_per_step=config.batch_images * ctx.world_size, unit="image",
                       fields=["step", "loss", "ce", "reg", "acc", "images_per_s", "seconds"] + stages, payload=weights,
                       log_every=config.log_every, checkpoint_every=config.checkpoint_every, periodic=periodic,
                       progress=progress)
    trained = (config.steps - start) * config.batch_images * ctx.world_size
    return BinaryTrainResult(trained_checkpoint(out), out / "metrics.csv", seconds, trained / seconds if seconds else 0.0)


def load_binary(path: str | Path, config: ExtractorConfig | None = None) -> BinaryModel:
    """One of our binary checkpoints, in eval mode, built with the extractor configuration it stores;
    a ``config`` given that is not that one is refused. Checkpoints of either layout load."""
    state = load_checkpoint(path)
    stored = ExtractorConfig.from_dict(state["config"]["extractor"])
    if config is not None and config != stored:
        changed = sorted(k for k in asdict(stored) if getattr(stored, k) != getattr(config, k))
        raise SettingError(f"{path}: trained with another extractor than the one asked for "
                           f"({', '.join(f'{k} {getattr(stored, k)} not {getattr(config, k)}' for k in changed)})")
    model = BinaryModel(stored)
    model.load_state_dict(state["model"])
    return model.eval()


def from_official(official) -> BinaryModel:
    """The authors' released binary detector (see :func:`exifkit.model.load_official`) as a BinaryModel."""
    model = BinaryModel(official.extractor.config)
    model.extractor.load_state_dict(official.extractor.state_dict())
    model.classifier.load_state_dict(official.classifier.state_dict())
    return model.eval()


def validation_threshold(model: BinaryModel, validation: list[Sample], store: DataStore, cache_root: Path,
                         max_patches: int | None, protocol=None, progress: bool = True) -> dict:
    """The shipped threshold on P(fake): the balanced-accuracy optimum on the run's *validation* images
    (training side, never the test suite), with the accuracies it gives there."""
    probs, failures = cached_outputs(model, validation, store, cache_root, max_patches=max_patches, protocol=protocol,
                                     progress=progress)
    kept = [s for s in validation if s.key in probs]
    labels = np.array([s.label for s in kept])
    scores = np.array([probs[s.key] for s in kept])
    threshold = balanced_threshold(labels, scores)
    return {"threshold": threshold, "validation_images": len(kept), "validation_failures": len(failures),
            "protocol": None if protocol is None else protocol.id,
            "real_acc": class_accuracy(labels, scores, threshold, 0),
            "fake_acc": class_accuracy(labels, scores, threshold, 1),
            "real_acc_at_0.5": class_accuracy(labels, scores, 0.5, 0),
            "fake_acc_at_0.5": class_accuracy(labels, scores, 0.5, 1)}


# ---------------------------------------------------------------- runs: the authors' alpha and its ablation

def run_names(alpha: float) -> list[str]:
    """The runs a study trains: the regularised one, then the alpha = 0 ablation (once, if alpha is 0)."""
    return list(dict.fromkeys((f"alpha={alpha:g}", "alpha=0")))


@dataclass
class BinaryRuns:
    """Trained (or shipped) detectors by run name, each with its validation record and training log."""
    models: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)  # run name -> metrics.csv as a DataFrame

    @property
    def main(self) -> str:
        """The regularised run (the first); the others are ablations."""
        return next(iter(self.models))


def train_binary_runs(config: BinaryConfig, pretext: Extractor, splits, store: DataStore, out: Path, *,
               resume: bool = False, cache_root: Path | None = None, protocol=None) -> BinaryRuns:
    """Train every run of :func:`run_names` on the same images (or reuse finished runs with ``resume``),
    keep each run's validated step and set its threshold on the validation images under ``protocol``;
    ``out/binary/<run>/threshold.json`` records it for the evaluation and the bundle."""
    images, labels, failures, validation = training_data(config, splits, store)
    held, held_failures = aligned_validation(config, validation, store)
    for report in (failures, held_failures):
        if report:
            print(report.to_markdown())
    print(f"{len(images)} training images ({int(labels.sum())} fake), {len(validation)} kept for validation")
    runs = BinaryRuns()
    for name in run_names(config.alpha):
        run_dir = Path(out) / "binary" / name
        cfg = type(config)(**{**config.__dict__, "alpha": float(name.split("=")[1])})
        result = train_binary(cfg, pretext, images, labels, run_dir, resume=resume, validation=held)
        print(f"{name}: {result.seconds:.0f} s, {result.images_per_second:.1f} images/s, kept {result.checkpoint.name}")
        runs.models[name] = load_binary(result.checkpoint, cfg.extractor)
        runs.thresholds[name] = (validation_threshold(runs.models[name], validation, store,
                                                      cache_root or Path(out) / "feature_cache",
                                                      cfg.eval_max_patches, protocol)
                                 if validation else {"threshold": 0.5, "validation_images": 0})
        (run_dir / "threshold.json").write_text(json.dumps(runs.thresholds[name], indent=2) + "\n")
        runs.logs[name] = pd.read_csv(result.metrics)
    return runs


def load_binary_runs(out: Path, alpha: float, config: ExtractorConfig) -> BinaryRuns:
    """The runs :func:`train_binary_runs` left in ``out/binary``, read back for evaluation and the bundle."""
    runs = BinaryRuns()
    for name in run_names(alpha):
        run = Path(out) / "binary" / name
        if not (trained_checkpoint(run).exists() and (run / "threshold.json").exists()):
            raise MissingInputError(f"{run}: no trained binary run with its threshold here; train it first "
                                    "(`exifkit binary train`, or `make reproduce`)")
        runs.models[name] = load_binary(trained_checkpoint(run), config)
        runs.thresholds[name] = json.loads((run / "threshold.json").read_text())
        if (run / "metrics.csv").exists():
            runs.logs[name] = pd.read_csv(run / "metrics.csv")
    return runs


def bundled_binary_runs(detector) -> BinaryRuns:
    """A bundle's detectors (see ``Detector.shipped_binaries``), with the training logs of the run that
    made it when they lie beside the bundle (the extended reference run's layout)."""
    runs = BinaryRuns()
    for name, (model, record) in detector.shipped_binaries().items():
        runs.models[name], runs.thresholds[name] = model, record
        log = Path(detector.root).parent / "binary" / name / "metrics.csv"
        if log.exists():
            runs.logs[name] = pd.read_csv(log)
    return runs


def evaluate_runs(runs: BinaryRuns, suite, store: DataStore, cache_root: Path, protocols: dict, *,
                  max_patches: int | None, bootstrap: int = 0, seed: int = 0, tables_dir: Path | None = None):
    """Per-generator tables and P(fake) of every run under every protocol (name -> Protocol, None for the
    raw files), at each run's validation threshold; tables saved as ``binary_alphaA_PROTOCOL``."""
    tables, scores = {}, {}
    for name, model in runs.models.items():
        for pname, protocol in protocols.items():
            probs, failures = cached_outputs(model, suite.samples(), store, cache_root, max_patches=max_patches,
                                             protocol=protocol)
            if failures:
                print(failures.to_markdown())
            scores[name, pname] = probs
            tables[name, pname] = suite_table(suite, probs, runs.thresholds[name]["threshold"], bootstrap, seed)
            if tables_dir is not None:
                save_table(tables[name, pname].round(4), tables_dir, f"binary_{name.replace('=', '')}_{pname}")
    return tables, scores


def seen_unseen_summary(suite, runs: BinaryRuns, scores: dict, bootstrap: int = 0, seed: int = 0):
    """Seen against unseen generator means of every (run, protocol), with intervals."""
    summary = pd.concat([seen_unseen_means(suite, probs, runs.thresholds[name]["threshold"], bootstrap, seed)
                         .assign(run=name, protocol=pname) for (name, pname), probs in scores.items()],
                        ignore_index=True)
    return summary[["run", "protocol"] + [c for c in summary.columns if c not in ("run", "protocol")]]
