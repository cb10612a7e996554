"""``exifkit data``: list, fetch, verify and pack datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..config import available_profiles, data_store, load_profile
from ..errors import MissingInputError


def _store(args):
    profile = load_profile(args.name)
    return data_store(profile, mirrors=args.mirror, cache_dir=args.cache)


def cmd_data_list(args) -> int:
    for name in available_profiles():
        p = load_profile(name)
        print(f"{name:9s} {p.manifest:13s} {p.description}")
    return 0


def cmd_data_verify(args) -> int:
    report = _store(args).verify(progress=not args.quiet)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_data_fetch(args) -> int:
    report = _store(args).fetch(progress=not args.quiet)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_data_pack(args) -> int:
    from ..data.shards import folder_items, list_items, pack, profile_items
    from ..exif.schema import LabelConfig

    kind = "binary" if args.binary else "pretext"
    labels = LabelConfig()
    if args.source in available_profiles():
        profile = load_profile(args.source)
        labels = profile.label_config()
        items, problems = profile_items(profile, data_store(profile, mirrors=args.mirror), args.binary), None
    elif Path(args.source).is_dir():
        items, problems = folder_items(args.source, args.binary, args.label)
    elif Path(args.source).is_file():
        items, problems = list_items(args.source, args.binary, args.label)
    else:
        raise MissingInputError(f"{args.source}: not a profile ({', '.join(available_profiles())}), a folder or "
                                "a file list")
    for problem in (problems.failures if problems else []):
        print(f"exifkit data pack: skipped {problem}", file=sys.stderr)
    report = pack(items, args.out, kind=kind, shard_size=args.shard_size, workers=args.workers, max_side=args.max_side,
                  label_config=labels, source=str(args.source), progress=not args.quiet)
    for failure in report.failures:
        print(f"exifkit data pack: {failure['file']}: {failure['cause']} ({failure['detail']})", file=sys.stderr)
    print(report.summary())
    return 1 if report.failures or problems else 0


def register(sub) -> None:
    data = sub.add_parser("data", help="list, fetch and verify datasets")
    dsub = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    dsub.add_parser("list", help="the profiles and their manifests").set_defaults(func=cmd_data_list)
    for action, func, text in (("fetch", cmd_data_fetch, "make every file available, checking sha256"),
                               ("verify", cmd_data_verify, "name every missing or corrupt file")):
        p = dsub.add_parser(action, help=text, description=text)
        p.add_argument("name", choices=available_profiles(), help="dataset (profile) name")
        p.add_argument("--mirror", action="append", default=[], type=Path, metavar="DIR",
                       help="local folder laid out like the manifest, tried before downloading (repeatable)")
        p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                       help="download cache (default: $EXIFKIT_CACHE or ~/.cache/exifkit)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=func)

    pk = dsub.add_parser("pack", help="pack photos into shards for streaming training (original bytes, EXIF targets)",
                         description="Packs a folder of photos, or a profile's pretext photos, into tar shards in "
                                     "WebDataset's layout, with the EXIF targets, sha256 and vocabularies. Resumable: "
                                     "rerun the same command after an interruption. Exit status 1 if any file could "
                                     "not be packed (each is named, and listed in SHARDS/failures.csv).")
    pk.add_argument("source", help="a folder (searched recursively), a text file listing files or folders one "
                    "per line, or a profile name")
    pk.add_argument("--out", type=Path, required=True, metavar="SHARDS", help="folder of the shards")
    pk.add_argument("--binary", action="store_true", help="a real/fake training set: labels from --label or from "
                    "0_real/1_fake folders (the CNNSpot layout); a profile gives its binary training images")
    pk.add_argument("--label", choices=("real", "fake"), default=None, help="with --binary: every file of the folder")
    pk.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    pk.add_argument("--max-side", type=int, default=None, help="store JPEGs larger than this as their central "
                    "crop, cut losslessly by jpegtran (default: the original files)")
    pk.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="packing processes")
    pk.add_argument("--mirror", action="append", default=[], type=Path, metavar="DIR")
    pk.add_argument("--quiet", action="store_true")
    pk.set_defaults(func=cmd_data_pack)
