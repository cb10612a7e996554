"""exifkit: the SDAIE reproducibility kit (camera-metadata self-supervision for AI-image detection)."""

from .version import __version__


def __getattr__(name):
    """``exifkit.Detector`` without importing torch on ``import exifkit``."""
    if name == "Detector":
        from .detect import Detector

        return Detector
    raise AttributeError(f"module 'exifkit' has no attribute {name!r}")
