"""The loader against real bytes of every bad-input class a user can hand it."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import piexif
import pytest
from PIL import Image

from exifkit.data.images import (CorruptImageError, EmptyImageError, ImageLoadError, ImageTooLargeError,
                                 ImageTooSmallError, MissingImageError, NotAnImageError, TruncatedImageError,
                                 load_many, load_rgb)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_camera_jpeg_decodes_to_rgb_uint8(demo_camera_paths):
    arr = load_rgb(demo_camera_paths[0])
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3


def test_truncated_jpeg_names_file_and_cause(tmp_path, demo_camera_paths):
    raw = demo_camera_paths[0].read_bytes()
    bad = tmp_path / "half.jpg"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TruncatedImageError) as info:
        load_rgb(bad)
    assert str(bad) in str(info.value) and "truncated" in str(info.value)


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.touch()
    with pytest.raises(EmptyImageError, match="empty.jpg: file is empty"):
        load_rgb(empty)


def test_text_renamed_jpg(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a shopping list, not a photo\n")
    with pytest.raises(NotAnImageError, match="notes.jpg"):
        load_rgb(fake)


def test_missing_file(tmp_path):
    with pytest.raises(MissingImageError, match="nothere.png: file not found"):
        load_rgb(tmp_path / "nothere.png")


def test_corrupt_png_stream(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    raw = bytearray(good.read_bytes())
    idat = raw.index(b"IDAT")
    raw[idat + 6: idat + 12] = b"\x00" * 6  # break the zlib stream inside the pixel data
    bad = tmp_path / "garbled.png"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CorruptImageError, match="garbled.png: image data is corrupt"):
        load_rgb(bad)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    arr = load_rgb(path)
    assert arr.shape == (30, 40, 3)
    assert arr[..., 0].mean() > 200 and arr[..., 1].mean() < 60


def test_16bit_png_scaled_to_8bit(tmp_path):
    path = tmp_path / "deep.png"
    data = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(data).save(path)
    assert Image.open(path).mode.startswith("I")
    arr = load_rgb(path)
    assert arr.shape == (1, 3, 3)
    assert arr[0, :, 0].tolist() == [0, 128, 255]


def test_grayscale_palette_rgba_and_multiframe(tmp_path):
    Image.new("L", (8, 6), 77).save(tmp_path / "gray.png")
    pal = Image.new("P", (8, 6), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.save(tmp_path / "pal.png", transparency=0)
    Image.new("RGBA", (8, 6), (200, 100, 50, 0)).save(tmp_path / "rgba.png")
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tiff", save_all=True, append_images=frames[1:])
    assert (load_rgb(tmp_path / "gray.png") == 77).all()
    assert load_rgb(tmp_path / "pal.png")[0, 0].tolist() == [10, 20, 30]
    assert load_rgb(tmp_path / "rgba.png")[0, 0].tolist() == [200, 100, 50]  # colour kept, alpha dropped
    assert load_rgb(tmp_path / "anim.gif")[0, 0, 0] > 200  # first frame
    assert load_rgb(tmp_path / "pages.tiff")[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("side", [200_000, 11_000])  # beyond Pillow's own limit, and only beyond ours
def test_bomb_sized_header_is_refused_before_decoding(tmp_path, side):
    header = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(header + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageTooLargeError, match="bomb.png: image is too large"):
        load_rgb(bomb)


def test_custom_pixel_ceiling_and_tiny_images(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    with pytest.raises(ImageTooLargeError):
        load_rgb(tmp_path / "a.png", max_pixels=5_000)
    Image.new("RGB", (40, 300)).save(tmp_path / "thin.png")
    with pytest.raises(ImageTooSmallError, match="thin.png.*40x300"):
        load_rgb(tmp_path / "thin.png", min_side=64)


def test_exif_orientation_is_not_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}})
    Image.new("RGB", (64, 32), (9, 9, 9)).save(path, exif=exif)
    assert load_rgb(path).shape == (32, 64, 3)  # stored layout, not the displayed 64x32 portrait


def test_load_many_reports_every_failure_and_keeps_the_rest(tmp_path, demo_camera_paths):
    (tmp_path / "empty.jpg").touch()
    (tmp_path / "text.jpg").write_text("hello")
    images, report = load_many([demo_camera_paths[0], tmp_path / "empty.jpg", tmp_path / "text.jpg"])
    assert list(images) == [demo_camera_paths[0]]
    assert len(report) == 2 and all(isinstance(e, ImageLoadError) for e in report.failures)
    md = report.to_markdown()
    assert "empty.jpg" in md and "text.jpg" in md and "2 image(s)" in md


def test_a_permission_error_is_reported_as_one_not_as_corrupt_data(tmp_path, monkeypatch):
    import errno

    from exifkit.data import images

    path = tmp_path / "locked.jpg"
    Image.new("RGB", (8, 8)).save(path)

    def denied(*args, **kwargs):  # root reads any file, so the refusal is simulated
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(images, "open", denied, raising=False)
    with pytest.raises(images.PermissionDeniedError, match="locked.jpg: permission denied"):
        load_rgb(path)


def test_a_folder_is_named_as_one(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    with pytest.raises(ImageLoadError, match=r"x.jpg: not a regular file \(a folder\)"):
        load_rgb(tmp_path / "x.jpg")


def test_the_documented_pixel_ceiling_decides_not_pillows_warning_level(tmp_path, monkeypatch):
    """The 100 MP default used to be undercut by Pillow's 89.48 MP warning, raised as an error: shown
    here at a small scale by lowering Pillow's level, which is what the kit must not depend on."""
    path = tmp_path / "big.png"
    Image.new("L", (40, 40)).save(path)  # 1,600 pixels: over the warning level below, under twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_rgb(path).shape == (40, 40, 3)
    with pytest.raises(ImageTooLargeError):
        load_rgb(path, max_pixels=1500)


def test_malformed_metadata_warns_nothing_while_pixels_decode(tmp_path):
    import warnings

    raw = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon" + b"x" * 40}})
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.jpg", exif=raw)
    data = bytearray((tmp_path / "ok.jpg").read_bytes())
    entry = data.find(b"\x01\x0f\x00\x02")  # the Make entry (big-endian): inflate its byte count
    data[entry + 4:entry + 8] = (100_000).to_bytes(4, "big")
    (tmp_path / "bad_exif.jpg").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rgb(tmp_path / "bad_exif.jpg").shape == (64, 64, 3)
