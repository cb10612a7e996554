"""Archive extraction refuses every member that could write outside the target."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from exifkit.data.archive import Limits, UnsafeArchiveError, safe_extract


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, b"data")
    return path


def _tar(path, members):
    with tarfile.open(path, "w") as tf:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = 4
                tf.addfile(info, io.BytesIO(b"data"))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tf.addfile(info)
    return path


def test_zip_and_tar_extract_normally(tmp_path):
    z = _zip(tmp_path / "ok.zip", ["a/1_fake/x.png", "a/0_real/y.png"])
    assert sorted(p.name for p in safe_extract(z, tmp_path / "z")) == ["x.png", "y.png"]
    t = _tar(tmp_path / "ok.tar", [("d/f.txt", "file", ""), ("d/link", "sym", "f.txt")])
    safe_extract(t, tmp_path / "t")
    assert (tmp_path / "t" / "d" / "f.txt").read_bytes() == b"data"


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt"])
def test_zip_members_that_escape_are_refused(tmp_path, name):
    z = _zip(tmp_path / "bad.zip", ["fine.txt", name])
    with pytest.raises(UnsafeArchiveError, match="bad.zip: member"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("members", [
    [("../evil.txt", "file", "")],
    [("ok/link", "sym", "../../outside")],
    [("ok/link", "sym", "/etc/passwd")],
    [("ok/hard", "lnk", "../outside")],
])
def test_tar_members_and_links_that_escape_are_refused(tmp_path, members):
    t = _tar(tmp_path / "bad.tar", [("fine.txt", "file", ""), *members])
    with pytest.raises(UnsafeArchiveError, match="bad.tar"):
        safe_extract(t, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())  # checked before anything is written


def test_not_an_archive(tmp_path):
    f = tmp_path / "x.zip"
    f.write_text("nope")
    with pytest.raises(UnsafeArchiveError, match="not a zip or tar"):
        safe_extract(f, tmp_path / "out")


def _bomb(path, size):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("fine.txt", b"data")
        zf.writestr("zeros.png", bytes(size))  # 64 MiB of zeros deflate to about 64 KB
    return path


def test_a_decompression_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = _bomb(tmp_path / "bomb.zip", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(UnsafeArchiveError, match="zeros.png.*expands .*-fold.*decompression bomb"):
        safe_extract(bomb, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("limits, says", [
    (Limits(max_ratio=1e9, max_member_bytes=32 << 20), "zeros.png' would write 67,108,864 bytes, over the 33,554,432"),
    (Limits(max_ratio=1e9, max_total_bytes=1 << 20), "would write 67,108,868 bytes in all"),
])
def test_size_limits_are_configurable_and_named(tmp_path, limits, says):
    with pytest.raises(UnsafeArchiveError, match=says):
        safe_extract(_bomb(tmp_path / "big.zip", 64 << 20), tmp_path / "out", limits)
    assert not any((tmp_path / "out").iterdir())
    t = _tar(tmp_path / "ok.tar", [("d/f.txt", "file", "")])
    with pytest.raises(UnsafeArchiveError, match="per member"):
        safe_extract(t, tmp_path / "t", Limits(max_member_bytes=3))


def test_a_chain_of_links_that_only_escapes_on_disk_is_refused_before_writing(tmp_path):
    t = _tar(tmp_path / "chain.tar", [("first.txt", "file", ""), ("a/b", "sym", ".."), ("a/b/c", "sym", ".."),
                                      ("a/b/c/escaped.txt", "file", "")])
    with pytest.raises(UnsafeArchiveError, match="'a/b/c' goes through the link 'a/b'"):
        safe_extract(t, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())  # not even the harmless first member
