"""exifkit's reader against an independent one (Phil Harvey's exiftool) on every demo camera photo."""

from __future__ import annotations

import json
import math
import subprocess

from exifkit.exif.read import read_exif
from tests.conftest import require_tool

#: exifkit tag name -> exiftool tag name (-n: numeric values, EXIF group only).
EXIFTOOL_NAMES = {
    "Make": "Make", "Model": "Model", "Flash": "Flash", "MeteringMode": "MeteringMode",
    "ExposureMode": "ExposureMode", "WhiteBalance": "WhiteBalance", "SceneCaptureType": "SceneCaptureType",
    "FocalLength": "FocalLength", "FNumber": "FNumber", "ExposureTime": "ExposureTime",
    "ISOSpeedRatings": "ISO", "MaxApertureValue": "MaxApertureValue",
    "CompressedBitsPerPixel": "CompressedBitsPerPixel", "FocalLengthIn35mmFilm": "FocalLengthIn35mmFormat",
}

#: Where the two readers legitimately differ. Every other disagreement fails the test.
KNOWN_DISAGREEMENTS: dict[tuple[str, str], str] = {}


def _raw_exifkit(record, name):
    """exifkit's value before label mapping, in exiftool's -n units."""
    value = record.get(name)
    if name == "MaxApertureValue" and isinstance(value, (int, float)):
        return 2 ** (value / 2)  # exiftool reports this APEX value as an f-number
    return value


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):  # exifkit collapses runs of blanks; so does the comparison
        return " ".join(str(a).split()) == " ".join(str(b).split())
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def compare(paths):
    out = subprocess.run(["exiftool", "-j", "-n", "-EXIF:all", *map(str, paths)],
                         capture_output=True, text=True, check=False).stdout
    theirs = {item["SourceFile"]: item for item in json.loads(out)}
    checked, disagreements = 0, []
    for p in paths:
        record, ref = read_exif(p), theirs[str(p)]
        for ours_name, their_name in EXIFTOOL_NAMES.items():
            a, b = _raw_exifkit(record, ours_name), ref.get(their_name)
            if isinstance(b, str) and b.strip() in ("undef", "inf", ""):
                b = None
            checked += 1
            if not _same(a, b):
                disagreements.append((p.name, ours_name, a, b))
    return checked, disagreements


def test_reader_agrees_with_exiftool(demo_camera_paths):
    require_tool("exiftool")
    checked, disagreements = compare(demo_camera_paths)
    unexplained = [d for d in disagreements if (d[0], d[1]) not in KNOWN_DISAGREEMENTS]
    agreement = 1 - len(disagreements) / checked
    print(f"\nexiftool agreement: {checked - len(disagreements)}/{checked} tag values "
          f"({agreement:.2%}) over {len(demo_camera_paths)} photos")
    for d in disagreements:
        print("  ", *d, KNOWN_DISAGREEMENTS.get((d[0], d[1]), "UNEXPLAINED"))
    assert not unexplained, unexplained
