"""``exifkit bundle``: build a profile's shipped bundle, refit one on your reals, or convert the authors'."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import available_profiles, load_profile


def _bundle_report(path, report, failures) -> int:
    if failures:
        print(failures.to_markdown(), file=sys.stderr)
    print(json.dumps({"bundle": str(path), **report}, indent=2))
    print(f"held-out false-positive rate {report['held_out_false_positive_rate']:.3f} on "
          f"{report['held_out_for_threshold']} of your reals kept out of fitting", file=sys.stderr)
    return 0


def cmd_bundle_build(args) -> int:
    from ..pipeline import build_bundle

    profile = load_profile(args.profile)
    built = build_bundle(profile, args.results, args.extractor)
    print(f"bundle: {built.path}\nreference scores: {built.reference_scores}")
    if built.model_card:
        print(f"model card: {built.model_card}")
    else:
        print(f"no model card: the evaluation tables {', '.join(built.missing_tables)} are not in "
              f"{Path(args.results or profile.results_dir()) / 'tables'}", file=sys.stderr)
    return 0


def cmd_bundle_refit(args) -> int:
    from ..bundle import refit_bundle

    return _bundle_report(*refit_bundle(args.source, args.reals, args.out, progress=not args.quiet))


def cmd_bundle_from_official(args) -> int:
    from ..bundle import bundle_from_official

    return _bundle_report(*bundle_from_official(args.backbone, args.reals, args.out, args.binary,
                                                args.max_patches, progress=not args.quiet))


def register(sub) -> None:
    bun = sub.add_parser("bundle", help="make detector bundles for your own data or from the authors' checkpoints")
    bsub2 = bun.add_subparsers(dest="bundle_command", required=True)
    bld = bsub2.add_parser("build", help="assemble a profile's shipped bundle from its trained runs")
    bld.add_argument("--profile", default="demo", choices=available_profiles())
    bld.add_argument("--results", type=Path, default=None, help="the results folder (default results/<profile>)")
    bld.add_argument("--extractor", default=None, help="pretext (the profile's own run), reference, or a bundle "
                                                         "folder (default: the profile's [evaluation] extractor)")
    bld.set_defaults(func=cmd_bundle_build)
    ref = bsub2.add_parser("refit", help="refit a bundle's one-class detector on a folder of your own real photos")
    ref.add_argument("--reals", type=Path, required=True, help="folder of real photos (searched recursively)")
    ref.add_argument("--from", dest="source", type=Path, required=True, help="the bundle to start from")
    ref.add_argument("--out", type=Path, required=True, help="folder of the new bundle")
    ref.add_argument("--quiet", action="store_true")
    ref.set_defaults(func=cmd_bundle_refit)
    off = bsub2.add_parser("from-official", help="a bundle from the authors' released checkpoints")
    off.add_argument("--backbone", type=Path, required=True, help="the authors' pretext checkpoint (pretrained.pth)")
    off.add_argument("--binary", type=Path, default=None, help="the authors' binary checkpoint (bc/pretrained.pth)")
    off.add_argument("--reals", type=Path, required=True, help="folder of real photos to fit the one-class detector")
    off.add_argument("--out", type=Path, required=True, help="folder of the new bundle")
    off.add_argument("--max-patches", type=int, default=256, help="patches per image at most (default 256)")
    off.add_argument("--quiet", action="store_true")
    off.set_defaults(func=cmd_bundle_from_official)
