"""Training sets and test suites built from a manifest.

A *sample* is a file plus an optional *view*: a crop box or a tile of the file. Two collections
need one: CNNDetection files carry a coloured border that encodes their label (cropped to
[56:304, 56:304] before any use) and the Stable Diffusion 1.5 files are 2x2 grids of 512 px tiles.

A *suite* is a named list of (real set, fake set, generator) pairs. Every real used for training
(one-class fitting or binary training) is disjoint from every real and fake used for testing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import MissingInputError
from .archive import safe_extract
from .images import load_rgb
from .manifest import DataStore, Entry, Manifest, sha256_file

CNNDETECTION_CROP = (56, 56, 304, 304)  # left, top, right, bottom: inside the label-coloured border
GRID_TILE = 512


@dataclass(frozen=True)
class Sample:
    entry: Entry
    label: int  # 0 real, 1 fake
    group: str  # generator for fakes, real source for reals
    view: tuple[int, int, int, int] | None = None  # crop box (left, top, right, bottom)

    @property
    def key(self) -> str:
        """Identity of the pixels: file hash plus view, used by the feature cache."""
        return self.entry.sha256 + ("" if self.view is None else "_" + "-".join(map(str, self.view)))

    @property
    def name(self) -> str:
        return self.entry.path + ("" if self.view is None else f"[{','.join(map(str, self.view))}]")


@lru_cache(maxsize=4)
def _decode_shared(path: Path) -> np.ndarray:
    """Files cut into several views (grid tiles) are decoded once for all their views."""
    image = load_rgb(path)
    image.setflags(write=False)
    return image


def load_sample(sample: Sample, store: DataStore) -> np.ndarray:
    if sample.view is None:
        return load_rgb(store.path(sample.entry))
    left, top, right, bottom = sample.view
    return _decode_shared(store.path(sample.entry))[top:bottom, left:right].copy()


@dataclass
class Pair:
    generator: str
    reals: list[Sample]
    fakes: list[Sample]
    seen_in_training: bool = False

    def formats(self) -> dict[str, dict[str, int]]:
        def count(samples):
            return dict(Counter(Path(s.entry.path).suffix.lower().lstrip(".") for s in samples))

        return {"real": count(self.reals), "fake": count(self.fakes)}


@dataclass
class Suite:
    name: str
    pairs: list[Pair]
    real_source: str = ""

    def samples(self) -> list[Sample]:
        seen, out = set(), []
        for p in self.pairs:
            for s in p.reals + p.fakes:
                if s.key not in seen:
                    seen.add(s.key)
                    out.append(s)
        return out

    def excluding(self, sha256s) -> "Suite":
        """The suite without any sample whose file is in ``sha256s`` (for instance the files a shipped
        model trained on); a pair left without reals or fakes is dropped."""
        drop = set(sha256s)
        pairs = []
        for p in self.pairs:
            reals = [s for s in p.reals if s.entry.sha256 not in drop]
            fakes = [s for s in p.fakes if s.entry.sha256 not in drop]
            if reals and fakes:
                pairs.append(Pair(p.generator, reals, fakes, p.seen_in_training))
        return Suite(self.name, pairs, self.real_source)

    def describe(self):
        import pandas as pd

        return pd.DataFrame([{"generator": p.generator, "seen in binary training": p.seen_in_training,
                              "reals": len(p.reals), "fakes": len(p.fakes),
                              "real formats": p.formats()["real"], "fake formats": p.formats()["fake"]}
                             for p in self.pairs])


@dataclass
class Splits:
    """Everything the detectors need from one profile's data."""

    oneclass_train: list[Sample]  # reals only
    binary_train: list[Sample]  # reals and fakes of the seen generators
    suite: Suite
    seen_generators: list[str] = field(default_factory=list)
    pretext_photos: list[Entry] = field(default_factory=list)  # the pretext side of the camera photos

    def training_sha256(self) -> set[str]:
        """Every file any model of this profile trains or validates on: pretext photos, one-class
        and binary training images."""
        return ({e.sha256 for e in self.pretext_photos} |
                {s.entry.sha256 for s in self.oneclass_train + self.binary_train})

    def excluding(self, sha256s) -> "Splits":
        """The same training sets with a test suite that leaves out the files in ``sha256s`` (what a
        model brought in from elsewhere trained on), so it is only tested on images it never saw."""
        return replace(self, suite=self.suite.excluding(sha256s))

    def with_seen(self, generators) -> "Splits":
        """The same sets with the test pairs' ``seen`` marks taken from another model's training
        generators (a shipped detector's, evaluated on this profile's suite)."""
        seen = set(generators)
        pairs = [Pair(p.generator, p.reals, p.fakes, p.generator in seen) for p in self.suite.pairs]
        return replace(self, suite=Suite(self.suite.name, pairs, self.suite.real_source), seen_generators=sorted(seen))

    def check_disjoint(self) -> None:
        test = {s.entry.sha256 for s in self.suite.samples()}
        for name, train in (("one-class training", self.oneclass_train), ("binary training", self.binary_train)):
            clash = [s.name for s in train if s.entry.sha256 in test]
            if clash:
                raise ValueError(f"{name} overlaps the test suite: {clash[:5]}")

    def composition(self):
        import pandas as pd

        rows = []
        for name, samples in (("one-class training", self.oneclass_train), ("binary training", self.binary_train),
                              ("test", self.suite.samples())):
            for (label, group), n in Counter((s.label, s.group) for s in samples).items():
                rows.append({"set": name, "label": "fake" if label else "real", "source": group, "images": n})
        return pd.DataFrame(rows).sort_values(["set", "label", "source"]).reset_index(drop=True)


def split_indices(n: int, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera photos split by file into (pretext training, held-out) index arrays, seeded. The held-out
    photos are the camera reals of the test suite, so the detectors never test on a pretext photo."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_hold = int(round(n * holdout_fraction))
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def camera_entries(manifest) -> list[Entry]:
    """The camera photos in manifest order: the order every split of them is defined on."""
    return [e for e in manifest if e.kind == "camera"]


def profile_splits(manifest, seen_generators, holdout_fraction: float, seed: int, name: str = "",
                   train_on_cameras: bool = False) -> Splits:
    cameras = camera_entries(manifest)
    train, hold = split_indices(len(cameras), holdout_fraction, seed)
    splits = build_splits(manifest, seen_generators, [cameras[i] for i in hold], name,
                          [cameras[i] for i in train] if train_on_cameras else None)
    splits.pretext_photos = [cameras[i] for i in train]
    return splits


def _halves(entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    ordered = sorted(entries, key=lambda e: e.path)
    mid = len(ordered) // 2
    return ordered[:mid], ordered[mid:]


def _family(entry: Entry) -> str:
    """The folder under ai/ names a generated collection (sentry_* folders hold several generators)."""
    parts = entry.path.split("/")
    return parts[1] if parts[0] == "ai" and len(parts) > 2 else entry.generator


def build_splits(manifest, seen_generators, camera_test: list[Entry] | None = None,
                 name: str = "", camera_train: list[Entry] | None = None) -> Splits:
    """Demo and extended suites from one rule set.

    - CNNDetection: per generator, the first half of the reals (sorted by path) trains, the second half
      of reals and fakes tests; fakes of ``seen_generators`` from the first half train the binary detector.
    - Other generated collections: one pair each, tested against held-out camera photos (``camera_test``)
      and, where the manifest has them, the second half of the natural (ImageNet) photos; SD 1.5 grids are
      split into their four tiles. A collection named in ``seen_generators`` is split by file like the
      CNNDetection ones (a grid's tiles stay together): first half trains, second half tests.
    - Natural photos' first half, and the pretext side of the camera photos (``camera_train``) when
      given, join the training reals of both detectors.
    """
    entries = [e for e in manifest if e.is_image]
    cnn = [e for e in entries if e.kind == "cnndetection_testset_web"]
    pairs, oc_train, bin_train = [], [], []
    seen = set(seen_generators)
    for gen in sorted({e.generator for e in cnn}):
        reals_tr, reals_te = _halves([e for e in cnn if e.generator == gen and e.label == "real"])
        fakes_tr, fakes_te = _halves([e for e in cnn if e.generator == gen and e.label == "fake"])
        crop = CNNDETECTION_CROP
        oc_train += [Sample(e, 0, "cnndetection real", crop) for e in reals_tr]
        bin_train += [Sample(e, 0, "cnndetection real", crop) for e in reals_tr]
        if gen in seen:
            bin_train += [Sample(e, 1, gen, crop) for e in fakes_tr]
        pairs.append(Pair(gen, [Sample(e, 0, "cnndetection real", crop) for e in reals_te],
                          [Sample(e, 1, gen, crop) for e in fakes_te], gen in seen))
    natural_tr, natural_te = _halves([e for e in entries if e.kind == "natural"])
    oc_train += [Sample(e, 0, "natural (ImageNet)") for e in natural_tr]
    bin_train += [Sample(e, 0, "natural (ImageNet)") for e in natural_tr]
    oc_train += [Sample(e, 0, "camera (pretext side)") for e in camera_train or []]
    bin_train += [Sample(e, 0, "camera (pretext side)") for e in camera_train or []]
    test_reals = [Sample(e, 0, "camera (held out)") for e in camera_test or []]
    test_reals += [Sample(e, 0, "natural (ImageNet)") for e in natural_te]
    generated = [e for e in entries if e.kind == "generated"]

    def views(files: list[Entry], family: str) -> list[Sample]:
        out = []
        for e in files:
            if "2x2 grid" in e.transform:
                out += [Sample(e, 1, family, (x, y, x + GRID_TILE, y + GRID_TILE))
                        for y in (0, GRID_TILE) for x in (0, GRID_TILE)]
            else:
                out.append(Sample(e, 1, family))
        return out

    for family in sorted({_family(e) for e in generated}):
        files = sorted((e for e in generated if _family(e) == family), key=lambda e: e.path)
        if family in seen:
            train_files, files = _halves(files)
            bin_train += views(train_files, family)
        pairs.append(Pair(family, test_reals, views(files, family), family in seen))
    real_source = ("CNNDetection pairs: the second half of each generator's own reals (LSUN/ImageNet/CelebA "
                   "photos as published with the CNNDetection test set); other generators: held-out camera "
                   "photos" + (" and the second half of the ImageNet sample" if natural_te else ""))
    splits = Splits(oc_train, bin_train, Suite(name, pairs, real_source), sorted(seen))
    splits.check_disjoint()
    return splits


def folder_suite(root: str | Path, name: str = "", seen=()) -> Suite:
    """A suite from the benchmark layout ``root/<generator>/{0_real,1_fake}/**`` (CNNDetection,
    AIGCDetectBenchmark, the authors' test sets). Files are hashed once so the feature cache can key on them."""
    root = Path(root)
    pairs = []
    for gen_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        real_dir, fake_dir = gen_dir / "0_real", gen_dir / "1_fake"
        if not (real_dir.is_dir() and fake_dir.is_dir()):
            continue

        def samples(folder, label):
            files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
            return [Sample(Entry(path=str(p.relative_to(root)), sha256=sha256_file(p), label=("fake" if label else "real")),
                           label, gen_dir.name if label else f"{gen_dir.name} real") for p in files]

        pairs.append(Pair(gen_dir.name, samples(real_dir, 0), samples(fake_dir, 1), gen_dir.name in set(seen)))
    if not pairs:
        raise MissingInputError(f"{root}: no <generator>/0_real and <generator>/1_fake folders")
    return Suite(name or root.name, pairs, f"the 0_real folder of each subset under {root}")


def find_benchmark_root(folder: str | Path) -> Path:
    """The folder under ``folder`` whose subfolders hold ``0_real``/``1_fake`` (archives differ in how
    deep they nest it)."""
    folder = Path(folder)
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if any((d / "0_real").is_dir() and (d / "1_fake").is_dir() for d in candidate.iterdir() if d.is_dir()):
            return candidate
    raise MissingInputError(f"{folder}: no <subset>/0_real and <subset>/1_fake folders inside")


def official_inputs(store: DataStore, extract_to: str | Path, seen=("progan",)):
    """For evaluating the authors' released checkpoints: their test suite and one-class training reals,
    extracted safely from the archives of the ``paper`` manifest."""
    extract_to = Path(extract_to)

    def unpack(rel: str, name: str) -> Path:
        target = extract_to / name
        if not (target / ".complete").exists():  # an interrupted extraction is redone, never trusted
            safe_extract(store.path(next(e for e in store.manifest if e.path == rel)), target)
            (target / ".complete").touch()
        return target

    test_root = find_benchmark_root(unpack("sdaie/test_sets.zip", "test_sets"))
    suite = folder_suite(test_root, "paper", seen)
    reals_dir = unpack("sdaie/oneclass_real_train.zip", "oneclass_real_train")
    files = sorted(p for p in reals_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    reals = [Sample(Entry(path=str(p.relative_to(reals_dir)), sha256=sha256_file(p), label="real"), 0,
                    "one-class real") for p in files]
    suite_store = DataStore(Manifest("paper-test", [s.entry for s in suite.samples()]), embedded_root=test_root,
                            cache_dir=extract_to)
    reals_store = DataStore(Manifest("paper-reals", [s.entry for s in reals]), embedded_root=reals_dir,
                            cache_dir=extract_to)
    return suite, suite_store, reals, reals_store
