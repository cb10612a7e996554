"""The one image loader of the kit.

Every stage reads pixels through :func:`load_rgb`, so every stage sees the same bytes turned into the
same array, and every failure reaches the user as an :class:`ImageLoadError` naming the file and cause.

Pixels are returned in *sensor orientation*: the EXIF Orientation tag is deliberately not applied.
The traces SDAIE learns (demosaicing, the 8x8 JPEG grid, lens and sensor noise) live in the pixel
layout the camera wrote. Rotating by the tag would give portrait and landscape shots of one camera
different residual statistics and make the label depend on how the photographer held the camera.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import UserError

Image.init()  # register every plugin now: Image.open(formats=...) looks them up by name
#: Formats the kit decodes (MPO multi-picture files open through the JPEG plugin). Anything else is
#: refused before a parser runs.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
#: Default ceiling on decoded size: 100 megapixels is above any consumer camera sensor in the data.
DEFAULT_MAX_PIXELS = 100_000_000


class ImageLoadError(UserError):
    """An image that cannot be used, with the file and the cause."""

    cause = "cannot be read"

    def __init__(self, path: str | Path, detail: str = ""):
        self.path = Path(path)
        self.detail = detail
        message = f"{self.path}: {self.cause}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class MissingImageError(ImageLoadError):
    cause = "file not found"


class EmptyImageError(ImageLoadError):
    cause = "file is empty (0 bytes)"


class NotAnImageError(ImageLoadError):
    cause = "not an image in a supported format"


class TruncatedImageError(ImageLoadError):
    cause = "image data is truncated"


class CorruptImageError(ImageLoadError):
    cause = "image data is corrupt"


class ImageTooLargeError(ImageLoadError):
    cause = "image is too large to decode safely (possible decompression bomb)"


class ImageTooSmallError(ImageLoadError):
    cause = "image is smaller than required"


class PermissionDeniedError(ImageLoadError):
    cause = "permission denied"


class BrokenLinkError(ImageLoadError):
    cause = "symbolic link to nothing"


class LinkLoopError(ImageLoadError):
    cause = "symbolic link loop"


class PathTooLongError(ImageLoadError):
    cause = "path too long for the file system"


class NotAFileError(ImageLoadError):
    cause = "not a regular file"


class UnreadablePathError(ImageLoadError):
    cause = "cannot be read"


def path_error(path: str | Path, exc: OSError) -> ImageLoadError:
    """The :class:`ImageLoadError` for an ``OSError`` met while reaching ``path`` (stat, open, list)."""
    path = Path(path)
    code = exc.errno
    if code == errno.ENOENT:
        return BrokenLinkError(path, f"points to {os.readlink(path)}") if path.is_symlink() else MissingImageError(path)
    if code == errno.ELOOP:
        return LinkLoopError(path)
    if code == errno.ENAMETOOLONG:
        return PathTooLongError(path, f"{len(os.fsencode(path))} bytes")
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(path)
    if code == errno.EISDIR:
        return NotAFileError(path, "a folder")
    return UnreadablePathError(path, exc.strerror or str(exc))


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert any decoded mode to RGB uint8 without touching orientation."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        arr = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "P"):
        # Keep the stored colour values and drop alpha: compositing on a background would invent pixels.
        img = img.convert("RGBA")
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return np.asarray(img, dtype=np.uint8)


def _open_file(path: Path):
    """The file opened for reading, or the :class:`ImageLoadError` saying why it cannot be."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise NotAFileError(path, "a folder" if stat.S_ISDIR(info.st_mode) else "a device, socket or pipe")
        if info.st_size == 0:
            raise EmptyImageError(path)
        return open(path, "rb")
    except OSError as exc:
        raise path_error(path, exc) from exc


@contextmanager
def _decoding(path: Path):
    """Whatever Pillow raises while parsing ``path``, as the ImageLoadError that names its cause."""
    try:
        with warnings.catch_warnings():
            # The size is checked by the caller against its ``max_pixels``, so Pillow's own 89.5 MP
            # warning is not what decides; its hard limit (twice that) is mapped to ImageTooLargeError.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Pillow warns about malformed metadata it parses on the way; the pixels are what is read.
            warnings.simplefilter("ignore", UserWarning)
            yield
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(path, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError(path, f"allowed formats: {', '.join(ALLOWED_FORMATS)}") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file system, not the decoder (a disk error, a file pulled away)
            raise path_error(path, exc) from exc
        text = str(exc)
        if "truncated" in text.lower() or "premature end" in text.lower():
            raise TruncatedImageError(path, text) from exc
        raise CorruptImageError(path, text) from exc
    except (ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        raise CorruptImageError(path, f"{type(exc).__name__}: {exc}") from exc


def load_rgb(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 array in sensor orientation (first frame only)."""
    path = Path(path)
    with _open_file(path) as handle:
        return _decode(handle, path, max_pixels, min_side)


def decode_rgb(data: bytes, name: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1) -> np.ndarray:
    """:func:`load_rgb` of a file's bytes already in memory (read from a shard); ``name`` is what
    errors say."""
    if not data:
        raise EmptyImageError(name)
    return _decode(io.BytesIO(data), Path(name), max_pixels, min_side)


def _decode(handle, path: Path, max_pixels: int, min_side: int) -> np.ndarray:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process; exifkit refuses to decode "
            "truncated files silently. Set it back to False."
        )
    with _decoding(path), Image.open(handle, formats=ALLOWED_FORMATS) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLargeError(path, f"{width}x{height} exceeds {max_pixels:,} pixels")
        if min(width, height) < min_side:
            raise ImageTooSmallError(path, f"{width}x{height}, need at least {min_side} px per side")
        img.seek(0)
        img.load()
        return _to_rgb8(img)


def probe_image(path: str | Path) -> str:
    """The format of an image file from its header alone (no pixels decoded): a cheap "is this an
    image the kit reads?" for tools that only need its metadata."""
    path = Path(path)
    with _open_file(path) as handle, _decoding(path), Image.open(handle, formats=ALLOWED_FORMATS) as img:
        return img.format


@dataclass
class FailureReport:
    """Collects per-file failures so dataset code can go on and show the user everything at the end."""

    failures: list[ImageLoadError] = field(default_factory=list)

    def add(self, error: ImageLoadError) -> None:
        self.failures.append(error)

    def __len__(self) -> int:
        return len(self.failures)

    def __bool__(self) -> bool:
        return bool(self.failures)

    def rows(self) -> list[dict[str, str]]:
        return [{"file": str(e.path), "cause": e.cause, "detail": e.detail} for e in self.failures]

    def to_markdown(self) -> str:
        if not self.failures:
            return "All images decoded."
        lines = [f"{len(self.failures)} image(s) could not be used:", "", "| file | cause | detail |", "|---|---|---|"]
        lines += [f"| {r['file']} | {r['cause']} | {r['detail']} |" for r in self.rows()]
        return "\n".join(lines)


def load_many(paths, **kwargs) -> tuple[dict[Path, np.ndarray], FailureReport]:
    """Load each path; failures go to the report instead of stopping the run or vanishing."""
    images: dict[Path, np.ndarray] = {}
    report = FailureReport()
    for p in paths:
        try:
            images[Path(p)] = load_rgb(p, **kwargs)
        except ImageLoadError as exc:
            report.add(exc)
    return images, report
