"""Manifests, verification and fetching (local HTTP server; no test touches the internet)."""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from exifkit.data.manifest import (DataStore, Entry, Manifest, ManifestError, read_manifest, sha256_file,
                                   write_manifest)
from tests.conftest import require_tool


@pytest.fixture
def server(tmp_path):
    """Serve a folder over HTTP on localhost; records every requested path."""
    served = tmp_path / "served"
    served.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def _entry(path: Path, rel: str, url: str = "") -> Entry:
    sha = sha256_file(path)
    return Entry(path=rel, sha256=sha, bytes=path.stat().st_size, label="real", source_url=url,
                 source_sha256=sha if url else "")


def test_round_trip_keeps_every_field(tmp_path):
    e = Entry(path="a/b.jpg", sha256="0" * 64, bytes=3, label="real", kind="camera", make="Canon",
              model="EOS, 5D", license="CC0-1.0", source_url="https://x/y", source_sha256="1" * 64,
              source_bytes=9, transform="jpegtran -crop 16x16+0+0 -copy all", note="a, b")
    f = write_manifest([e], tmp_path / "m.csv", header="test manifest\nsecond line")
    assert read_manifest(f).entries == [e]


@pytest.mark.parametrize("row, message", [
    ("../escape.jpg,", "must be relative"),
    ("/abs.jpg,", "must be relative"),
    ("ok.jpg,1234", "not 64 hex digits"),
])
def test_bad_rows_are_refused_with_line_number(tmp_path, row, message):
    f = tmp_path / "bad.csv"
    f.write_text("path,sha256\n" + row + "\n")
    with pytest.raises(ManifestError, match=rf"bad.csv:2: .*{message}"):
        read_manifest(f)


def test_duplicate_paths_are_refused(tmp_path):
    f = tmp_path / "dup.csv"
    f.write_text("path,sha256\na.jpg,\na.jpg,\n")
    with pytest.raises(ManifestError, match="duplicate path a.jpg"):
        read_manifest(f)


def test_verify_names_missing_and_corrupt_files(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for name in ("good.png", "bad.png"):
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / name)
    entries = [_entry(root / "good.png", "good.png"), _entry(root / "bad.png", "bad.png")]
    entries.append(replace(entries[0], path="gone.png"))
    (root / "bad.png").write_bytes((root / "bad.png").read_bytes()[:-1] + b"\x00")  # same size, new hash
    store = DataStore(Manifest("t", entries), embedded_root=root, cache_dir=tmp_path / "cache")
    report = store.verify(progress=False)
    assert not report.ok
    assert [s.entry.path for s in report.by_state("ok")] == ["good.png"]
    assert [s.entry.path for s in report.by_state("corrupt")] == ["bad.png"]
    assert [s.entry.path for s in report.by_state("missing")] == ["gone.png"]
    text = report.summary()
    assert "CORRUPT    bad.png" in text and "sha256" in text and "MISSING    gone.png" in text


def test_fetch_downloads_verifies_and_is_idempotent(tmp_path, server):
    served, url, hits = server
    Image.new("RGB", (8, 8), (4, 5, 6)).save(served / "x.png")
    entry = _entry(served / "x.png", "sub/x.png", f"{url}/x.png")
    store = DataStore(Manifest("t", [entry]), cache_dir=tmp_path / "cache")
    assert store.fetch(progress=False).ok
    assert sha256_file(tmp_path / "cache" / "t" / "sub" / "x.png") == entry.sha256
    assert store.fetch(progress=False).ok
    assert hits == ["/x.png"]  # the second fetch found the cached copy


def test_fetch_with_bad_checksum_reports_and_leaves_nothing(tmp_path, server):
    served, url, _ = server
    Image.new("RGB", (8, 8), (4, 5, 6)).save(served / "x.png")
    entry = replace(_entry(served / "x.png", "x.png", f"{url}/x.png"), sha256="f" * 64, source_sha256="f" * 64)
    store = DataStore(Manifest("t", [entry]), cache_dir=tmp_path / "cache")
    report = store.fetch(progress=False)
    assert not report.ok
    assert "download failed" in report.summary() and "x.png" in report.summary()
    assert not (tmp_path / "cache" / "t" / "x.png").exists()


def test_mirror_is_tried_before_downloading(tmp_path, server):
    served, url, hits = server
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    Image.new("RGB", (8, 8), (7, 7, 7)).save(mirror / "m.png")
    entry = _entry(mirror / "m.png", "m.png", f"{url}/m.png")
    store = DataStore(Manifest("t", [entry]), mirrors=[mirror], cache_dir=tmp_path / "cache")
    report = store.fetch(progress=False)
    assert report.ok and report.statuses[0].location == mirror / "m.png"
    assert hits == []


def test_corrupt_mirror_copy_falls_back_to_download(tmp_path, server):
    served, url, hits = server
    Image.new("RGB", (8, 8), (7, 7, 7)).save(served / "m.png")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "m.png").write_bytes(b"not the file")
    entry = _entry(served / "m.png", "m.png", f"{url}/m.png")
    store = DataStore(Manifest("t", [entry]), mirrors=[mirror], cache_dir=tmp_path / "cache")
    report = store.fetch(progress=False)
    assert report.ok and report.statuses[0].location == tmp_path / "cache" / "t" / "m.png"
    assert hits == ["/m.png"]


def test_fetch_reproduces_a_lossless_crop(tmp_path, server, demo_camera_paths):
    require_tool("jpegtran")
    from exifkit.data.transforms import lossless_crop

    served, url, _ = server
    original = served / "orig.jpg"
    original.write_bytes(demo_camera_paths[0].read_bytes())
    expected = tmp_path / "expected.jpg"
    lossless_crop(original, expected, (128, 128, 64, 64))
    entry = Entry(path="crop.jpg", sha256=sha256_file(expected), bytes=expected.stat().st_size,
                  source_url=f"{url}/orig.jpg", source_sha256=sha256_file(original),
                  transform="jpegtran -crop 128x128+64+64 -copy all")
    store = DataStore(Manifest("t", [entry]), cache_dir=tmp_path / "cache")
    assert store.fetch(progress=False).ok
    with Image.open(tmp_path / "cache" / "t" / "crop.jpg") as img:
        assert img.size == (128, 128)


def test_demo_data_is_complete_small_and_redistributable(demo_store):
    report = demo_store.verify(progress=False)
    assert report.ok, report.summary()
    assert sum(e.bytes for e in demo_store.manifest) <= 40 * 2**20
    forbidden = ("none stated", "ImageNet")
    assert not [e.path for e in demo_store.manifest if any(f in e.license for f in forbidden)]
    kinds = {e.kind for e in demo_store.manifest}
    fakes = {e.generator for e in demo_store.manifest if e.label == "fake"}
    assert "camera" in kinds and len(fakes) >= 5


def test_demo_camera_photos_keep_the_cameras_quantisation_and_exif(demo_store, shared):
    from exifkit.exif.read import read_exif

    # jpegtran rewrites the pixel-dimension tags to the crop size (piexif and Pillow name them differently)
    resized_tags = {"PixelXDimension", "PixelYDimension", "ExifImageWidth", "ExifImageHeight"}
    cameras = [e for e in demo_store.manifest if e.kind == "camera"]
    for e in cameras:
        with Image.open(demo_store.path(e)) as small, Image.open(shared / e.path) as big:
            # jpegtran drops tables no component uses; every table kept must be the camera's own
            assert small.quantization and all(big.quantization[k] == t for k, t in small.quantization.items()), e.path
            assert small.size[0] <= 256 and small.size[1] <= 256
        before, after = read_exif(shared / e.path).values, read_exif(demo_store.path(e)).values
        assert before.keys() == after.keys(), e.path
        assert {k: v for k, v in before.items() if k not in resized_tags} == {
            k: v for k, v in after.items() if k not in resized_tags}, e.path


def test_only_redistributable_licences_may_be_shown():
    from exifkit.data.manifest import Entry, may_redistribute

    assert may_redistribute("CC0-1.0") and may_redistribute("MIT") and may_redistribute("CC BY-NC-SA 4.0 (repo LICENSE.txt)")
    assert not may_redistribute("none stated") and not may_redistribute("")
    assert not may_redistribute("ImageNet terms (non-commercial research); repo has no license")
    assert not Entry(path="a.jpg", sha256="x", license="none stated").redistributable
