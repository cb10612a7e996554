"""The files a user points the kit at: image files and folders given on a command line.

Folders are walked recursively in name order. Symbolic links are followed, files and folders alike;
a link that points nowhere, a loop of links and a folder that links back to one above it are each
reported, never dropped. Names starting with a dot (hidden files and folders, editor and OS
droppings) are skipped and counted. Everything that cannot be reached (permissions, a path longer
than the file system allows, a folder with no files) becomes an :class:`ImageLoadError` naming the
path, so a caller can score the rest and report these beside them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .images import FailureReport, ImageLoadError, LinkLoopError, NotAFileError, path_error


class EmptyFolderError(ImageLoadError):
    cause = "folder holds no files"


@dataclass
class Inputs:
    files: list[Path] = field(default_factory=list)
    problems: FailureReport = field(default_factory=FailureReport)
    hidden: int = 0  # entries skipped because their name starts with a dot

    def note(self) -> str:
        """What was found, for the user's terminal."""
        text = f"{len(self.files)} file(s)"
        if self.hidden:
            text += f", {self.hidden} hidden entr{'y' if self.hidden == 1 else 'ies'} skipped (names starting with '.')"
        if self.problems:
            text += f", {len(self.problems)} path(s) that cannot be read"
        return text


def collect_files(items) -> Inputs:
    """Files as given (whatever their name), folders walked; see the module docstring for the rules."""
    found = Inputs()
    for item in items:
        path = Path(item)
        try:
            info = path.stat()
        except OSError as exc:
            found.problems.add(path_error(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            files, problems, hidden = len(found.files), len(found.problems), found.hidden
            _walk(path, found, {(info.st_dev, info.st_ino)})
            if (len(found.files), len(found.problems)) == (files, problems):
                found.problems.add(EmptyFolderError(path, "only hidden entries" if found.hidden > hidden else ""))
        elif stat.S_ISREG(info.st_mode):
            found.files.append(path)
        else:
            found.problems.add(NotAFileError(path, "a device, socket or pipe"))
    return found


def _walk(folder: Path, found: Inputs, ancestors: set[tuple[int, int]]) -> None:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        found.problems.add(path_error(folder, exc))
        return
    for entry in entries:
        if entry.name.startswith("."):
            found.hidden += 1
            continue
        path = folder / entry.name
        try:
            info = entry.stat()  # follows a link
        except OSError as exc:
            found.problems.add(path_error(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                found.problems.add(LinkLoopError(path, "links back to a folder above it"))
                continue
            _walk(path, found, ancestors | {key})
        elif stat.S_ISREG(info.st_mode):
            found.files.append(path)
        else:
            found.problems.add(NotAFileError(path, "a device, socket or pipe"))
