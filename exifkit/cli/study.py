"""``exifkit study``: studies across many runs (resumable)."""

from __future__ import annotations

from pathlib import Path

from ..config import available_profiles, data_store, load_profile


def cmd_study_scaling(args) -> int:
    from ..scaling import ScalingConfig, run_study, save_study

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


def register(sub) -> None:
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
