"""What `exifkit detect` and `bundle refit` read from the paths a user gives: every file found, every
path that cannot be reached named, hidden entries counted, never a traceback or a silent skip."""

from __future__ import annotations

import errno
import os

import pytest

from exifkit.data.images import (BrokenLinkError, LinkLoopError, MissingImageError, PathTooLongError,
                                 PermissionDeniedError)
from exifkit.data.inputs import EmptyFolderError, collect_files


def causes(found):
    return {(e.path.name, type(e)) for e in found.problems.failures}


def test_links_inside_a_folder_are_followed_or_named(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(b"x")
    os.symlink("nowhere.jpg", tmp_path / "dangling.jpg")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    os.symlink("a.jpg", tmp_path / "alias.jpg")
    os.symlink("..", tmp_path / "sub" / "up")  # a folder that links back to one above it
    found = collect_files([tmp_path])
    assert [p.name for p in found.files] == ["a.jpg", "alias.jpg", "b.png"]
    assert causes(found) == {("dangling.jpg", BrokenLinkError), ("loop1", LinkLoopError),
                             ("loop2", LinkLoopError), ("up", LinkLoopError)}
    assert "nowhere.jpg" in str(next(e for e in found.problems.failures if isinstance(e, BrokenLinkError)))


def test_an_unreadable_subfolder_is_named(tmp_path, monkeypatch):
    (tmp_path / "ok.jpg").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "c.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):  # root reads any folder, so the permission error is simulated
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = collect_files([tmp_path])
    assert [p.name for p in found.files] == ["ok.jpg"]
    assert causes(found) == {("locked", PermissionDeniedError)}


def test_empty_folders_missing_and_overlong_paths_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.jpg").mkdir()  # a folder with an image's name
    (tmp_path / "only_hidden").mkdir()
    (tmp_path / "only_hidden" / ".DS_Store").write_bytes(b"x")
    good = tmp_path / "good.jpg"
    good.write_bytes(b"x")
    long = tmp_path / ("a" * 300 + ".jpg")
    found = collect_files([tmp_path / "empty", tmp_path / "x.jpg", tmp_path / "only_hidden", long, good,
                           tmp_path / "gone.jpg"])
    assert found.files == [good] and found.hidden == 1
    assert causes(found) == {("empty", EmptyFolderError), ("x.jpg", EmptyFolderError),
                             ("only_hidden", EmptyFolderError), (long.name, PathTooLongError),
                             ("gone.jpg", MissingImageError)}
    assert "1 hidden entry skipped" in found.note()


def test_a_folder_deeper_than_the_path_limit_is_named_not_a_crash(tmp_path):
    name = "d" * 200
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(25):  # 25 x 201 bytes: past PATH_MAX (4096), built relative to each level
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        with open(os.open("deep.jpg", os.O_CREAT | os.O_WRONLY, dir_fd=fd), "wb") as fh:
            fh.write(b"x")
    finally:
        os.close(fd)
    (tmp_path / "top.jpg").write_bytes(b"x")
    found = collect_files([tmp_path])
    assert [p.name for p in found.files] == ["top.jpg"]
    assert len(found.problems) == 1 and isinstance(found.problems.failures[0], PathTooLongError)


def test_hidden_entries_are_skipped_and_counted_but_a_hidden_file_given_by_name_is_read(tmp_path):
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "inner.jpg").write_bytes(b"x")
    (tmp_path / "seen.jpg").write_bytes(b"x")
    found = collect_files([tmp_path])
    assert [p.name for p in found.files] == ["seen.jpg"] and found.hidden == 2
    assert collect_files([tmp_path / ".hidden.jpg"]).files == [tmp_path / ".hidden.jpg"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_pipe_is_named_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    found = collect_files([tmp_path])
    assert found.files == [] and "not a regular file" in str(found.problems.failures[0])
