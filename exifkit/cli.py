"""The ``exifkit`` command. Each subcommand is a thin shell over a library function."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .config import available_profiles, data_store, load_profile

EPILOG = """examples:
  exifkit data verify demo                        check the embedded demo data
  exifkit data fetch extended --mirror DIR        make the extended set available (mirror first)
  exifkit exif show photo.jpg                     the 14 pretext targets of one photo
  exifkit exif card demo --out results/demo       the EXIF card of a profile's camera photos
  exifkit pretext train --profile demo --resume   (re)start EXIF pretext training
  exifkit reproduce --profile demo                run the notebooks into results/demo/
  exifkit detect ~/photos --json                  score your own images with the demo bundle
"""


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


def _camera_records(args):
    from .exif.read import read_many

    if args.target in available_profiles():
        store = data_store(load_profile(args.target), mirrors=args.mirror)
        entries = [e for e in store.manifest if e.kind == "camera"]
        return args.target, read_many(store.path(e) for e in entries)
    paths = sorted(p for p in Path(args.target).rglob("*") if p.is_file())
    return Path(args.target).name, read_many(paths)


def cmd_exif_card(args) -> int:
    from .exif.schema import LabelConfig, build_labels, exif_card, write_card

    name, records = _camera_records(args)
    config = LabelConfig()
    if args.target in available_profiles():
        config.max_classes.update(load_profile(args.target).exif_max_classes)
    card = exif_card(build_labels(records, config), name, records)
    out = Path(args.out) if args.out else Path("results") / name
    for path in write_card(card, out):
        print(path)
    return 0


def cmd_exif_show(args) -> int:
    from .exif.read import read_exif
    from .exif.schema import TAGS

    status = 0
    for path in args.files:
        record = read_exif(path)
        if not record.values:
            print(f"{path}: no EXIF ({record.error or 'no EXIF block'})", file=sys.stderr)
            status = 1
            continue
        values = {t.name: t.value(record) for t in TAGS}
        print(json.dumps({"file": str(path), "reader": record.reader, **values}, indent=2, default=str))
    return status


def cmd_reproduce(args) -> int:
    from .runner import NotebookFailed, run_notebooks

    profile = load_profile(args.profile)
    try:
        params = {}
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value  # a bare string
        result = run_notebooks(profile, names=args.notebooks or (), output_dir=args.output, parameters=params)
    except NotebookFailed as exc:
        print(f"exifkit reproduce: {exc}", file=sys.stderr)
        return 1
    print(f"provenance: {result.provenance}")
    return 0


def cmd_pretext_train(args) -> int:
    from .exif.read import read_many
    from .exif.schema import LabelConfig
    from .pretext import run_pretext

    profile = load_profile(args.profile)
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_pairs", args.batch_pairs),
                                   ("device", args.device)) if v is not None}
    config = profile.pretext_config(**overrides)
    store = data_store(profile, mirrors=args.mirror)
    paths = [store.path(e) for e in store.manifest if e.kind == "camera"]
    labels = LabelConfig()
    labels.max_classes.update(profile.exif_max_classes)
    out = args.out or profile.results_dir() / "pretext"
    result, table, train, heldout = run_pretext(paths, read_many(paths), config, out, labels,
                                                resume=args.resume, progress=not args.quiet)
    if table is not None:
        for report in (train.failures, heldout.failures):
            if report:
                print(report.to_markdown(), file=sys.stderr)
        print(table.to_string(index=False))
        print(f"checkpoint: {result.checkpoint}  ({result.pairs_per_second:.2f} pairs/s)")
    return 0


def cmd_detect(args) -> int:
    import csv
    from dataclasses import asdict

    from .config import find_root
    from .detect import BundleError, Detector, expand_paths

    bundle = args.bundle or find_root() / "results" / "demo" / "bundle"
    try:
        detector = Detector.from_bundle(bundle)
    except BundleError as exc:
        print(f"exifkit detect: {exc}", file=sys.stderr)
        return 2
    results, errors = detector.score_paths(expand_paths(args.paths))
    rows = [asdict(r) for r in results]
    if args.json:
        print(json.dumps({"results": rows, "errors": [{"path": str(e.path), "error": str(e)} for e in errors]},
                         indent=2))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["path"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        for r in results:
            print(f"{r.path}\n  one-class: log-likelihood {r.loglik:10.1f} -> {r.oneclass_verdict:12s}"
                  f"  binary: P(fake) {r.p_fake:.3f} -> {r.binary_verdict}")
    for e in errors:
        print(f"exifkit detect: {e}", file=sys.stderr)
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exifkit", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Reproduce SDAIE (self-supervised AI-generated image detection from camera metadata): "
                    "data, EXIF labels and the paper's notebooks.")
    parser.add_argument("--version", action="version", version=f"exifkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    tr.add_argument("--mirror", action="append", default=[], type=Path, metavar="DIR")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_pretext_train)

    det = sub.add_parser("detect", help="score image files and folders with both detectors (pixels only)",
                         description="Scores every image with the one-class GMM (log-likelihood; low = AI-generated) "
                                     "and the binary detector (P(fake)). EXIF is never read. Exit status 1 if "
                                     "any file could not be scored.")
    det.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    det.add_argument("--bundle", type=Path, default=None, help="model bundle (default results/demo/bundle)")
    fmt = det.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable JSON")
    fmt.add_argument("--csv", action="store_true", help="CSV on standard output")
    det.set_defaults(func=cmd_detect)

    rep = sub.add_parser("reproduce", help="run the numbered notebooks with papermill into results/<profile>/")
    rep.add_argument("--profile", default="demo", choices=available_profiles())
    rep.add_argument("--notebooks", nargs="*", metavar="NN", help="only these notebooks (e.g. 00 01)")
    rep.add_argument("--output", type=Path, default=None, help="output folder (default results/<profile>)")
    rep.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a notebook parameter, e.g. --param steps=50 (JSON values)")
    rep.set_defaults(func=cmd_reproduce)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"exifkit: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
