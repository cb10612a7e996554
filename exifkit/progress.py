"""Progress bars: Jupyter widgets where they are installed, text on a terminal, none in notebooks that
``exifkit reproduce`` executes (their saved outputs would hold every update of every bar)."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager


def progress_bar(*args, **kwargs):
    """``tqdm.auto.tqdm`` when ipywidgets is importable; plain ``tqdm`` otherwise, since tqdm.auto then
    warns in every notebook and falls back to text anyway. Under :func:`bars_disabled` there is no bar
    even where the caller asked for one."""
    if os.environ.get("TQDM_DISABLE") == "1":
        kwargs["disable"] = True
    try:
        import ipywidgets  # noqa: F401

        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm(*args, **kwargs)


@contextmanager
def bars_disabled():
    """No progress bars in processes started inside (tqdm reads ``TQDM_DISABLE``): papermill kernels."""
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def import_pooch():
    """pooch imports ``tqdm.auto`` at import, which warns in a notebook without ipywidgets."""
    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import pooch
    return pooch
