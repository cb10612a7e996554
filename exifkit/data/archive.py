"""Archive extraction that cannot write outside its target folder."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from ..errors import UserError


class UnsafeArchiveError(UserError):
    pass


def _check_member(archive: Path, name: str, target: Path) -> Path:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in pure.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} climbs out with '..'")
    dest = (target / pure).resolve()
    if not dest.is_relative_to(target):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside {target}")
    return dest


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a zip or tar archive after checking every member; nothing is written if one is unsafe."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m in members:
                _check_member(archive, m.filename, target)
                if (m.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"{archive}: member {m.filename!r} is a symbolic link")
            zf.extractall(target)
            return [target / m.filename for m in members if not m.is_dir()]
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                dest = _check_member(archive, m.name, target)
                if m.issym() or m.islnk():
                    link = PurePosixPath(m.linkname)
                    base = dest.parent if m.issym() else target
                    if link.is_absolute() or not (base / link).resolve().is_relative_to(target):
                        raise UnsafeArchiveError(
                            f"{archive}: link {m.name!r} -> {m.linkname!r} points outside {target}"
                        )
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or fifo")
            tf.extractall(target, filter="data")
            return [target / m.name for m in members if m.isfile()]
    raise UnsafeArchiveError(f"{archive}: not a zip or tar archive")
