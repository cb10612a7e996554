"""exifkit: the SDAIE reproducibility kit (camera-metadata self-supervision for AI-image detection)."""

__version__ = "0.1.0"
