"""The 14 pretext targets, their vocabularies, per-image labels and the EXIF card.

Order follows the authors' label vector: positions 1, 5, 6, 9, 10, 11 and 13 are categorical (Make,
Model, Flash, MeteringMode, ExposureMode, WhiteBalance, SceneCaptureType); the other seven are ranked.
The authors' code does not name its ranked tags. FocalLength and FNumber are confirmed by the paper,
ExposureTime and ISO by the group's earlier work; the remaining three are our choice, made on the
camera photos of ``../shared/data`` (498 files): among tags that are not a re-encoding of a tag already
chosen (ApertureValue = FNumber, ShutterSpeedValue = ExposureTime), the three whose share of
informative pairs (both values present and different) is highest: MaxApertureValue (0.58),
CompressedBitsPerPixel (0.39) and FocalLengthIn35mmFilm (0.09, ahead of DigitalZoomRatio 0.08 and
ExposureBiasValue 0.08). Which ranked tag sits at which of the authors' positions is also ours.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .read import ExifRecord, canonical_make

CATEGORICAL = "categorical"
RANKED = "ranked"
OTHER = "other"
MISSING_CLASS = -1

_METERING = {0: "unknown", 1: "average", 2: "center-weighted", 3: "spot", 4: "multi-spot",
             5: "pattern", 6: "partial", 255: "other"}
_EXPOSURE_MODE = {0: "auto", 1: "manual", 2: "auto bracket"}
_WHITE_BALANCE = {0: "auto", 1: "manual"}
_SCENE = {0: "standard", 1: "landscape", 2: "portrait", 3: "night"}


def _flash_name(code: int) -> str:
    fired = "fired" if code & 0x1 else "did not fire"
    mode = {0: "", 1: ", compulsory on", 2: ", compulsory off", 3: ", auto"}[(code >> 3) & 0x3]
    extra = ", no flash function" if code & 0x20 else ""
    return f"{code} ({fired}{mode}{extra})"


@dataclass(frozen=True)
class TagSpec:
    name: str
    kind: str
    exif_key: str
    why: str
    unit: str = ""

    def value(self, record: ExifRecord):
        """The tag's value for one image: a class string, a float, or None when missing."""
        raw = record.get(self.exif_key)
        if raw is None:
            return None
        if self.kind == RANKED:
            try:
                v = float(raw)
            except (TypeError, ValueError):
                return None
            if not math.isfinite(v) or v <= 0:  # 0 means "unknown" for every ranked tag here
                return None
            if self.name == "MaxApertureValue":
                v = 2.0 ** (v / 2.0)  # APEX to f-number, comparable with FNumber
            return v
        if self.name == "Make":
            return canonical_make(raw)
        if self.name == "Model":
            return str(raw) if not isinstance(raw, bytes) else None
        if not isinstance(raw, int):
            return None
        names = {"Flash": None, "MeteringMode": _METERING, "ExposureMode": _EXPOSURE_MODE,
                 "WhiteBalance": _WHITE_BALANCE, "SceneCaptureType": _SCENE}[self.name]
        if names is None:
            return _flash_name(raw)
        return names.get(raw, f"code {raw}")


TAGS: tuple[TagSpec, ...] = (
    TagSpec("FocalLength", RANKED, "FocalLength", "confirmed by the paper's abstract", "mm"),
    TagSpec("Make", CATEGORICAL, "Make", "authors' code, position 1"),
    TagSpec("FNumber", RANKED, "FNumber", "aperture; confirmed by the paper's abstract", "f-number"),
    TagSpec("ExposureTime", RANKED, "ExposureTime", "ranked in the group's earlier EXIF work", "s"),
    TagSpec("ISOSpeedRatings", RANKED, "ISOSpeedRatings", "ranked in the group's earlier EXIF work", "ISO"),
    TagSpec("Model", CATEGORICAL, "Model", "authors' code, position 5"),
    TagSpec("Flash", CATEGORICAL, "Flash", "authors' code, position 6"),
    TagSpec("MaxApertureValue", RANKED, "MaxApertureValue",
            "our choice: highest informative-pair share among the remaining tags", "f-number"),
    TagSpec("CompressedBitsPerPixel", RANKED, "CompressedBitsPerPixel",
            "our choice: second highest informative-pair share; the camera's JPEG setting", "bits/px"),
    TagSpec("MeteringMode", CATEGORICAL, "MeteringMode", "authors' code, position 9"),
    TagSpec("ExposureMode", CATEGORICAL, "ExposureMode", "authors' code, position 10"),
    TagSpec("WhiteBalance", CATEGORICAL, "WhiteBalance", "authors' code, position 11"),
    TagSpec("FocalLengthIn35mmFilm", RANKED, "FocalLengthIn35mmFilm",
            "our choice: third highest informative-pair share; with FocalLength it encodes sensor size", "mm"),
    TagSpec("SceneCaptureType", CATEGORICAL, "SceneCaptureType", "authors' code, position 13"),
)

#: Class counts of the authors' categorical heads (from the output sizes in their code).
AUTHORS_CLASS_COUNTS = {"Make": 7, "Model": 6, "Flash": 4, "MeteringMode": 6, "ExposureMode": 4,
                        "WhiteBalance": 2, "SceneCaptureType": 5}


def tag(name: str) -> TagSpec:
    return next(t for t in TAGS if t.name == name)


def categorical_tags(tags=TAGS) -> list[TagSpec]:
    return [t for t in tags if t.kind == CATEGORICAL]


def ranked_tags(tags=TAGS) -> list[TagSpec]:
    return [t for t in tags if t.kind == RANKED]


@dataclass
class Vocabulary:
    """Classes of one categorical tag: the most frequent values, then ``other`` for the rest."""

    tag: str
    classes: list[str]

    def index(self, value) -> int:
        if value is None:
            return MISSING_CLASS
        try:
            return self.classes.index(value)
        except ValueError:
            return self.classes.index(OTHER) if OTHER in self.classes else MISSING_CLASS


def build_vocabulary(tag_name: str, values, max_classes: int, min_count: int = 1) -> Vocabulary:
    """Keep at most ``max_classes`` classes; if values must be merged, the last class is ``other``."""
    return vocabulary_from_counts(tag_name, Counter(v for v in values if v is not None), max_classes, min_count)


def vocabulary_from_counts(tag_name: str, counts: Counter, max_classes: int, min_count: int = 1) -> Vocabulary:
    """:func:`build_vocabulary` from value counts (merged over the shards of a packed collection)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    kept = [v for v, c in ranked if c >= min_count]
    if len(kept) <= max_classes and len(kept) == len(ranked):
        return Vocabulary(tag_name, [str(v) for v in kept])
    return Vocabulary(tag_name, [str(v) for v in kept[: max_classes - 1]] + [OTHER])


@dataclass
class LabelConfig:
    """Class budget per categorical tag; defaults are the authors' head sizes."""

    max_classes: dict[str, int] = field(default_factory=lambda: dict(AUTHORS_CLASS_COUNTS))
    min_count: int = 1


@dataclass
class ExifLabels:
    """Pretext targets of a set of images; missing values are -1 (categorical) or NaN (ranked)."""

    paths: list[str]
    vocabularies: dict[str, Vocabulary]
    categorical: np.ndarray  # (n, 7) int64
    ranked: np.ndarray  # (n, 7) float64
    values: list[dict[str, object]]

    @property
    def categorical_names(self) -> list[str]:
        return [t.name for t in categorical_tags()]

    @property
    def ranked_names(self) -> list[str]:
        return [t.name for t in ranked_tags()]

    def subset(self, keep) -> "ExifLabels":
        """The photos where ``keep`` (a boolean per photo) is true, with the same vocabularies."""
        keep = np.asarray(keep, dtype=bool)
        return ExifLabels([p for p, k in zip(self.paths, keep) if k], self.vocabularies, self.categorical[keep],
                          self.ranked[keep], [v for v, k in zip(self.values, keep) if k])

    def makes(self) -> list[str]:
        """Each photo's Make, "(none)" where it has none."""
        return [v["Make"] or "(none)" for v in self.values]


def tag_values(records: list[ExifRecord], tags=TAGS) -> list[dict[str, object]]:
    return [{t.name: t.value(r) for t in tags} for r in records]


def build_labels(records: list[ExifRecord], config: LabelConfig | None = None,
                 vocabularies: dict[str, Vocabulary] | None = None) -> ExifLabels:
    """Labels for ``records``; vocabularies are built from them unless given (e.g. from a training split)."""
    config = config or LabelConfig()
    values = tag_values(records)
    cats = categorical_tags()
    if vocabularies is None:
        vocabularies = {
            t.name: build_vocabulary(t.name, [v[t.name] for v in values],
                                     config.max_classes.get(t.name, 8), config.min_count)
            for t in cats
        }
    return encode_labels([str(r.path) for r in records], values, vocabularies)


def encode_labels(paths: list[str], values: list[dict], vocabularies: dict[str, Vocabulary]) -> ExifLabels:
    """Labels from the 14 target values of each image (:func:`tag_values`, or as stored in a shard)."""
    cats, ranks = categorical_tags(), ranked_tags()
    categorical = np.array([[vocabularies[t.name].index(v[t.name]) for t in cats] for v in values],
                           dtype=np.int64).reshape(len(values), len(cats))
    ranked = np.array([[np.nan if v[t.name] is None else v[t.name] for t in ranks] for v in values],
                      dtype=np.float64).reshape(len(values), len(ranks))
    return ExifLabels(list(paths), vocabularies, categorical, ranked, values)


def informative_pair_share(values) -> float:
    """Share of all unordered image pairs where both values exist and differ (a tie teaches nothing)."""
    n = len(values)
    if n < 2:
        return 0.0
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    m = len(present)
    tied = sum(c * (c - 1) // 2 for c in Counter(present).values())
    return (m * (m - 1) // 2 - tied) / (n * (n - 1) // 2)


def pair_label_balance(values) -> dict[str, float]:
    """Over ordered pairs with both values present: share labelled 1 under the authors' rule
    (1 if value(a) >= value(b), so ties count as 1) and share of ties. 0.5 with no ties is balanced."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    m = len(present)
    if m < 2:
        return {"label1_share": float("nan"), "tie_share": float("nan")}
    ordered = m * (m - 1)
    tied = sum(c * (c - 1) for c in Counter(present).values())
    return {"label1_share": (tied + (ordered - tied) / 2) / ordered, "tie_share": tied / ordered}


def exif_card(labels: ExifLabels, dataset: str, records: list[ExifRecord] | None = None) -> dict:
    """Everything a reader needs to judge the pretext signal of a dataset, as plain JSON data."""
    n = len(labels.paths)
    card: dict = {"dataset": dataset, "images": n, "tags": []}
    if records is not None:
        card["images_with_exif"] = sum(bool(r.values) for r in records)
        card["readers"] = dict(Counter(r.reader for r in records))
    for t in TAGS:
        vals = [v[t.name] for v in labels.values]
        present = [v for v in vals if v is not None]
        entry = {"name": t.name, "kind": t.kind, "exif_key": t.exif_key, "why": t.why, "unit": t.unit,
                 "coverage": len(present) / n if n else 0.0, "present": len(present)}
        if t.kind == CATEGORICAL:
            vocab = labels.vocabularies[t.name]
            counts = Counter(vocab.classes[vocab.index(v)] for v in present)
            entry["classes"] = [{"class": c, "count": counts.get(c, 0)} for c in vocab.classes]
            entry["distinct_values"] = len(set(present))
        else:
            arr = np.array(present, dtype=float)
            qs = (0, 5, 25, 50, 75, 95, 100)
            entry["quantiles"] = {f"q{q}": float(np.percentile(arr, q)) for q in qs} if len(arr) else {}
            entry["distinct_values"] = len(set(present))
            entry["informative_pair_share"] = informative_pair_share(vals)
            entry["pair_labels"] = pair_label_balance(vals)
        card["tags"].append(entry)
    makes = Counter(v["Make"] for v in labels.values if v["Make"])
    models = Counter(f"{v['Make']} / {v['Model']}" for v in labels.values if v["Model"])
    card["makes"] = dict(makes.most_common())
    card["models"] = dict(models.most_common())
    return card


def card_markdown(card: dict) -> str:
    lines = [f"# EXIF card: {card['dataset']}", "",
             f"{card['images']} images"
             + (f", {card['images_with_exif']} with EXIF" if "images_with_exif" in card else "")
             + f", {len(card['makes'])} makes, {len(card['models'])} make/model pairs.", "",
             "| # | tag | kind | coverage | distinct | classes / informative pairs | why this tag |",
             "|---|---|---|---|---|---|---|"]
    for i, t in enumerate(card["tags"]):
        if t["kind"] == CATEGORICAL:
            detail = ", ".join(f"{c['class']} ({c['count']})" for c in t["classes"])
        else:
            detail = f"{t['informative_pair_share']:.3f} of pairs informative"
        lines.append(f"| {i} | {t['name']} | {t['kind']} | {t['coverage']:.2f} | {t['distinct_values']} "
                     f"| {detail} | {t['why']} |")
    lines += ["", "## Ranked tags: quantiles", "", "| tag | unit | min | q5 | q25 | median | q75 | q95 | max |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t in card["tags"]:
        if t["kind"] == RANKED and t["quantiles"]:
            q = t["quantiles"]
            cells = " | ".join(f"{q[k]:.4g}" for k in ("q0", "q5", "q25", "q50", "q75", "q95", "q100"))
            lines.append(f"| {t['name']} | {t['unit']} | {cells} |")
    lines += ["", "## Makes", "", "| make | images |", "|---|---|"]
    lines += [f"| {m} | {c} |" for m, c in card["makes"].items()]
    return "\n".join(lines) + "\n"


def write_card(card: dict, out_dir: str | Path, stem: str = "exif_card") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    js.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    md.write_text(card_markdown(card))
    return js, md

