"""The ``exifkit`` command: one module per command group, each a thin shell over library functions.
A command imports what it runs when it runs, so that ``exifkit --help`` stays fast."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UserError
from ..runtime import keep_freed_memory
from ..version import __version__
from . import bundle, data, detect, exif, notebooks, study, train

EPILOG = """examples:
  exifkit data verify demo                        check the embedded demo data
  exifkit data fetch extended --mirror DIR        make the extended set available (mirror first)
  exifkit data pack ~/photos --out shards/        pack a photo collection for streaming training
  exifkit pretext train --profile paper --data shards/ --workers 6   train from the shards
  exifkit exif show photo.jpg                     the 14 pretext targets of one photo
  exifkit exif card demo --out results/demo       the EXIF card of a profile's camera photos
  exifkit pretext train --profile demo --resume   (re)start EXIF pretext training
  exifkit reproduce --profile demo                run the notebooks into results/demo/
  exifkit study scaling --profile extended        the data-scaling study (resumable)
  exifkit detect ~/photos --json                  score your own images with the reference bundle
  exifkit binary train --profile extended         train the binary detector against the pretext extractor
  exifkit bundle refit --reals ~/my_photos --from results/extended/bundle --out my_bundle
"""

GROUPS = (data, exif, train, bundle, detect, study, notebooks)  # in the order `exifkit --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exifkit", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Reproduce SDAIE (self-supervised AI-generated image detection from camera metadata): "
                    "data, EXIF labels and the paper's notebooks.")
    parser.add_argument("--version", action="version", version=f"exifkit {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an input or setting error too (bugs always show one)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def _tolerant_streams() -> None:
    """A file name that is not valid in the terminal's encoding is printed escaped, not fatal."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv=None) -> int:
    """User errors (see :mod:`exifkit.errors`) end in one line and exit 2; bugs keep their traceback."""
    _tolerant_streams()
    keep_freed_memory()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (`exifkit detect ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UserError as exc:
        if args.debug:
            raise
        command = " ".join(v for k in ("command", "action", "binary_command", "bundle_command", "course_command",
                                                    "study_command")
                           if isinstance(v := getattr(args, k, None), str))
        print(f"exifkit {command}: {exc}", file=sys.stderr)
        return 2
