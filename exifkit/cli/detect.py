"""``exifkit detect``: score image files and folders with a bundle's two detectors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..model.extractor import PRECISIONS


def cmd_detect(args) -> int:
    """Results stream to stdout as each image is scored (JSON: one document at the end); every path
    that cannot be scored is named on stderr as it is met. Exit 0: all scored; 1: some could not be."""
    import csv
    from dataclasses import asdict, fields

    from tqdm import tqdm

    from ..config import find_root
    from ..data.images import ImageLoadError
    from ..data.inputs import collect_files
    from ..bundle import default_bundle
    from ..detect import Detector, Score

    bundle = args.bundle or default_bundle(find_root())
    detector = Detector.from_bundle(bundle, precision=args.precision)
    for warning in detector.warnings:
        print(f"exifkit detect: warning: {warning}", file=sys.stderr)
    found = collect_files(args.paths)
    errors = list(found.problems.failures)
    for e in errors:
        print(f"exifkit detect: {e}", file=sys.stderr)
    if found.hidden:
        print(f"exifkit detect: {found.note()}", file=sys.stderr)
    rows = []
    writer = csv.DictWriter(sys.stdout, fieldnames=[f.name for f in fields(Score)]) if args.csv else None
    if writer and found.files:
        writer.writeheader()
    with tqdm(total=len(found.files), file=sys.stderr, unit="image", leave=False,
              disable=args.quiet or not sys.stderr.isatty()) as bar:
        for _, outcome in detector.iter_scores(found.files):
            bar.update()
            if isinstance(outcome, ImageLoadError):
                errors.append(outcome)
                bar.write(f"exifkit detect: {outcome}", file=sys.stderr)
            elif args.json:
                rows.append(asdict(outcome))
            elif writer:
                writer.writerow(asdict(outcome))
            else:
                bar.write(f"{outcome.path}\n  one-class: log-likelihood {outcome.loglik:10.1f} -> "
                          f"{outcome.oneclass_verdict:12s}  binary: P(fake) {outcome.p_fake:.3f} -> "
                          f"{outcome.binary_verdict}", file=sys.stdout)
            sys.stdout.flush()
    if args.json:
        about = {"path": str(bundle), "profile": detector.meta.get("profile", ""),
                 "training_manifest_sha256": detector.meta.get("training_manifest_sha256", ""),
                 "oneclass_threshold": detector.oneclass.threshold_, "binary_threshold": detector.binary_threshold,
                 "warnings": detector.warnings}
        print(json.dumps({"bundle": about, "results": rows,
                          "errors": [{"path": str(e.path), "cause": e.cause, "error": str(e)} for e in errors]},
                         indent=2))
    if not found.files and not errors:
        print("exifkit detect: nothing to score", file=sys.stderr)
    return 1 if errors or not found.files else 0


def register(sub) -> None:
    det = sub.add_parser("detect", help="score image files and folders with both detectors (pixels only)",
                         description="Scores every image with the one-class GMM (log-likelihood; low = AI-generated) "
                                     "and the binary detector (P(fake)). EXIF is never read. Folders are searched "
                                     "recursively, links followed, names starting with '.' skipped (and counted). "
                                     "Exit status 0: every file scored; 1: some path could not be scored (each is "
                                     "named, the rest are scored); 2: the command could not run (bundle, arguments).")
    det.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    det.add_argument("--bundle", type=Path, default=None,
                     help="model bundle (default: the shipped reference, results/extended/bundle; "
                          "results/demo/bundle for the demo's own)")
    det.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
    det.add_argument("--precision", choices=PRECISIONS, default="auto",
                     help="of the networks' convolutions: auto (bf16 products where the CPU has AVX512-BF16, "
                          "scores within about 1 %% of fp32's), bf16, or fp32 (default: auto)")
    fmt = det.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable JSON")
    fmt.add_argument("--csv", action="store_true", help="CSV on standard output")
    det.set_defaults(func=cmd_detect)
