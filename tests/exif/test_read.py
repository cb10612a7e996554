from __future__ import annotations

import piexif
import pytest
from PIL import Image

from exifkit.exif.read import canonical_make, clean_text, read_exif


@pytest.mark.parametrize("raw, expected", [
    (b"Canon\x00\x00\x00", "Canon"),
    (b"  NIKON D70  \x00junk", "NIKON D70"),
    ("KENOX S730  / Samsung S730", "KENOX S730 / Samsung S730"),
    (b"\x00\x00", None),
    (b"Caf\xe9", "Caf\u00e9"),  # latin-1 bytes from an old camera
])
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("NIKON CORPORATION", "Nikon"), ("NIKON", "Nikon"), ("Nikon", "Nikon"),
    ("OLYMPUS OPTICAL CO.,LTD", "Olympus"), ("OLYMPUS IMAGING CORP.", "Olympus"),
    ("EASTMAN KODAK COMPANY", "Kodak"), ("Eastman Kodak Company", "Kodak"),
    ("Hewlett-Packard Company", "HP"), ("samsung", "Samsung"), ("Samsung Techwin", "Samsung"),
    ("SONY", "Sony"), ("Sony Ericsson", "Sony Ericsson"), ("Asahi Optical Co.,Ltd", "Pentax"),
    ("Minolta Co., Ltd.", "Minolta"), ("KONICA CORPORATION", "Konica"), ("LGE", "LG"),
    ("JK Imaging, Ltd.", "JK Imaging, Ltd."), (None, None),
])
def test_vendor_spellings_of_one_make(raw, expected):
    assert canonical_make(raw) == expected


def _jpeg_with(tmp_path, zeroth=None, exif=None, name="x.jpg"):
    path = tmp_path / name
    Image.new("RGB", (16, 16)).save(path, exif=piexif.dump({"0th": zeroth or {}, "Exif": exif or {}}))
    return path


def test_rationals_shorts_and_zero_denominators(tmp_path):
    path = _jpeg_with(tmp_path, {piexif.ImageIFD.Make: b"Canon"}, {
        piexif.ExifIFD.FNumber: (28, 10), piexif.ExifIFD.ExposureTime: (1, 0),
        piexif.ExifIFD.ISOSpeedRatings: 400, piexif.ExifIFD.Flash: 16,
        piexif.ExifIFD.ExposureBiasValue: (-2, 3)})
    r = read_exif(path)
    assert r.reader == "piexif"
    assert r.get("FNumber") == pytest.approx(2.8)
    assert r.get("ExposureTime") is None  # 1/0 means unknown, not infinity
    assert r.get("ISOSpeedRatings") == 400 and isinstance(r.get("Flash"), int)
    assert r.get("ExposureBiasValue") == pytest.approx(-2 / 3)


def test_ascii_written_without_nul_is_not_truncated(demo_store):
    # this HTC phone writes "HTC" in 3 bytes; piexif alone would return "HT"
    entry = next(e for e in demo_store.manifest if "HTC_One_M8" in e.path)
    r = read_exif(demo_store.path(entry))
    assert r.get("Make") == "HTC" and r.get("Model") == "HTC One_M8"


def test_png_exif_falls_back_to_pillow(tmp_path):
    path = tmp_path / "with_exif.png"
    exif = Image.Exif()
    exif[0x010F] = "FUJIFILM"
    Image.new("RGB", (8, 8)).save(path, exif=exif)
    r = read_exif(path)
    assert r.reader == "pillow" and canonical_make(r.get("Make")) == "Fujifilm"
    assert "piexif" in r.error  # the failure of the first reader is kept, not hidden


def test_no_exif_and_not_an_image(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    (tmp_path / "text.jpg").write_text("hello")
    plain, text = read_exif(tmp_path / "plain.png"), read_exif(tmp_path / "text.jpg")
    assert plain.values == {} and plain.reader == "none"
    assert text.values == {} and "pillow" in text.error


def test_a_path_that_is_not_a_readable_file_is_not_a_file_without_exif(tmp_path):
    from exifkit.data.images import MissingImageError, NotAFileError
    from exifkit.exif.read import read_many

    with pytest.raises(MissingImageError, match="gone.jpg: file not found"):
        read_exif(tmp_path / "gone.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(NotAFileError):
        read_exif(tmp_path / "dir.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.jpg")
    gone, plain = read_many([tmp_path / "gone.jpg", tmp_path / "plain.jpg"])
    assert gone.unreadable == "file not found" and not gone.values
    assert plain.unreadable == "" and not plain.values
