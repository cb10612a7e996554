"""Photo collections packed into shards, for training at a scale no process can hold in memory.

A packed collection is a folder of POSIX tar files in WebDataset's layout: consecutive members that
share a key form one sample, ``<key>.<ext>`` the file's *original bytes* (never re-encoded: the camera's
JPEG is what the pretext task learns from) and ``<key>.json`` its record (sha256, source path, image
size and format, the 14 EXIF target values, and real/fake label for binary sets). Plain tar reads
sequentially at disk speed, can be listed and checked with standard tools, and is read by
``webdataset.WebDataset`` as is (tests/data/test_shards.py reads every sample back through it). The
kit writes and reads it with :mod:`tarfile` itself: its members carry fixed times and modes, so a
shard rewritten after an interruption has the same bytes, and its own stream resumes exactly by
(seed, rank, worker, step) (:mod:`exifkit.data.stream`).

Beside the shards: ``index.json`` (what was packed, how many samples each shard holds, the EXIF
vocabularies built in the same pass), one ``<shard>.json`` per finished shard (its counts and its
failures) and ``failures.csv``. Packing is resumable: a shard is done once its side file exists; an
interrupted shard is rewritten from scratch.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SettingError, UserError
from ..exif.read import read_exif
from ..exif.schema import LabelConfig, Vocabulary, categorical_tags, tag_values, vocabulary_from_counts
from ..progress import progress_bar as tqdm
from .images import FailureReport, ImageLoadError, decode_rgb, path_error
from .inputs import collect_files
from .transforms import TransformError, crop_spec, lossless_crop, mcu_center_crop_box

FORMAT = "exifkit-shards"
VERSION = 1
INDEX = "index.json"
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp", "GIF": "gif"}


class ShardError(UserError):
    pass


@contextlib.contextmanager
def _naming(path, action: str):
    """An OSError or tar error while reading or writing ``path`` becomes a ShardError that names the file
    and the cause (a full disk, a file where a folder should be, a truncated shard), not a traceback."""
    try:
        yield
    except ShardError:
        raise
    except (OSError, tarfile.TarError, EOFError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise ShardError(f"{path}: cannot {action} ({cause})") from exc


class UnlabelledError(ImageLoadError):
    cause = "no real/fake label"


@dataclass(frozen=True)
class Item:
    """One file to pack, with what the collection says about it (label and group for binary sets)."""

    path: Path
    name: str  # its path relative to the source, recorded in the sample
    label: int | None = None  # 0 real, 1 fake; None for pretext photos
    group: str = ""
    view: tuple[int, int, int, int] | None = None  # a crop box the sample stands for (CNNDetection, grid tiles)


@dataclass
class PackReport:
    out: Path
    samples: int
    shards: int
    failures: list[dict] = field(default_factory=list)
    packed_now: int = 0  # shards written by this call (the rest were done before)

    def summary(self) -> str:
        return (f"{self.samples} samples in {self.shards} shards under {self.out} ({self.packed_now} written now, "
                f"{self.shards - self.packed_now} already done); {len(self.failures)} file(s) could not be packed"
                + (f", listed in {self.out / 'failures.csv'}" if self.failures else ""))


def _read_json(path: Path) -> dict:
    with _naming(path, "read"):
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise ShardError(f"{path}: not valid JSON ({exc})") from exc


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def _plan_digest(items: list[Item], shard_size: int, kind: str) -> str:
    h = hashlib.sha256(f"{kind}\n{shard_size}\n".encode())
    for it in items:
        h.update(f"{it.name}\t{it.label}\t{it.group}\t{it.view}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _record(item: Item, data: bytes, kind: str) -> dict:
    """The JSON half of a sample; raises ImageLoadError when the bytes are not a usable image."""
    from PIL import Image

    image = decode_rgb(data, item.path)  # the whole decode: a truncated file is refused here, not mid-training
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format
    rec = {"name": item.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
           "width": int(image.shape[1]), "height": int(image.shape[0]), "format": fmt}
    if kind == "binary":
        rec.update(label=item.label, group=item.group, view=list(item.view) if item.view else None)
    else:

        rec["exif"] = tag_values([read_exif(item.path)])[0]
    return rec


def _labelled(path: Path, name: str, binary: bool, label: str | None, default_group: str):
    """The item for one file, or the UnlabelledError saying why a binary set cannot take it: the label
    is ``label`` for every file, else the ``0_real``/``1_fake`` folder in ``name`` (the folder above
    it naming the group: generator or class, as in the CNNSpot layout)."""
    if not binary:
        return Item(path, name)
    if label is not None:
        return Item(path, name, {"real": 0, "fake": 1}[label], default_group)
    parts = Path(name).parts[:-1]
    if "0_real" not in parts and "1_fake" not in parts:
        return UnlabelledError(path, "no 0_real or 1_fake folder in its path; pass --label real|fake")
    i = max(parts.index(q) for q in ("0_real", "1_fake") if q in parts)
    return Item(path, name, int(parts[i] == "1_fake"), parts[i - 1] if i else default_group)


def _collect(entries, binary, label, default_group):
    """(items, problems) from ``(path as given, name to record)`` pairs; folders are walked."""
    items, problems = [], FailureReport()
    for path, name in entries:
        found = collect_files([path])
        problems.failures += found.problems.failures
        for file in found.files:
            rel = name if file == path else str(Path(name) / file.relative_to(path))
            made = _labelled(file, rel, binary, label, default_group)
            (problems.add if isinstance(made, ImageLoadError) else items.append)(made)
    return items, problems


def folder_items(folder: str | Path, binary: bool = False, label: str | None = None):
    """(items, problems) for every file under ``folder`` (see :mod:`exifkit.data.inputs`): flat or
    nested (per camera, per class) alike; names are recorded relative to ``folder``."""
    return _collect([(Path(folder), "")], binary, label, Path(folder).name)


def list_items(list_file: str | Path, binary: bool = False, label: str | None = None):
    """(items, problems) for the files (or folders) named in a text file, one per line; relative paths
    are taken from the list's folder, blank lines and lines starting with # are skipped."""
    list_file = Path(list_file)
    lines = [line.strip() for line in list_file.read_text(encoding="utf-8", errors="surrogateescape").splitlines()]
    entries = [(Path(line) if Path(line).is_absolute() else list_file.parent / line, line)
               for line in lines if line and not line.startswith("#")]
    return _collect(entries, binary, label, list_file.stem)


def profile_items(profile, store, binary: bool = False):
    """A profile's pretext photos (the camera photos outside its held-out test split) or, with
    ``binary``, its binary training samples, as items to pack."""
    splits = profile.splits(store.manifest)
    if not binary:
        return [Item(store.path(e), e.path) for e in splits.pretext_photos]
    return [Item(store.path(s.entry), s.entry.path, s.label, s.group, s.view) for s in splits.binary_train]


def _lossless_crop(item: Item, data: bytes, max_side: int | None, tmp: Path) -> tuple[bytes, str]:
    """A JPEG over ``max_side`` cut to its central ``max_side`` square in the DCT domain (jpegtran: the
    camera's quantisation, 8x8 grid and EXIF stay); anything else as it is."""
    from PIL import Image

    if not max_side:
        return data, ""
    with Image.open(io.BytesIO(data)) as img:
        fmt, (width, height) = img.format, img.size
    if fmt not in ("JPEG", "MPO") or max(width, height) <= max_side:
        return data, ""
    box = mcu_center_crop_box(width, height, max_side)
    src, dst = tmp / "in.jpg", tmp / "out.jpg"
    src.write_bytes(data)
    try:
        lossless_crop(src, dst, box)
    except TransformError as exc:
        raise ImageLoadError(item.path, str(exc)) from exc
    return dst.read_bytes(), crop_spec(*box)


def _pack_shard(task) -> dict:
    """Write one shard (to a temporary name, then renamed) and its side file; runs in a worker process."""
    import tempfile

    out, index, items, kind, first_key, max_side = task
    out = Path(out)
    scratch = tempfile.TemporaryDirectory(prefix="exifkit-pack-")
    tar_path, side = out / shard_name(index), out / (shard_name(index)[:-4] + ".json")
    partial = tar_path.with_suffix(".tar.partial")
    try:
        with _naming(partial, "write this shard"), tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tf:
            samples, failures, counts = _write_samples(tf, items, kind, first_key, max_side, Path(scratch.name))
        with _naming(tar_path, "finish this shard"):
            os.replace(partial, tar_path)
    except ShardError:
        partial.unlink(missing_ok=True)  # never left to look like a shard; the rerun writes it afresh
        raise
    finally:
        scratch.cleanup()
    record = {"shard": tar_path.name, "samples": samples, "bytes": tar_path.stat().st_size, "failures": failures,
              "categorical_counts": {k: dict(v) for k, v in counts.items()}}
    tmp = side.with_suffix(".json.partial")
    with _naming(side, "write the shard's record"):
        tmp.write_text(json.dumps(record))
        os.replace(tmp, side)  # the shard counts as done from here on
    return record


def _write_samples(tf: tarfile.TarFile, items: list[Item], kind: str, first_key: int, max_side: int | None,
                   scratch: Path):
    """Every usable item as a ``<key>.<ext>`` + ``<key>.json`` pair; (samples, failures, EXIF class counts)."""
    samples, failures, counts = 0, [], {}
    for offset, item in enumerate(items):
        try:
            try:
                data = item.path.read_bytes()
            except OSError as exc:
                raise path_error(item.path, exc) from exc
            rec = _record(item, data, kind)  # EXIF from the file; pixels checked before any crop
            data, transform = _lossless_crop(item, data, max_side, scratch)
            if transform:
                rec.update(transform=transform, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                           width=min(rec["width"], max_side), height=min(rec["height"], max_side))
        except ImageLoadError as exc:
            failures.append({"file": str(item.path), "cause": exc.cause, "detail": exc.detail})
            continue
        key = f"{first_key + offset:09d}"
        ext = EXTENSIONS.get(rec["format"], "img")
        for member, payload in ((f"{key}.{ext}", data), (f"{key}.json", json.dumps(rec).encode())):
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(payload), 0, 0o644  # same bytes on every run
            tf.addfile(info, io.BytesIO(payload))
        for tag, value in (rec.get("exif") or {}).items():
            if isinstance(value, str):
                counts.setdefault(tag, Counter())[value] += 1
        samples += 1
    return samples, failures, counts


def pack(items: list[Item], out: str | Path, *, kind: str = "pretext", shard_size: int = 1000, workers: int = 1,
         max_side: int | None = None, label_config=None, source: str = "", progress: bool = True) -> PackReport:
    """Pack ``items`` (in the order given) into shards of ``shard_size`` samples under ``out``; with
    ``max_side``, JPEGs larger than that are stored as a lossless central crop (jpegtran), which bounds
    the shards' size and the decoding cost of full-resolution photos without re-encoding them.

    ``workers`` processes pack shards in parallel. Rerunning the same call continues where an
    interrupted one stopped; a different list of files for the same folder is refused. For
    ``kind="pretext"`` the EXIF vocabularies (top classes within ``label_config``'s budgets, the
    authors' by default) are built from the counts of every shard and stored in the index."""
    from multiprocessing import get_context


    if kind not in ("pretext", "binary"):
        raise SettingError(f"kind must be 'pretext' or 'binary', not {kind!r}")
    if kind == "binary" and any(it.label not in (0, 1) for it in items):
        raise SettingError("a binary set needs a real (0) or fake (1) label on every file")
    if not items:
        raise ShardError(f"nothing to pack into {out}")
    out = Path(out)
    with _naming(out, "create the output folder"):
        out.mkdir(parents=True, exist_ok=True)
    plan = {"format": FORMAT, "version": VERSION, "kind": kind, "shard_size": shard_size, "max_side": max_side,
            "files": len(items), "plan_sha256": _plan_digest(items, shard_size, f"{kind} {max_side}"), "source": source}
    plan_file = out / "plan.json"
    if plan_file.exists():
        before = _read_json(plan_file)
        if before.get("plan_sha256") != plan["plan_sha256"]:
            raise ShardError(f"{out}: holds shards of another file list ({before.get('files')} files from "
                             f"{before.get('source')!r}); pack into an empty folder")
    else:
        with _naming(plan_file, "write the packing plan"):
            plan_file.write_text(json.dumps(plan, indent=2) + "\n")
    chunks = [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
    side = [out / (shard_name(i)[:-4] + ".json") for i in range(len(chunks))]
    todo = [(str(out), i, chunk, kind, i * shard_size, max_side) for i, chunk in enumerate(chunks)
            if not (side[i].exists() and (out / shard_name(i)).exists())]
    bar = tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc="pack", unit="shard", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with get_context("spawn").Pool(min(workers, len(todo))) as pool:
            for _ in pool.imap_unordered(_pack_shard, todo):
                bar.update()
    else:
        for task in todo:
            _pack_shard(task)
            bar.update()
    bar.close()
    records = [_read_json(p) for p in side]
    failures = [f for r in records for f in r["failures"]]
    with _naming(out / "failures.csv", "write"), open(out / "failures.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "cause", "detail"])
        writer.writeheader()
        writer.writerows(failures)
    index = {**plan, "samples": sum(r["samples"] for r in records),
             "shards": [{"name": r["shard"], "samples": r["samples"], "bytes": r["bytes"]} for r in records]}
    if kind == "pretext":
        config = label_config or LabelConfig()
        merged = {t.name: Counter() for t in categorical_tags()}
        for r in records:
            for tag, counts in r["categorical_counts"].items():
                merged[tag].update(counts)
        index["vocabularies"] = {t: vocabulary_from_counts(t, c, config.max_classes.get(t, 8), config.min_count).classes
                                 for t, c in merged.items()}
    tmp = out / (INDEX + ".partial")
    with _naming(out / INDEX, "write the index"):
        tmp.write_text(json.dumps(index, indent=2) + "\n")
        os.replace(tmp, out / INDEX)
    return PackReport(out, index["samples"], len(chunks), failures, packed_now=len(todo))


@dataclass
class Shards:
    """A packed collection, read back."""

    root: Path
    index: dict

    @classmethod
    def open(cls, root: str | Path) -> "Shards":
        root = Path(root)
        if not (root / INDEX).exists():
            raise ShardError(f"{root}: not a packed collection (no {INDEX}); `exifkit data pack` writes one")
        index = _read_json(root / INDEX)
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise ShardError(f"{root / INDEX}: not an {FORMAT} v{VERSION} index")
        missing = [s["name"] for s in index["shards"] if not (root / s["name"]).is_file()]
        if missing:
            raise ShardError(f"{root}: shard(s) missing: {', '.join(missing[:5])}")
        for s in index["shards"]:  # a truncated or replaced shard is named here, not mid-training
            size = (root / s["name"]).stat().st_size
            if s.get("bytes") is not None and size != s["bytes"]:
                raise ShardError(f"{root / s['name']}: {size} bytes, but {s['bytes']} were packed (truncated or "
                                 "replaced); pack the collection again (finished shards are kept)")
        return cls(root, index)

    @property
    def kind(self) -> str:
        return self.index["kind"]

    @property
    def paths(self) -> list[Path]:
        return [self.root / s["name"] for s in self.index["shards"]]

    def __len__(self) -> int:
        return int(self.index["samples"])

    def vocabularies(self):

        return {k: Vocabulary(k, list(v)) for k, v in self.index.get("vocabularies", {}).items()}


def iter_shard(path: str | Path):
    """``(record, image bytes)`` of each sample of one shard, in order, without decoding."""
    with _naming(path, "read this shard"), tarfile.open(path, "r") as tf:
        pending: dict[str, bytes] = {}
        key = None
        for member in tf:
            if not member.isfile():
                continue
            stem, _, ext = member.name.partition(".")
            if key is not None and stem != key:
                yield _sample(path, key, pending)
                pending = {}
            key = stem
            pending[ext] = tf.extractfile(member).read()
        if key is not None:
            yield _sample(path, key, pending)


def _sample(path, key: str, parts: dict[str, bytes]):
    if "json" not in parts or len(parts) != 2:
        raise ShardError(f"{path}: sample {key} is incomplete ({sorted(parts)})")
    try:
        record = json.loads(parts.pop("json"))
    except ValueError as exc:
        raise ShardError(f"{path}: sample {key} has an unreadable record ({exc})") from exc
    record["key"] = key
    return record, next(iter(parts.values()))
