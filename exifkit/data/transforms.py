"""Lossless JPEG crops, the only transform applied to stored camera photos.

A crop in the DCT domain (``jpegtran -crop``) keeps the camera's own quantisation tables, its 8x8
block grid and every EXIF byte; a decode/re-encode would overwrite exactly the traces the pretext
task learns. Offsets are aligned to 16 px so they fall on an MCU boundary for every chroma subsampling.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from PIL import Image

MCU = 16
_CROP = re.compile(r"jpegtran -crop (\d+)x(\d+)\+(\d+)\+(\d+)")
_CENTER = re.compile(r"center crop (\d+) from (\d+)x(\d+)")


class TransformError(Exception):
    pass


def jpegtran() -> str:
    exe = shutil.which("jpegtran")
    if exe is None:
        raise TransformError(
            "jpegtran is not installed (Debian/Ubuntu: apt-get install libjpeg-turbo-progs; "
            "conda: libjpeg-turbo); it is needed to reproduce lossless crops"
        )
    return exe


def mcu_center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(w, h, x, y) of a central crop whose offsets sit on the MCU grid."""
    w, h = min(size, width), min(size, height)
    x = ((width - w) // 2) // MCU * MCU
    y = ((height - h) // 2) // MCU * MCU
    return w, h, x, y


def crop_spec(w: int, h: int, x: int, y: int) -> str:
    return f"jpegtran -crop {w}x{h}+{x}+{y} -copy all"


def lossless_crop(src: Path, dst: Path, box: tuple[int, int, int, int]) -> None:
    w, h, x, y = box
    if x % MCU or y % MCU:
        raise TransformError(f"{src}: crop offsets {x},{y} are not multiples of {MCU}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    cmd = [jpegtran(), "-copy", "all", "-crop", f"{w}x{h}+{x}+{y}", "-outfile", str(tmp), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise TransformError(f"{src}: jpegtran failed: {result.stderr.strip()}")
    tmp.replace(dst)


def apply_transform(spec: str, src: Path, dst: Path) -> None:
    """Reproduce a manifest ``transform`` on a verified source file."""
    if m := _CROP.search(spec):
        lossless_crop(src, dst, tuple(int(v) for v in m.groups()))
        return
    if m := _CENTER.search(spec):
        size = int(m.group(1))
        with Image.open(src) as img:
            width, height = img.size
        lossless_crop(src, dst, mcu_center_crop_box(width, height, size))
        return
    raise TransformError(f"{src}: no automatic way to reproduce transform {spec!r}")
