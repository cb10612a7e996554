"""Raw EXIF to normalised Python values.

piexif is the primary reader because it exposes each tag's declared type (so a RATIONAL is never
confused with a pair of SHORTs); Pillow's reader is the fallback for files piexif rejects (PNG eXIf
chunks, some malformed maker-written IFDs).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import piexif
from PIL import Image

from ..data.images import ImageLoadError, path_error

RATIONAL_TYPES = (piexif.TYPES.Rational, piexif.TYPES.SRational)
ASCII_TYPES = (piexif.TYPES.Ascii,)
_IFDS = ("0th", "Exif")

#: Vendor spellings of one maker, matched on the lower-cased, stripped Make string's start.
MAKE_ALIASES: tuple[tuple[str, str], ...] = (
    ("nikon", "Nikon"),
    ("canon", "Canon"),
    ("sony ericsson", "Sony Ericsson"),
    ("sony", "Sony"),
    ("olympus", "Olympus"),
    ("om digital", "Olympus"),
    ("eastman kodak", "Kodak"),
    ("kodak", "Kodak"),
    ("fujifilm", "Fujifilm"),
    ("fuji photo", "Fujifilm"),
    ("hewlett-packard", "HP"),
    ("hp", "HP"),
    ("pentax", "Pentax"),
    ("asahi optical", "Pentax"),
    ("ricoh", "Ricoh"),
    ("samsung", "Samsung"),
    ("panasonic", "Panasonic"),
    ("minolta", "Minolta"),
    ("konica minolta", "Konica Minolta"),
    ("konica", "Konica"),
    ("casio", "Casio"),
    ("sanyo", "Sanyo"),
    ("seiko epson", "Epson"),
    ("epson", "Epson"),
    ("leica", "Leica"),
    ("sigma", "Sigma"),
    ("lge", "LG"),
    ("lg electronics", "LG"),
    ("flir", "FLIR"),
    ("htc", "HTC"),
    ("apple", "Apple"),
    ("gopro", "GoPro"),
    ("motorola", "Motorola"),
    ("nokia", "Nokia"),
    ("huawei", "Huawei"),
    ("xiaomi", "Xiaomi"),
    ("google", "Google"),
)


def clean_text(value) -> str | None:
    """Decode bytes, drop NUL padding and surrounding blanks; empty becomes None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace") if _is_utf8(value) else value.decode("latin-1")
    text = str(value).split("\x00", 1)[0]
    text = re.sub(r"\s+", " ", text).strip()
    return text or None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def canonical_make(raw: str | None) -> str | None:
    """One spelling per maker ("NIKON CORPORATION" and "Nikon" both become "Nikon")."""
    text = clean_text(raw) if raw is not None else None
    if text is None:
        return None
    low = text.lower()
    for prefix, name in MAKE_ALIASES:
        if low == prefix or low.startswith(prefix + " ") or low.startswith(prefix + ",") or (
            len(prefix) > 3 and low.startswith(prefix)
        ):
            return name
    return text


def _rational(num: int, den: int) -> float | None:
    if den == 0:
        return None
    return num / den


def _normalise(value, tag_type: int | None):
    if tag_type in ASCII_TYPES or isinstance(value, (bytes, str)) and tag_type is None:
        return clean_text(value)
    if tag_type in RATIONAL_TYPES:
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return _rational(*value)
        if isinstance(value, tuple) and value and isinstance(value[0], tuple):
            return tuple(_rational(*v) for v in value)
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, tuple):
        return tuple(_normalise(v, None) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if not isinstance(value, float) or math.isfinite(value) else None
    if hasattr(value, "numerator") and hasattr(value, "denominator"):  # Pillow's IFDRational
        return _rational(int(value.numerator), int(value.denominator))
    if isinstance(value, bytes):
        return value  # UNDEFINED blobs stay raw; no target uses them
    return value


@dataclass
class ExifRecord:
    """Normalised EXIF of one file. ``reader`` says which reader succeeded; ``error`` why others failed;
    ``unreadable`` why the file itself could not be read (missing, a folder, no permission), which
    is not the same as a file without EXIF."""

    path: Path
    values: dict[str, object] = field(default_factory=dict)
    reader: str = "none"
    error: str = ""
    unreadable: str = ""

    def get(self, name: str, default=None):
        return self.values.get(name, default)


def _piexif_values(path: Path) -> tuple[dict[str, object], set[str]]:
    """Values by tag name, and the names declared ASCII (whose piexif values may be truncated)."""
    data = piexif.load(str(path))
    out: dict[str, object] = {}
    ascii_names = set()
    for ifd in _IFDS:
        for tag, raw in (data.get(ifd) or {}).items():
            info = piexif.TAGS[ifd].get(tag)
            if info is None:
                continue
            out.setdefault(info["name"], _normalise(raw, info["type"]))
            if info["type"] in ASCII_TYPES:
                ascii_names.add(info["name"])
    return out, ascii_names


def _pillow_values(path: Path) -> dict[str, object]:
    from PIL.ExifTags import IFD, TAGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as img:
            exif = img.getexif()
            items = list(exif.items()) + list(exif.get_ifd(IFD.Exif).items())
    out: dict[str, object] = {}
    for tag, raw in items:
        name = TAGS.get(tag)
        if name is None:
            continue
        out.setdefault(name, _normalise(raw, None))
    return out


def read_exif(path: str | Path) -> ExifRecord:
    """Read every 0th/Exif IFD tag by its EXIF name; a file without EXIF gives an empty record, a
    path that is not a readable file raises :class:`~exifkit.data.images.ImageLoadError`.

    piexif decides the values it can read. Pillow fills two gaps: tags a writer put in the wrong IFD
    (ExposureMode in IFD0, Make in the Exif IFD), which piexif drops, and ASCII values, whose last
    byte piexif discards on the assumption that it is a NUL ("HTC" written without one becomes "HT").
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise path_error(path, exc) from exc
    record = ExifRecord(path)
    errors = []
    try:
        primary, ascii_names = _piexif_values(path)
    except Exception as exc:  # each reader has its own zoo of exceptions on odd files
        primary, ascii_names = {}, set()
        errors.append(f"piexif: {type(exc).__name__}: {exc}")
    try:
        secondary = _pillow_values(path)
    except Exception as exc:
        secondary = {}
        errors.append(f"pillow: {type(exc).__name__}: {exc}")
    values = dict(primary)
    for name, value in secondary.items():
        if name not in values or values[name] is None or (name in ascii_names and isinstance(value, str)):
            values[name] = value
    record.values = values
    record.reader = "piexif" if primary else "pillow" if secondary else "none"
    record.error = "; ".join(errors)
    return record


def read_many(paths) -> list[ExifRecord]:
    """Records in the order given; a file without readable EXIF gives an empty record with the reason,
    a file that cannot be read at all an empty record whose ``unreadable`` says why."""
    records = []
    for p in paths:
        try:
            records.append(read_exif(p))
        except ImageLoadError as exc:
            records.append(ExifRecord(Path(p), error=str(exc), unreadable=exc.cause))
    return records
