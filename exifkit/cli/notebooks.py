"""``exifkit reproduce`` and ``exifkit course``: the notebooks, run, taught and published."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import available_profiles, load_profile
from ..errors import SettingError


def cmd_reproduce(args) -> int:
    from ..runner import NotebookFailed, run_notebooks

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


def cmd_course_student(args) -> int:
    from ..config import find_root
    from ..course import write_student

    written = write_student(find_root(), args.out)
    print(f"{len(written)} files written to {args.out}: solutions replaced by stubs and empty answer cells")
    return 0


def cmd_course_site(args) -> int:
    from ..config import find_root
    from ..course import build_site

    root = find_root()
    executed = args.executed or root / "results" / args.profile
    out = args.out or root / "results" / "site" / args.profile
    index = build_site(executed, out, title=f"exifkit: SDAIE, the {args.profile} profile",
                       guide=root / "notebooks" / "COURSE.md")
    print(f"site: {index}")
    return 0


def cmd_course_list(args) -> int:
    from ..config import find_root
    from ..course import exercise_table

    table = exercise_table(find_root())
    print(table.to_markdown(index=False))
    print(f"\n{len(table)} exercises: " + ", ".join(f"{n} {k}" for k, n in table["kind"].value_counts().items()))
    return 0


def register(sub) -> None:
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
