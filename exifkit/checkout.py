"""Where the kit's checkout is: the folder that every path of a profile (``data_manifests/``,
``results/``) is relative to."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MissingInputError

ROOT_ENV = "EXIFKIT_ROOT"


def find_root(start: Path | None = None) -> Path:
    """The kit's checkout: ``$EXIFKIT_ROOT``, else the nearest folder up from ``start`` (or the cwd,
    then this package) that holds ``data_manifests/``."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    for base in (start or Path.cwd(), Path(__file__).resolve().parent):
        for d in (base.resolve(), *base.resolve().parents):
            if (d / "data_manifests").is_dir():
                return d
    raise MissingInputError(
        f"cannot find the exifkit checkout (a folder with data_manifests/); set {ROOT_ENV}"
    )
