"""Archive extraction that cannot write outside its target folder, nor fill the disk.

Every member is checked before the first byte is written: its path, where its link points (also
through links made by earlier members), its kind, and its declared size against :class:`Limits`.
Sizes are what the archive declares; Python's zip and tar readers never write more than that.
"""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UserError

MiB, GiB = 1 << 20, 1 << 30


class UnsafeArchiveError(UserError):
    pass


@dataclass(frozen=True)
class Limits:
    """Ceilings on what one archive may write. The defaults sit far above the paper's data (images of
    a few MB, test sets of a few GB) and far below what a decompression bomb asks for."""

    max_member_bytes: int = 512 * MiB
    max_total_bytes: int = 256 * GiB
    max_ratio: float = 200.0  # uncompressed / compressed, for zip members over 1 MiB (images barely compress)


def _member_path(archive: Path, name: str, target: Path) -> PurePosixPath:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in pure.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} climbs out with '..'")
    if not (target / pure).resolve().is_relative_to(target):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside {target}")
    return PurePosixPath(*[p for p in pure.parts if p != "."])


def _check_sizes(archive: Path, sizes: list[tuple[str, int, int | None]], limits: Limits) -> None:
    """``sizes``: (name, declared bytes, compressed bytes or None)."""
    total = 0
    for name, size, packed in sizes:
        if size > limits.max_member_bytes:
            raise UnsafeArchiveError(f"{archive}: member {name!r} would write {size:,} bytes, over the "
                                     f"{limits.max_member_bytes:,}-byte limit per member (Limits.max_member_bytes)")
        if packed is not None and size > MiB and size > limits.max_ratio * max(packed, 1):
            raise UnsafeArchiveError(f"{archive}: member {name!r} expands {size / max(packed, 1):,.0f}-fold "
                                     f"({packed:,} to {size:,} bytes), over Limits.max_ratio={limits.max_ratio:g}: "
                                     "a decompression bomb")
        total += size
    if total > limits.max_total_bytes:
        raise UnsafeArchiveError(f"{archive}: would write {total:,} bytes in all, over the "
                                 f"{limits.max_total_bytes:,}-byte limit (Limits.max_total_bytes)")


def _check_tar(archive: Path, members: list[tarfile.TarInfo], target: Path) -> None:
    links: set[PurePosixPath] = set()
    for m in members:
        path = _member_path(archive, m.name, target)
        through = next((path.parents[i] for i in range(len(path.parts) - 1) if path.parents[i] in links), None)
        if through is not None:  # on disk this member would land wherever that link points
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} goes through the link {str(through)!r}")
        if m.issym() or m.islnk():
            link = PurePosixPath(m.linkname)
            base = target / path.parent if m.issym() else target
            if link.is_absolute() or not (base / link).resolve().is_relative_to(target):
                raise UnsafeArchiveError(f"{archive}: link {m.name!r} -> {m.linkname!r} points outside {target}")
            links.add(path)
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or fifo")
        try:
            tarfile.data_filter(m, str(target))  # what extraction will apply, applied before writing
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"{archive}: member {m.name!r}: {exc}") from exc


def safe_extract(archive: str | Path, target: str | Path, limits: Limits = Limits()) -> list[Path]:
    """Extract a zip or tar archive after checking every member; nothing is written if one is unsafe
    or the archive would write more than ``limits`` allow."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m in members:
                _member_path(archive, m.filename, target)
                if (m.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"{archive}: member {m.filename!r} is a symbolic link")
            _check_sizes(archive, [(m.filename, m.file_size, m.compress_size) for m in members if not m.is_dir()],
                         limits)
            zf.extractall(target)
            return [target / m.filename for m in members if not m.is_dir()]
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_tar(archive, members, target)
            _check_sizes(archive, [(m.name, m.size, None) for m in members if m.isfile()], limits)
            tf.extractall(target, filter="data")
            return [target / m.name for m in members if m.isfile()]
    raise UnsafeArchiveError(f"{archive}: not a zip or tar archive")
