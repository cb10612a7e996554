"""The course: enough exercises of every kind, student copies that leak no solution and whose stubs fail,
solutions that pass their checks, and a site that reads offline."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import nbformat
import pytest

from exifkit.course import (ANSWER, BEGIN, KINDS, SOLUTION, ExerciseError, build_site, exercises, leaked_lines,
                            notebook_paths, problems, read_notebook, solution_lines, student_notebook, write_student)


@pytest.fixture(scope="module")
def notebooks(root):
    return {p.stem: read_notebook(p) for p in notebook_paths(root)}


def _run(cells, name):
    """Execute cells in one fresh namespace, as a kernel would."""
    namespace = {"__name__": "__exercise__"}
    for source in cells:
        exec(compile(source, name, "exec"), namespace)


def _coding(notebooks):
    for name, nb in notebooks.items():
        for ex in exercises(nb, name):
            if ex.kind == "coding":
                yield name, nb, ex


def test_every_notebook_has_two_exercises_and_the_course_has_fourteen_of_every_kind(notebooks):
    counts = {name: len(exercises(nb, name)) for name, nb in notebooks.items()}
    assert len(counts) == 7 and min(counts.values()) >= 2, counts
    assert sum(counts.values()) >= 14, counts
    kinds = {ex.kind for name, nb in notebooks.items() for ex in exercises(nb, name)}
    assert kinds == set(KINDS)
    for name, nb in notebooks.items():
        assert problems(nb, name) == [], name


def test_every_notebook_opens_with_objectives_prerequisites_and_run_time(notebooks):
    for name, nb in notebooks.items():
        head = next(c.source for c in nb.cells if c.cell_type == "markdown")
        for field in ("Learning objectives", "Prerequisites", "Run time", "Exercises"):
            assert f"**{field}.**" in head, (name, field)
        assert re.search(r"\*\*Run time\.\*\* About [\d.]+ (s|seconds|minutes?)", head), name


def test_every_figure_says_what_to_look_for(notebooks):
    for name, nb in notebooks.items():
        markdown = ""
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                markdown = cell.source
            elif "save_figure(" in cell.source:
                assert re.search(r"[Ll]ook (for|at)", markdown), (name, cell.source[:80])


def test_solutions_pass_their_checks(notebooks):
    for name, nb, ex in _coding(notebooks):
        cells = [nb.cells[i].source for i in ex.tagged(nb, SOLUTION, "code") + ex.tagged(nb, "check", "code")]
        _run(cells, f"{name} exercise {ex.number}")


def test_every_student_stub_fails_before_it_is_filled_in(notebooks):
    for name, nb, ex in _coding(notebooks):
        student = student_notebook(nb, name)
        cells = [student.cells[i].source for i in ex.tagged(nb, SOLUTION, "code") + ex.tagged(nb, "check", "code")]
        with pytest.raises(NotImplementedError, match=f"Exercise {re.escape(ex.number)}"):
            _run(cells, f"{name} exercise {ex.number} (student)")


def test_no_solution_text_leaks_into_a_student_notebook(notebooks):
    for name, nb in notebooks.items():
        student = student_notebook(nb, name)
        assert len(solution_lines(nb)) > 5, name
        assert leaked_lines(nb, student) == [], name
        answers = [c for c in student.cells if ANSWER in c.metadata.get("tags", [])]
        assert len(answers) == sum(1 for c in nb.cells if SOLUTION in c.metadata.get("tags", [])
                                   and c.cell_type == "markdown")
        assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


def test_the_leak_check_and_the_conventions_can_fail(notebooks):
    nb = notebooks["03_oneclass_gmm"]
    student = student_notebook(nb, "03_oneclass_gmm")
    code = next(c for c in nb.cells if SOLUTION in c.metadata.get("tags", []) and c.cell_type == "code")
    line = code.source.splitlines()[code.source.splitlines().index("    " + BEGIN) + 1]
    student.cells[-1].source += "\n" + line  # one line of the solution pasted into the student copy
    assert leaked_lines(nb, student) == [line.strip()]
    broken = copy.deepcopy(nb)
    target = next(c for c in broken.cells if c.source == code.source)
    target.source = target.source.replace(BEGIN, "# begin")  # a solution without its markers
    assert any("BEGIN SOLUTION" in p for p in problems(broken, "03_oneclass_gmm"))
    with pytest.raises(ExerciseError, match="3.1"):
        student_notebook(broken, "03_oneclass_gmm")


def test_make_student_writes_runnable_student_notebooks(root, tmp_path):
    out = tmp_path / "student"
    done = subprocess.run([sys.executable, "-m", "exifkit.cli", "course", "student", "--out", str(out)], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in out.glob("*.ipynb"))
    assert written == [f"{p.stem}.ipynb" for p in notebook_paths(root)]
    nb = nbformat.read(out / "03_oneclass_gmm.ipynb", as_version=4)
    nbformat.validate(nb)
    assert "NotImplementedError" in "".join(c.source for c in nb.cells)
    assert (out / "COURSE.md").is_file()


def test_the_course_guide_plans_three_sessions_over_every_notebook(root, notebooks):
    guide = (root / "notebooks" / "COURSE.md").read_text()
    sessions = re.findall(r"^## Session (\d) \(90 minutes\)", guide, flags=re.M)
    assert sessions == ["1", "2", "3"]
    for name, nb in notebooks.items():
        assert name in guide
        for ex in exercises(nb, name):
            assert f"{ex.number}" in guide, (name, ex.number)
    assert "format" in guide.lower() and "EXIF" in guide


def _executed(tmp_path, notebooks):
    """Two small notebooks with outputs standing in for an executed run: a figure and a solution."""
    folder = tmp_path / "executed"
    folder.mkdir()
    for name in ("00_data_download", "03_oneclass_gmm"):
        nb = nbformat.from_dict(json.loads(nbformat.writes(notebooks[name])))
        nb.cells = nb.cells[:3] + [c for c in nb.cells if SOLUTION in c.metadata.get("tags", [])][:2]
        png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
        nb.cells.append(nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output(
            "display_data", data={"image/png": png, "text/plain": "<Figure>"})]))
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def test_the_site_has_contents_inline_figures_marked_solutions_and_nothing_to_fetch(tmp_path, notebooks, root):
    index = build_site(_executed(tmp_path, notebooks), tmp_path / "site", title="t", guide=root / "notebooks" / "COURSE.md")
    contents = index.read_text()
    assert 'href="00_data_download.html"' in contents and 'href="03_oneclass_gmm.html"' in contents
    assert "Session 1" in contents
    page = (tmp_path / "site" / "03_oneclass_gmm.html").read_text()
    assert "data:image/png;base64," in page
    assert "celltag_solution" in page and 'href="00_data_download.html"' in page
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', page)


def test_site_without_executed_notebooks_says_so(tmp_path):
    from exifkit.errors import MissingInputError

    with pytest.raises(MissingInputError, match="make reproduce"):
        build_site(tmp_path, tmp_path / "site")


def test_the_committed_reference_run_renders_as_a_site(root, tmp_path):
    index = build_site(root / "results" / "extended", tmp_path / "site", title="reference")
    pages = sorted(p.name for p in (tmp_path / "site").glob("0*.html"))
    assert pages == [f"{p.stem}.html" for p in notebook_paths(root)]
    for page in pages:
        text = (tmp_path / "site" / page).read_text()
        assert re.search(r"data:image/(png|jpeg);base64,", text), page  # figures inline
        assert text.count("img/s]") < 40, page  # progress bars collapsed to their last state
    assert index.read_text().count("<li><a href=") == len(pages)
