"""The ``exifkit`` command. Each subcommand is a thin shell over a library function."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .version import __version__
from .config import available_profiles, data_store, load_profile
from .errors import MissingInputError, SettingError, TooFewImagesError, UserError
from .runtime import keep_freed_memory

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
    from .data.shards import folder_items, list_items, pack, profile_items
    from .exif.schema import LabelConfig

    kind = "binary" if args.binary else "pretext"
    labels = LabelConfig()
    if args.source in available_profiles():
        profile = load_profile(args.source)
        labels.max_classes.update(profile.exif_max_classes)
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


def _camera_records(args):
    """(name, records) of a profile's camera photos or of the images in a folder; a folder's files
    that are not images the kit reads, and paths that cannot be reached, are named on stderr."""
    from .data.images import ImageLoadError, probe_image
    from .data.inputs import collect_files
    from .exif.read import read_many

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
    """Exit 1 if any file has no EXIF or cannot be read; each is named with the reason."""
    from .data.images import ImageLoadError
    from .exif.read import read_exif
    from .exif.schema import TAGS

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


def cmd_course_student(args) -> int:
    from .config import find_root
    from .course import write_student

    written = write_student(find_root(), args.out)
    print(f"{len(written)} files written to {args.out}: solutions replaced by stubs and empty answer cells")
    return 0


def cmd_course_site(args) -> int:
    from .config import find_root
    from .course import build_site

    root = find_root()
    executed = args.executed or root / "results" / args.profile
    out = args.out or root / "results" / "site" / args.profile
    index = build_site(executed, out, title=f"exifkit: SDAIE, the {args.profile} profile",
                       guide=root / "notebooks" / "COURSE.md")
    print(f"site: {index}")
    return 0


def cmd_course_list(args) -> int:
    from .config import find_root
    from .course import exercise_table

    table = exercise_table(find_root())
    print(table.to_markdown(index=False))
    print(f"\n{len(table)} exercises: " + ", ".join(f"{n} {k}" for k, n in table["kind"].value_counts().items()))
    return 0


def cmd_reproduce(args) -> int:
    from .runner import NotebookFailed, run_notebooks

    profile = load_profile(args.profile)
    try:
        params = {}
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep:
                raise SettingError(f"--param expects KEY=VALUE, got {item!r}")
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
                                   ("device", args.device), ("workers", args.workers)) if v is not None}
    config = profile.pretext_config(**overrides)
    if config.streaming and args.data is None:
        raise SettingError(f"the {profile.name} profile trains from packed shards: `exifkit data pack PHOTOS --out "
                           "SHARDS`, then add --data SHARDS")
    if args.data is not None:
        from .data.shards import Shards
        from .pretext import train_pretext

        out = args.out or profile.results_dir() / "pretext"
        result = train_pretext(config, Shards.open(args.data), out, resume=args.resume, progress=not args.quiet)
        print(f"checkpoint: {result.checkpoint}  ({result.pairs_per_second:.2f} pairs/s, streamed from {args.data}); "
              "not evaluated here: score held-out photos with exifkit.pretext.evaluate_pretext")
        return 0
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


def binary_run_folder(results: Path, config, profile) -> Path:
    """``results/binary/alpha=A``, the folder notebooks 04-05 read; another seed's run goes beside it
    (``alpha=A,seed=S``), so measuring the spread over seeds never overwrites the profile's run."""
    name = f"alpha={config.alpha:g}"
    return results / "binary" / (name if config.seed == profile.seed else f"{name},seed={config.seed}")


def cmd_study_scaling(args) -> int:
    from .scaling import ScalingConfig, run_study, save_study

    profile = load_profile(args.profile)
    store = data_store(profile, mirrors=args.mirror)
    out = args.out or profile.results_dir() / "scaling"
    result = run_study(profile, store, out, fake_axis_too=not args.no_fake_axis, score=not args.train_only,
                       progress=not args.quiet)
    if result is None:
        print(f"trained every run under {out}; score them with the same command without --train-only")
        return 0
    paths = save_study(result, ScalingConfig.from_profile(profile), out)
    print("\n".join(f"{name}: {path}" for name, path in paths.items()))
    return 0


def cmd_binary_train(args) -> int:
    from .binary import aligned_validation, load_binary, train_binary, training_data
    from .pipeline import choose_extractor

    profile = load_profile(args.profile)
    overrides = {k: v for k, v in (("steps", args.steps), ("alpha", args.alpha), ("device", args.device),
                                   ("workers", args.workers), ("seed", args.seed)) if v is not None}
    config = profile.binary_config(**overrides)
    if config.streaming and args.data is None:
        raise SettingError(f"the {profile.name} profile trains from a packed real/fake set: `exifkit data pack SET "
                           "--binary --out SHARDS`, then add --data SHARDS")
    results = profile.results_dir()
    frozen = choose_extractor(args.pretext or "pretext", results, profile.root).extractor
    if frozen.config != config.extractor:
        raise SettingError(f"the extractor of {args.pretext or results / 'pretext'} is not the {profile.name} "
                           "profile's architecture")
    out = args.out or binary_run_folder(results, config, profile)
    if args.data is not None:
        from .data.shards import Shards

        result = train_binary(config, frozen, Shards.open(args.data), None, out, resume=args.resume,
                              progress=not args.quiet)
        print(f"checkpoint: {result.checkpoint}  ({result.images_per_second:.2f} images/s, streamed from {args.data})")
        return 0
    store = data_store(profile, mirrors=args.mirror)
    images, labels, failures, validation = training_data(config, profile.splits(store.manifest), store)
    held, held_failures = aligned_validation(config, validation, store)
    for report in (failures, held_failures):
        if report:
            print(report.to_markdown(), file=sys.stderr)
    result = train_binary(config, frozen, images, labels, out, resume=args.resume, progress=not args.quiet,
                          validation=held)
    print(f"checkpoint: {result.checkpoint}  ({result.images_per_second:.2f} images/s, {len(images)} training "
          f"images, {len(validation)} kept for validation)")
    load_binary(result.checkpoint, config.extractor)  # the file loads back
    return 0


def _bundle_report(path, report, failures) -> int:
    if failures:
        print(failures.to_markdown(), file=sys.stderr)
    print(json.dumps({"bundle": str(path), **report}, indent=2))
    print(f"held-out false-positive rate {report['held_out_false_positive_rate']:.3f} on "
          f"{report['held_out_for_threshold']} of your reals kept out of fitting", file=sys.stderr)
    return 0


def cmd_bundle_build(args) -> int:
    from .pipeline import build_bundle

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
    from .detect import refit_bundle

    return _bundle_report(*refit_bundle(args.source, args.reals, args.out, progress=not args.quiet))


def cmd_bundle_from_official(args) -> int:
    from .detect import bundle_from_official

    return _bundle_report(*bundle_from_official(args.backbone, args.reals, args.out, args.binary,
                                                args.max_patches, progress=not args.quiet))


def cmd_detect(args) -> int:
    """Results stream to stdout as each image is scored (JSON: one document at the end); every path
    that cannot be scored is named on stderr as it is met. Exit 0: all scored; 1: some could not be."""
    import csv
    from dataclasses import asdict, fields

    from tqdm import tqdm

    from .config import find_root
    from .data.images import ImageLoadError
    from .data.inputs import collect_files
    from .detect import Detector, Score, default_bundle

    bundle = args.bundle or default_bundle(find_root())
    detector = Detector.from_bundle(bundle)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exifkit", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Reproduce SDAIE (self-supervised AI-generated image detection from camera metadata): "
                    "data, EXIF labels and the paper's notebooks.")
    parser.add_argument("--version", action="version", version=f"exifkit {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an input or setting error too (bugs always show one)")
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
    fmt = det.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable JSON")
    fmt.add_argument("--csv", action="store_true", help="CSV on standard output")
    det.set_defaults(func=cmd_detect)

    study = sub.add_parser("study", help="studies across many runs (resumable; finished runs are skipped)")
    ssub = study.add_subparsers(dest="study_command", required=True, metavar="STUDY")
    sc = ssub.add_parser("scaling", help="the data-scaling study: nested camera-photo subsets x seeds, each scored "
                                         "against random init, and the generated-image axis",
                         description="Reads the profile's [study.scaling] table; writes runs.csv, fit.csv and "
                                     "fit.md under OUT. Interrupt it at any point: a rerun resumes.")
    sc.add_argument("--profile", default="demo", choices=available_profiles())
    sc.add_argument("--out", type=Path, default=None, help="study folder (default results/<profile>/scaling)")
    sc.add_argument("--train-only", action="store_true", help="train every run, score nothing yet")
    sc.add_argument("--no-fake-axis", action="store_true", help="skip the generated-image axis")
    sc.add_argument("--mirror", action="append", default=[], type=Path, metavar="DIR")
    sc.add_argument("--quiet", action="store_true")
    sc.set_defaults(func=cmd_study_scaling)

    rep = sub.add_parser("reproduce", help="run the numbered notebooks with papermill into results/<profile>/")
    rep.add_argument("--profile", default="demo", choices=available_profiles())
    rep.add_argument("--notebooks", nargs="*", metavar="NN", help="only these notebooks (e.g. 00 01)")
    rep.add_argument("--output", type=Path, default=None, help="output folder (default results/<profile>)")
    rep.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a notebook parameter, e.g. --param steps=50 (JSON values)")
    rep.set_defaults(func=cmd_reproduce)

    course = sub.add_parser("course", help="the course: exercises, student notebooks, a static site")
    csub = course.add_subparsers(dest="course_command", required=True)
    csub.add_parser("list", help="every exercise, by notebook and kind").set_defaults(func=cmd_course_list)
    stu = csub.add_parser("student", help="student notebooks: solutions replaced by stubs and empty answers")
    stu.add_argument("--out", type=Path, default=Path("results/student"), help="folder (default results/student)")
    stu.set_defaults(func=cmd_course_student)
    site = csub.add_parser("site", help="render a profile's executed notebooks as a static HTML site")
    site.add_argument("--profile", default="extended", choices=available_profiles(),
                      help="whose executed notebooks (default extended: the committed reference run)")
    site.add_argument("--executed", type=Path, default=None, help="folder of executed notebooks (default results/<profile>)")
    site.add_argument("--out", type=Path, default=None, help="site folder (default results/site/<profile>)")
    site.set_defaults(func=cmd_course_site)
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


if __name__ == "__main__":
    sys.exit(main())
