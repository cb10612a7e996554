"""The SDAIE network: fixed SRM residuals, a small CNN, covariance pooling and a patch Transformer."""

from .extractor import Extractor, ExtractorConfig, ExtractorOutput, count_trainable
from .heads import PretextHeads, head_sizes
from .official import OfficialModel, load_official, save_official

__all__ = ["Extractor", "ExtractorConfig", "ExtractorOutput", "PretextHeads", "OfficialModel",
           "count_trainable", "head_sizes", "load_official", "save_official"]
