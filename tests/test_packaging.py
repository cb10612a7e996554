"""The promises of the repository layout: two commands, matching dependency lists, clean notebooks."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import nbformat


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_and_pyproject_list_the_same_packages(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pip_names = {_name(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda_names = set()
    text = (root / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^\s{2}- ([A-Za-z0-9_.-]+)", line)
        if m and m.group(1) not in ("python", "pip"):
            conda_names.add(m.group(1).lower())
    conda_to_pip = {"pytorch": "torch", "opencv": "opencv-python-headless"}
    # system tools: exiftool, and the C compiler that builds the Winograd kernel (exifkit/model/winograd.py)
    conda_names = {conda_to_pip.get(n, n) for n in conda_names} - {"exiftool", "c-compiler"}
    assert conda_names == pip_names


def test_readme_leads_with_the_two_commands_and_ci_runs_one(root):
    readme = (root / "README.md").read_text()
    headings = [m.start() for m in re.finditer(r"^## ", readme, flags=re.M)]
    assert len(headings) >= 2
    assert readme.index("make reproduce") < headings[1] and readme.index("make test") < headings[1]
    assert "make test" in (root / ".ci" / "run").read_text()


def test_console_script_help(root):
    out = subprocess.run([sys.executable, "-m", "exifkit.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("data", "exif", "reproduce", "examples:"):
        assert word in out.stdout


def test_notebooks_are_paired_in_sync_and_clean(root):
    import jupytext

    sources = sorted((root / "notebooks").glob("[0-9][0-9]_*.py"))
    assert sources and [p.stem[:2] for p in sources] == [f"{i:02d}" for i in range(len(sources))]
    for src in sources:
        paired = src.with_suffix(".ipynb")
        assert paired.is_file(), f"{paired} missing: run `jupytext --sync {src}`"
        committed = nbformat.read(paired, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in committed.cells if c.cell_type == "code"), f"{paired} carries outputs"
        from_py = jupytext.read(src)
        assert [c.source for c in committed.cells] == [c.source for c in from_py.cells], \
            f"{paired} differs from {src}: run `jupytext --sync {src}`"
        tags = [c.metadata.get("tags", []) for c in from_py.cells]
        assert sum("parameters" in t for t in tags) == 1, f"{src} needs one parameters cell"


def test_python_floor_is_the_one_the_code_needs(root):
    """requires-python, the conda pin and CI's interpreter say the same minor version, and every module
    parses under that version's grammar; tomllib (3.11) is why the floor is not 3.10."""
    import ast

    spec = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = tuple(int(p) for p in re.fullmatch(r">=\s*(\d+)\.(\d+)", spec).groups())
    assert floor == (3, 11)
    assert re.search(rf"^\s+- python={floor[0]}\.{floor[1]}\s*$", (root / "environment.yml").read_text(), re.M)
    assert sys.version_info[:2] >= floor
    for path in (root / "exifkit").rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=floor)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_is_short_and_every_link_in_the_docs_resolves(root):
    """The README is a front page (at most 8 KB); the reference lives in docs/. Every relative link in
    them (and in the other guides) names a file that exists, and an anchor names a heading there."""
    assert len((root / "README.md").read_bytes()) <= 8 * 1024
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "notebooks" / "COURSE.md",
             root / "benchmarks" / "README.md", root / "results" / "README.md"]
    assert len(pages) >= 8
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^(https?:|mailto:)", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(root)}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)}
                if anchor not in headings:
                    broken.append(f"{page.relative_to(root)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
