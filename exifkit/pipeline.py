"""The stages from a profile's data to what it ships, each with explicit inputs and outputs, callable
from Python and from the command line (``exifkit pretext train``, ``binary train``, ``bundle build``):

- :func:`train_pretext_stage` / :func:`train_binary_stage`: a profile's pretext run and binary run, from
  its own images or from packed shards, into the folders the later stages read;
- :func:`choose_extractor` / :func:`evaluation_inputs`: which extractor an evaluation reads (a profile's
  own pretext run or a bundle's) and the test splits without the files its models trained on;
- :func:`trained_detectors` / :func:`official_detectors`: the fitted one-class detector and the binary
  runs of a results folder, or the authors' released checkpoints;
- :func:`ship_bundle`: those detectors saved as ``results/<profile>/bundle`` with their validation
  records, training budget and training files; :func:`write_reference_scores` beside it;
- :func:`build_bundle`: all of it from a results folder, and the model card where the evaluation tables
  are there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .binary import (BinaryRuns, BinaryTrainResult, aligned_validation, bundled_binary_runs, from_official,
                     load_binary, load_binary_runs, train_binary, training_data, validation_split)
from .bundle import TRAINING_FILES, BundleError, default_bundle, save_bundle
from .checkout import find_root
from .config import data_store, load_profile
from .data.images import FailureReport
from .data.shards import Shards
from .data.suites import Splits, official_inputs
from .detect import Detector
from .errors import MissingInputError, SettingError
from .exif.read import read_many
from .features import cached_outputs
from .model import load_official
from .model.extractor import Extractor, count_trainable
from .modelcard import training_budget, write_model_card
from .oneclass import OneClassDetector, saved_detector, validation_accuracy
from .pretext import TrainResult, load_pretext, run_pretext, train_pretext
from .train import trained_checkpoint


@dataclass
class PretextStage:
    result: TrainResult
    heldout: pd.DataFrame | None  # per-tag scores on held-out photos; None when streamed or on a rank > 0
    failures: list[FailureReport]  # photos that could not be read, training and held-out


def train_pretext_stage(profile, out: str | Path | None = None, *, data: str | Path | None = None, mirrors=(),
                        resume: bool = False, progress: bool = True, **overrides) -> PretextStage:
    """The profile's pretext run in ``out`` (default ``results/<profile>/pretext``), ``overrides`` applied to
    its config: from packed shards when ``data`` is given (the profiles that stream require it), else from
    its camera photos, split by file, with the held-out table."""
    config = profile.pretext_config(**overrides)
    out = Path(out) if out else profile.results_dir() / "pretext"
    if config.streaming and data is None:
        raise SettingError(f"the {profile.name} profile trains from packed shards: `exifkit data pack PHOTOS --out "
                           "SHARDS`, then add --data SHARDS")
    if data is not None:
        return PretextStage(train_pretext(config, Shards.open(data), out, resume=resume, progress=progress), None, [])
    store = data_store(profile, mirrors=mirrors)
    paths = [store.path(e) for e in store.manifest if e.kind == "camera"]
    result, table, train, heldout = run_pretext(paths, read_many(paths), config, out, profile.label_config(),
                                                resume=resume, progress=progress)
    return PretextStage(result, table, [train.failures, heldout.failures])


def binary_run_folder(results: Path, config, profile) -> Path:
    """``results/binary/alpha=A``, the folder the evaluation stages read; another seed's run goes beside it
    (``alpha=A,seed=S``), so measuring the spread over seeds never overwrites the profile's run."""
    name = f"alpha={config.alpha:g}"
    return results / "binary" / (name if config.seed == profile.seed else f"{name},seed={config.seed}")


@dataclass
class BinaryStage:
    result: BinaryTrainResult
    training_images: int | None  # None when streamed
    validation_images: int
    failures: list[FailureReport]


def train_binary_stage(profile, out: str | Path | None = None, *, pretext: str | Path | None = None,
                       data: str | Path | None = None, mirrors=(), resume: bool = False, progress: bool = True,
                       **overrides) -> BinaryStage:
    """One binary run of the profile against the frozen extractor ``pretext`` (a pretext run or bundle
    folder; default the profile's own pretext run) into ``out`` (default :func:`binary_run_folder`): from a
    packed real/fake set when ``data`` is given, else from the profile's training images, keeping the
    validated step on the format-aligned validation images."""
    config = profile.binary_config(**overrides)
    if config.streaming and data is None:
        raise SettingError(f"the {profile.name} profile trains from a packed real/fake set: `exifkit data pack SET "
                           "--binary --out SHARDS`, then add --data SHARDS")
    results = profile.results_dir()
    frozen = choose_extractor(pretext or "pretext", results, profile.root).extractor
    if frozen.config != config.extractor:
        raise SettingError(f"the extractor of {pretext or results / 'pretext'} is not the {profile.name} "
                           "profile's architecture")
    out = Path(out) if out else binary_run_folder(results, config, profile)
    if data is not None:
        return BinaryStage(train_binary(config, frozen, Shards.open(data), None, out, resume=resume,
                                        progress=progress), None, 0, [])
    store = data_store(profile, mirrors=mirrors)
    images, labels, failures, validation = training_data(config, profile.splits(store.manifest), store)
    held, held_failures = aligned_validation(config, validation, store)
    result = train_binary(config, frozen, images, labels, out, resume=resume, progress=progress, validation=held)
    load_binary(result.checkpoint, config.extractor)  # the file loads back
    return BinaryStage(result, len(images), len(validation), [failures, held_failures])


@dataclass
class ExtractorChoice:
    """The extractor an evaluation or a training run reads: this profile's own pretext run, or the one a
    bundle ships (with that bundle's detectors and the files its models trained on)."""
    extractor: Extractor
    source: str  # "pretext" or the bundle folder
    vocabularies: dict | None = None
    detector: "Detector | None" = None  # the bundle's detectors
    trained_on: frozenset = frozenset()  # sha256 of every file the bundle's models trained on

    @property
    def from_bundle(self) -> bool:
        return self.detector is not None

    def trains_binary(self, profile: str) -> bool:
        """Whether the binary stage trains the binary detector against this extractor (an own pretext run,
        or the profile's own bundle, as the extended reference run does) or evaluate the one the bundle
        ships (a bundle trained on another profile: the reference bundle on the demo)."""
        return not self.from_bundle or self.detector.meta.get("profile") == profile



def choose_extractor(source: str | Path | None, results_dir: str | Path, root: str | Path | None = None, *,
                     profile: str | None = None) -> ExtractorChoice:
    """``"pretext"`` (or None): the trained_checkpoint of ``results_dir/pretext``; ``"reference"``: the
    shipped reference bundle; otherwise a bundle folder, or a pretext run folder. Given the ``profile``
    it will be evaluated on, a bundle made on another profile must list its training files, so that
    the evaluation can leave them out."""
    if source == "reference":
        source = default_bundle(Path(root) if root else find_root())
    run_dir = Path(results_dir) / "pretext" if source in (None, "pretext") else Path(source)
    if not (run_dir / "bundle.json").is_file():
        checkpoint = trained_checkpoint(run_dir)
        if not checkpoint.exists():
            raise MissingInputError(f"{checkpoint}: no pretext weights; train one with `exifkit pretext "
                                    "train`, or use the reference extractor (extractor = 'reference')")
        model, _, vocabularies = load_pretext(checkpoint)
        return ExtractorChoice(model.extractor, "pretext", vocabularies)
    detector = Detector.from_bundle(run_dir)
    trained_on = frozenset()
    if TRAINING_FILES in detector.meta["files"]:
        trained_on = frozenset((run_dir / TRAINING_FILES).read_text().split())
    elif profile is not None and detector.meta.get("profile") != profile:
        raise BundleError(f"{run_dir}: the bundle lists no training files ({TRAINING_FILES}), so an evaluation "
                          "cannot be kept disjoint from what its models trained on")
    return ExtractorChoice(detector.extractor, str(run_dir), detector=detector, trained_on=trained_on)


def evaluation_inputs(profile, store, results_dir: str | Path, source: str | Path | None = None, *,
                      mark_seen: bool = True):
    """(ExtractorChoice, Splits) for the evaluation stages: the ``source`` extractor (None: the profile's
    ``[evaluation] extractor``, else "pretext") and the profile's splits without the files its bundle
    trained on. With ``mark_seen``, a bundle whose detectors are evaluated as shipped also gives the
    generators that count as *seen*."""
    choice = choose_extractor(source or profile.evaluation.get("extractor", "pretext"), results_dir, profile.root,
                              profile=profile.name)
    splits = profile.splits(store.manifest).excluding(choice.trained_on)
    if mark_seen and not choice.trains_binary(profile.name):
        splits = splits.with_seen(choice.detector.meta.get("seen_generators", []))
    return choice, splits


@dataclass
class DetectorsUnderTest:
    """What the robustness evaluation and the bundle read: an extractor, its one-class detector and the binary runs
    (the main one first, then its ablation), with the splits and store they are tested on."""
    extractor: Extractor
    oneclass: OneClassDetector
    runs: "BinaryRuns"
    splits: object
    store: object
    vocabularies: dict
    source: str
    choice: ExtractorChoice | None = None  # None: the authors' released checkpoints

    @property
    def official(self) -> bool:
        return self.choice is None


def trained_detectors(profile, store, results_dir: str | Path, source: str | Path | None = None) -> DetectorsUnderTest:
    """The detectors the one-class and binary stages fitted or trained in ``results_dir`` (or the bundle's, where its
    binary detectors are evaluated as shipped), on the profile's test suite."""
    out = Path(results_dir)
    choice, splits = evaluation_inputs(profile, store, out, source)
    gmm_file = saved_detector(out, "pretext", profile.shipped_oneclass)
    if not gmm_file.exists():
        raise MissingInputError(f"{gmm_file}: no fitted one-class detector here; fit it first "
                                "(exifkit.oneclass.evaluate_and_save, or `make reproduce`)")
    runs = (load_binary_runs(out, profile.binary_config().alpha, choice.extractor.config)
            if choice.trains_binary(profile.name) else bundled_binary_runs(choice.detector))
    vocabularies = choice.vocabularies or (choice.detector.meta.get("vocabularies", {}) if choice.from_bundle else {})
    return DetectorsUnderTest(choice.extractor, OneClassDetector.load(gmm_file), runs, splits, store, vocabularies,
                              choice.source, choice)


def official_detectors(profile, store, results_dir: str | Path) -> DetectorsUnderTest:
    """The authors' released checkpoints on their 17 test subsets (the ``paper`` profile, no training).
    They released no mixture, so the one-class detector is fitted on their one-class training reals."""
    suite, suite_store, reals, reals_store = official_inputs(store, store.cache_dir / "extracted")
    entry = {e.path: e for e in store.manifest}
    extractor = load_official(store.path(entry["sdaie/checkpoints/backbone/pretrained.pth"])).extractor
    binary = from_official(load_official(store.path(entry["sdaie/checkpoints/bc/pretrained.pth"])))
    train, _ = cached_outputs(extractor, reals, reals_store, Path(results_dir) / "feature_cache",
                              max_patches=profile.evaluation.get("eval_max_patches"))
    gmm = profile.oneclass_detector().fit(np.stack(list(train.values())))
    runs = BinaryRuns({"released": binary}, {"released": {"threshold": 0.5}})
    return DetectorsUnderTest(extractor, gmm, runs, Splits(reals, [], suite, ["progan"]), suite_store, {}, "official")


def ship_bundle(det: DetectorsUnderTest, profile, results_dir: str | Path) -> Path:
    """Save ``det`` as ``results_dir/bundle`` with what the guard rails and the model card read: the
    one-class detector's accuracies on training-side validation images, the training budget and the sha256
    of every file the models saw. Released checkpoints ship without any of that (they trained elsewhere)."""
    out = Path(results_dir)
    main = det.runs.main
    binary, validation = det.runs.models[main], det.runs.thresholds[main]
    max_patches = profile.evaluation.get("eval_max_patches")
    if det.official:
        return save_bundle(out / "bundle", det.extractor, det.oneclass, binary, max_patches=max_patches,
                           profile=profile.name, manifest_sha256=det.store.manifest.sha256(),
                           binary_threshold=validation["threshold"])
    oneclass_validation = None
    if validation.get("validation_images"):
        cfg = profile.binary_config()
        fakes = [s for s in validation_split(det.splits.binary_train, cfg.validation_fraction, cfg.seed)[1] if s.label]
        oneclass_validation = validation_accuracy(det.oneclass, det.extractor, fakes, det.store, out / "feature_cache",
                                                  max_patches)
    choice = det.choice
    budget = training_budget(out, own_pretext=not choice.from_bundle, trains_binary=choice.trains_binary(profile.name),
                             binary_run=main, trainable=count_trainable(Extractor(det.extractor.config)),
                             inherited=(choice.detector.meta.get("budget") or {}) if choice.from_bundle else {})
    ablation = next(((det.runs.models[n], det.runs.thresholds[n]) for n in det.runs.models if n != main), None)
    return save_bundle(out / "bundle", det.extractor, det.oneclass, binary, max_patches=max_patches,
                       vocabularies=det.vocabularies, profile=profile.name, manifest_sha256=det.store.manifest.sha256(),
                       binary_threshold=validation["threshold"], binary_validation=validation,
                       binary_alpha=float(main.split("=")[1]), ablation=ablation,
                       trained_on=det.splits.training_sha256() | choice.trained_on,
                       extra={"oneclass_validation": oneclass_validation, "budget": budget,
                              "seen_generators": list(det.splits.seen_generators)})


def write_reference_scores(bundle: str | Path, demo_profile) -> Path:
    """Scores of a few committed demo files (one per kind) written next to a bundle, so a test can
    check that the shipped weights still give them on any machine: in float32, which every machine has."""
    store = data_store(demo_profile)
    picks, seen = [], set()
    for entry in store.manifest:
        if entry.is_image and entry.kind not in seen:
            seen.add(entry.kind)
            picks.append(entry)
    detector = Detector.from_bundle(bundle, precision="fp32")
    files = []
    for entry in picks:
        s = detector.score(store.path(entry))
        files.append({"path": str(store.path(entry).relative_to(demo_profile.root)), "sha256": entry.sha256,
                      "kind": entry.kind, "loglik": s.loglik, "p_fake": s.p_fake,
                      "oneclass_verdict": s.oneclass_verdict, "binary_verdict": s.binary_verdict})
    out = Path(bundle) / "reference_scores.json"
    out.write_text(json.dumps({"files": files}, indent=2) + "\n")
    return out


#: The evaluation tables the model card is written from (``results/<profile>/tables``).
CARD_TABLES = ("binary_seen_unseen", "binary_{run}_aligned_jpeg95", "binary_{run}_raw", "oneclass_summary",
               "oneclass_pretext_{oneclass}_aligned_jpeg95")


@dataclass
class BuiltBundle:
    path: Path
    reference_scores: Path
    model_card: Path | None
    missing_tables: list[str]


def build_bundle(profile, results_dir: str | Path | None = None, source: str | Path | None = None,
                 store=None) -> BuiltBundle:
    """The shipped bundle of a profile from its trained runs alone: the fitted one-class detector
    (``oneclass/``) and the binary runs (``binary/``) of ``results_dir`` (default ``results/<profile>``),
    saved as ``results_dir/bundle`` with the reference scores of a few committed demo files and, where
    the evaluation tables are there, the model card."""
    out = Path(results_dir) if results_dir else profile.results_dir()
    store = store or data_store(profile)
    det = trained_detectors(profile, store, out, source)
    bundle = ship_bundle(det, profile, out)
    scores = write_reference_scores(bundle, load_profile("demo", profile.root))
    names = [t.format(run=det.runs.main.replace("=", ""), oneclass=profile.shipped_oneclass) for t in CARD_TABLES]
    missing = [n for n in names if not (out / "tables" / f"{n}.csv").is_file()]
    card = None
    if not missing:
        write_model_card(bundle, profile, det, out / "tables")
        card = bundle / "MODEL_CARD.md"
    return BuiltBundle(bundle, scores, card, missing)

