"""``exifkit pretext train`` and ``exifkit binary train``, single process or under torchrun."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import available_profiles, load_profile


def _report(failures) -> None:
    for report in failures:
        if report:
            print(report.to_markdown(), file=sys.stderr)


def cmd_pretext_train(args) -> int:
    from ..pipeline import train_pretext_stage

    overrides = {k: v for k, v in (("steps", args.steps), ("batch_pairs", args.batch_pairs),
                                   ("device", args.device), ("workers", args.workers)) if v is not None}
    stage = train_pretext_stage(load_profile(args.profile), args.out, data=args.data, mirrors=args.mirror,
                                resume=args.resume, progress=not args.quiet, **overrides)
    result = stage.result
    if args.data is not None:
        print(f"checkpoint: {result.checkpoint}  ({result.pairs_per_second:.2f} pairs/s, streamed from {args.data}); "
              "not evaluated here: score held-out photos with exifkit.pretext.evaluate_pretext")
    elif stage.heldout is not None:
        _report(stage.failures)
        print(stage.heldout.to_string(index=False))
        print(f"checkpoint: {result.checkpoint}  ({result.pairs_per_second:.2f} pairs/s)")
    return 0


def cmd_binary_train(args) -> int:
    from ..pipeline import train_binary_stage

    overrides = {k: v for k, v in (("steps", args.steps), ("alpha", args.alpha), ("device", args.device),
                                   ("workers", args.workers), ("seed", args.seed)) if v is not None}
    stage = train_binary_stage(load_profile(args.profile), args.out, pretext=args.pretext, data=args.data,
                               mirrors=args.mirror, resume=args.resume, progress=not args.quiet, **overrides)
    result = stage.result
    if args.data is not None:
        print(f"checkpoint: {result.checkpoint}  ({result.images_per_second:.2f} images/s, streamed from {args.data})")
        return 0
    _report(stage.failures)
    print(f"checkpoint: {result.checkpoint}  ({result.images_per_second:.2f} images/s, {stage.training_images} "
          f"training images, {stage.validation_images} kept for validation)")
    return 0


def register(sub) -> None:
    pre = sub.add_parser("pretext", help="EXIF pretext training (single process or under torchrun)")
    psub = pre.add_subparsers(dest="action", required=True, metavar="ACTION")
    tr = psub.add_parser("train", help="train the extractor on a profile's camera photos, then evaluate it",
                         description="Runs as one process, or as N with: torchrun --nproc_per_node=N "
                                     "-m exifkit.cli pretext train ...")
    tr.add_argument("--profile", default="demo", choices=available_profiles())
    tr.add_argument("--out", type=Path, default=None, help="run folder (default results/<profile>/pretext)")
    tr.add_argument("--steps", type=int, default=None, help="total steps (default: the profile's)")
    tr.add_argument("--batch-pairs", type=int, default=None, help="pairs per process per step")
    tr.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, ...")
    tr.add_argument("--resume", action="store_true", help="continue from RUN/last.pt exactly")
    tr.add_argument("--data", type=Path, default=None, metavar="SHARDS",
                    help="stream the photos from a packed collection (exifkit data pack) instead of the profile's")
    tr.add_argument("--workers", type=int, default=None, help="with --data: DataLoader workers decoding the photos")
    tr.add_argument("--mirror", action="append", default=[], type=Path, metavar="DIR")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_pretext_train)

    bin_ = sub.add_parser("binary", help="binary detector training (single process or under torchrun)")
    bsub = bin_.add_subparsers(dest="binary_command", required=True)
    btr = bsub.add_parser("train", help="train the binary detector of a profile against its frozen pretext extractor")
    btr.add_argument("--profile", default="demo", choices=available_profiles())
    btr.add_argument("--alpha", type=float, default=None, help="regulariser weight (default: the profile's)")
    btr.add_argument("--pretext", type=Path, default=None, help="the frozen extractor: a pretext run folder (default results/<profile>/pretext) "
                     "or a bundle folder")
    btr.add_argument("--out", type=Path, default=None, help="run folder (default results/<profile>/binary/alpha=A)")
    btr.add_argument("--steps", type=int, default=None, help="total steps (default: the profile's)")
    btr.add_argument("--seed", type=int, default=None,
                     help="training seed: validation share, batches, crops (default: the profile's); the test "
                          "split stays the profile's, so runs of several seeds measure run-to-run spread")
    btr.add_argument("--device", default=None, help="auto (default), cpu, cuda, ...")
    btr.add_argument("--resume", action="store_true", help="continue from RUN/last.pt exactly")
    btr.add_argument("--data", type=Path, default=None, metavar="SHARDS",
                     help="stream a real/fake set packed with `exifkit data pack --binary` instead of the profile's")
    btr.add_argument("--workers", type=int, default=None, help="with --data: DataLoader workers decoding the images")
    btr.add_argument("--mirror", action="append", default=[], type=Path, metavar="DIR")
    btr.add_argument("--quiet", action="store_true")
    btr.set_defaults(func=cmd_binary_train)
