"""Manifests: one CSV per dataset listing every file with its hash, label, provenance and licence.

A file is looked for, in order, under the dataset's embedded root (demo data shipped in the repo), under
each local mirror, then in the download cache. ``fetch`` fills the cache from the mirrors' or the
sources' bytes, always checking sha256; ``verify`` names every file that is missing or corrupt.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import UserError
from ..progress import import_pooch, progress_bar as tqdm
from .transforms import apply_transform

#: Column order of every manifest CSV.
COLUMNS = (
    "path", "sha256", "bytes", "label", "kind", "generator", "make", "model", "license",
    "source_url", "source_sha256", "source_bytes", "transform", "note",
)
CACHE_ENV = "EXIFKIT_CACHE"
MIRROR_ENV = "EXIFKIT_MIRROR"


class ManifestError(UserError):
    """A manifest that cannot be read, or a file that does not match it."""


@dataclass(frozen=True)
class Entry:
    path: str
    sha256: str = ""
    bytes: int | None = None
    label: str = ""
    kind: str = ""
    generator: str = ""
    make: str = ""
    model: str = ""
    license: str = ""
    source_url: str = ""
    source_sha256: str = ""
    source_bytes: int | None = None
    transform: str = ""
    note: str = ""

    @property
    def source(self) -> str:
        """Short name of where the file comes from: ``owner/repo`` for GitHub and Hugging Face URLs."""
        parts = self.source_url.split("/")
        if len(parts) > 4 and parts[2] in ("raw.githubusercontent.com", "github.com"):
            return f"{parts[3]}/{parts[4]}"
        if len(parts) > 5 and parts[2] == "huggingface.co":
            return f"{parts[4]}/{parts[5]}"
        return parts[2] if len(parts) > 2 else ""

    @property
    def redistributable(self) -> bool:
        """Whether pictures of this file may appear in committed outputs (contact sheets, panels): not
        when its source states no licence or only ImageNet's research terms (see the data README)."""
        return may_redistribute(self.license)

    @property
    def is_image(self) -> bool:
        """False for archives and checkpoints, which the ``paper`` manifest also lists."""
        return self.kind not in ("archive", "checkpoint")

    @property
    def transformed(self) -> bool:
        """True when the kit's file differs from what ``source_url`` serves."""
        return bool(self.source_sha256) and self.source_sha256 != self.sha256


@dataclass
class Manifest:
    name: str
    entries: list[Entry]
    file: Path | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def sha256(self) -> str:
        """Hash of the manifest file itself, for provenance."""
        return sha256_file(self.file) if self.file else ""

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame([asdict(e) for e in self.entries], columns=list(COLUMNS))
        frame["source"] = [e.source for e in self.entries]
        return frame


NOT_REDISTRIBUTABLE = ("none stated", "imagenet terms")


def may_redistribute(license: str) -> bool:
    text = license.strip().lower()
    return bool(text) and not any(text.startswith(p) for p in NOT_REDISTRIBUTABLE)


def _validate_relpath(rel: str, where: str) -> str:
    p = Path(rel)
    if not rel or p.is_absolute() or ".." in p.parts:
        raise ManifestError(f"{where}: path {rel!r} must be relative and stay inside the dataset root")
    return p.as_posix()


def read_manifest(file: str | Path, name: str | None = None) -> Manifest:
    file = Path(file)
    if not file.is_file():
        raise ManifestError(f"{file}: manifest not found")
    entries: list[Entry] = []
    seen: set[str] = set()
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(row for row in fh if not row.startswith("#"))
        missing = {"path", "sha256"} - set(reader.fieldnames or ())
        if missing:
            raise ManifestError(f"{file}: missing column(s) {sorted(missing)}")
        for lineno, row in enumerate(reader, start=2):
            where = f"{file}:{lineno}"
            values = {f.name: (row.get(f.name) or "").strip() for f in fields(Entry)}
            values["path"] = _validate_relpath(values["path"], where)
            for key in ("bytes", "source_bytes"):
                values[key] = int(values[key]) if values[key] else None
            sha = values["sha256"].lower()
            if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
                raise ManifestError(f"{where}: sha256 {sha!r} is not 64 hex digits")
            values["sha256"] = sha
            if values["path"] in seen:
                raise ManifestError(f"{where}: duplicate path {values['path']}")
            seen.add(values["path"])
            entries.append(Entry(**values))
    return Manifest(name=name or file.stem, entries=entries, file=file)


def write_manifest(entries, file: str | Path, header: str = "") -> Path:
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("w", newline="", encoding="utf-8") as fh:
        for line in header.strip().splitlines():
            fh.write(f"# {line}\n")
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for e in entries:
            row = asdict(e)
            writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
    return file


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$EXIFKIT_CACHE`` if set, else the platform cache folder (``~/.cache/exifkit`` on Linux)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(import_pooch().os_cache("exifkit"))


def env_mirrors() -> list[Path]:
    """Mirror folders from ``$EXIFKIT_MIRROR`` (os.pathsep-separated)."""
    raw = os.environ.get(MIRROR_ENV, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]


@dataclass
class FileStatus:
    entry: Entry
    state: str  # ok | missing | corrupt | unverified
    location: Path | None = None
    detail: str = ""


@dataclass
class VerifyReport:
    manifest: str
    statuses: list[FileStatus] = field(default_factory=list)

    def by_state(self, state: str) -> list[FileStatus]:
        return [s for s in self.statuses if s.state == state]

    @property
    def ok(self) -> bool:
        return not self.by_state("missing") and not self.by_state("corrupt")

    def summary(self) -> str:
        counts = {s: len(self.by_state(s)) for s in ("ok", "unverified", "missing", "corrupt")}
        lines = [
            f"{self.manifest}: {len(self.statuses)} files: {counts['ok']} verified, "
            f"{counts['unverified']} present without a known hash, {counts['missing']} missing, "
            f"{counts['corrupt']} corrupt"
        ]
        for s in self.by_state("missing") + self.by_state("corrupt") + self.by_state("unverified"):
            lines.append(f"  {s.state.upper():10s} {s.entry.path}: {s.detail}")
        return "\n".join(lines)


class DataStore:
    """Where a manifest's files live: embedded root, then mirrors, then the cache."""

    def __init__(self, manifest: Manifest, *, embedded_root: Path | None = None,
                 mirrors=(), cache_dir: Path | None = None):
        self.manifest = manifest
        self.embedded_root = Path(embedded_root) if embedded_root else None
        self.mirrors = [Path(m) for m in mirrors] + env_mirrors()
        base = Path(cache_dir) if cache_dir else default_cache_dir()
        self.cache_dir = base / manifest.name

    def roots(self) -> list[Path]:
        roots = [self.embedded_root] if self.embedded_root else []
        return roots + [m for m in self.mirrors if m.is_dir()] + [self.cache_dir]

    def candidates(self, entry: Entry) -> list[Path]:
        return [root / entry.path for root in self.roots()]

    def locate(self, entry: Entry) -> Path | None:
        """First existing copy, without hashing (use ``verify`` for integrity)."""
        return next((p for p in self.candidates(entry) if p.is_file()), None)

    def path(self, entry: Entry) -> Path:
        found = self.locate(entry)
        if found is None:
            raise ManifestError(
                f"{entry.path}: not found under {', '.join(map(str, self.roots()))}; "
                f"run `exifkit data fetch {self.manifest.name}`"
            )
        return found

    def check(self, entry: Entry) -> FileStatus:
        """Hash every existing copy; a good copy anywhere wins, else report what was wrong."""
        problems = []
        for cand in self.candidates(entry):
            if not cand.is_file():
                continue
            if not entry.sha256:
                return FileStatus(entry, "unverified", cand, "no published sha256 to check against")
            size = cand.stat().st_size
            if entry.bytes is not None and size != entry.bytes:
                problems.append(f"{cand}: {size} bytes, manifest says {entry.bytes}")
                continue
            digest = sha256_file(cand)
            if digest == entry.sha256:
                return FileStatus(entry, "ok", cand)
            problems.append(f"{cand}: sha256 {digest[:12]}..., manifest says {entry.sha256[:12]}...")
        if problems:
            return FileStatus(entry, "corrupt", None, "; ".join(problems))
        return FileStatus(entry, "missing", None, "not under " + ", ".join(map(str, self.roots())))

    def verify(self, progress: bool = True) -> VerifyReport:
        report = VerifyReport(self.manifest.name)
        for entry in tqdm(self.manifest.entries, desc=f"verify {self.manifest.name}", unit="file",
                          disable=not progress):
            report.statuses.append(self.check(entry))
        return report

    def fetch(self, progress: bool = True, downloader=None) -> VerifyReport:
        """Make every file available and verified; downloads only what no root already holds."""
        report = VerifyReport(self.manifest.name)
        for entry in tqdm(self.manifest.entries, desc=f"fetch {self.manifest.name}", unit="file",
                          disable=not progress):
            status = self.check(entry)
            if status.state in ("missing", "corrupt") and entry.source_url:
                try:
                    self._download(entry, progress=progress, downloader=downloader)
                    status = self.check(entry)
                except Exception as exc:  # keep going: report every failure at the end
                    status = FileStatus(entry, status.state, None, f"{status.detail}; download failed: {exc}")
            report.statuses.append(status)
        return report

    def _download(self, entry: Entry, progress: bool, downloader=None) -> Path:
        pooch = import_pooch()

        target = self.cache_dir / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.transformed:
            source_name = target.name + ".source"
            known = f"sha256:{entry.source_sha256}"
        else:
            source_name = target.name
            known = f"sha256:{entry.sha256}" if entry.sha256 else None
        got = pooch.retrieve(
            entry.source_url, known_hash=known, fname=source_name, path=target.parent,
            progressbar=progress and downloader is None, downloader=downloader,
        )
        if entry.transformed:

            tmp = target.with_suffix(target.suffix + ".part")
            apply_transform(entry.transform, Path(got), tmp)
            digest = sha256_file(tmp)
            if digest != entry.sha256:
                tmp.unlink()
                raise ManifestError(
                    f"{entry.path}: the source verified, but applying {entry.transform!r} gave sha256 "
                    f"{digest[:12]}... instead of {entry.sha256[:12]}...; the verified source is kept at {got}"
                )
            os.replace(tmp, target)
        return target

