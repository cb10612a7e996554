"""``exifkit exif``: the pretext targets of image files, and EXIF cards."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import available_profiles, data_store, load_profile
from ..errors import MissingInputError, TooFewImagesError


def _camera_records(args):
    """(name, records) of a profile's camera photos or of the images in a folder; a folder's files
    that are not images the kit reads, and paths that cannot be reached, are named on stderr."""
    from ..data.images import ImageLoadError, probe_image
    from ..data.inputs import collect_files
    from ..exif.read import read_many

    if args.target in available_profiles():
        store = data_store(load_profile(args.target), mirrors=args.mirror)
        entries = [e for e in store.manifest if e.kind == "camera"]
        return args.target, read_many(store.path(e) for e in entries)
    target = Path(args.target)
    if not target.is_dir():
        raise MissingInputError(f"{target}: not a profile ({', '.join(available_profiles())}) and not a folder")
    found = collect_files([target])
    images = []
    for path in found.files:
        try:
            probe_image(path)
            images.append(path)
        except ImageLoadError as exc:
            found.problems.add(exc)
    for problem in found.problems.failures:
        print(f"exifkit exif card: skipped {problem}", file=sys.stderr)
    if not images:
        raise TooFewImagesError(f"{target}: no image files to describe ({found.note()})")
    return target.name, read_many(images)


def cmd_exif_card(args) -> int:
    from ..exif.schema import LabelConfig, build_labels, exif_card, write_card

    name, records = _camera_records(args)
    config = load_profile(args.target).label_config() if args.target in available_profiles() else LabelConfig()
    card = exif_card(build_labels(records, config), name, records)
    out = Path(args.out) if args.out else Path("results") / name
    for path in write_card(card, out):
        print(path)
    return 0


def cmd_exif_show(args) -> int:
    """Exit 1 if any file has no EXIF or cannot be read; each is named with the reason."""
    from ..data.images import ImageLoadError
    from ..exif.read import read_exif
    from ..exif.schema import TAGS

    status = 0
    for path in args.files:
        try:
            record = read_exif(path)
        except ImageLoadError as exc:
            print(f"exifkit exif show: {exc}", file=sys.stderr)
            status = 1
            continue
        if not record.values:
            print(f"{path}: no EXIF ({record.error or 'no EXIF block'})", file=sys.stderr)
            status = 1
            continue
        values = {t.name: t.value(record) for t in TAGS}
        print(json.dumps({"file": str(path), "reader": record.reader, **values}, indent=2, default=str))
    return status


def register(sub) -> None:
    exif = sub.add_parser("exif", help="read EXIF targets and build EXIF cards")
    esub = exif.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = esub.add_parser("show", help="print the 14 pretext targets of image files")
    show.add_argument("files", nargs="+", type=Path)
    show.set_defaults(func=cmd_exif_show)
    card = esub.add_parser("card", help="write the EXIF card (JSON + Markdown) of a profile or a folder")
    card.add_argument("target", help="profile name (its camera photos) or a folder of images")
    card.add_argument("--out", type=Path, default=None, help="output folder (default results/<name>)")
    card.add_argument("--mirror", action="append", default=[], type=Path, metavar="DIR")
    card.set_defaults(func=cmd_exif_card)
