"""The course around the notebooks: exercises with solutions, student copies without them, and a static
site of executed notebooks that reads without a Jupyter server.

An exercise in ``notebooks/NN_*.py`` starts at a markdown cell whose first line is
``### Exercise N.K (kind): title``, kind one of

* ``coding``: a code cell tagged ``solution`` completes a function between ``# BEGIN SOLUTION`` and
  ``# END SOLUTION`` lines; a code cell tagged ``check`` asserts it works. The check imports what it
  needs, so it runs on its own and fails on the student's stub;
* ``predict``: the student writes a prediction, then runs an untagged code cell that changes one setting;
  a markdown cell tagged ``solution`` says what happens and why;
* ``concept``: a question; a markdown cell tagged ``solution`` holds the model answer.

The exercise runs until the next markdown cell that is not a solution. Student copies replace every solution: code between
the markers by ``raise NotImplementedError``, model answers by an empty answer cell.
"""

from __future__ import annotations

import copy
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MissingInputError, UserError

KINDS = ("coding", "predict", "concept")
SOLUTION, CHECK, ANSWER = "solution", "check", "answer"
HEADING = re.compile(r"^#{2,4} Exercise (\d+\.\d+) \((\w+)\): (.+)$")
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
ANSWER_PROMPT = "**Your answer:**"
PREDICTION_PROMPT = "**Your prediction, then what you saw and why:**"


class ExerciseError(UserError):
    """An exercise that breaks the conventions above (named by notebook and number)."""


@dataclass
class Exercise:
    notebook: str
    number: str
    kind: str
    title: str
    cells: list[int] = field(default_factory=list)  # every cell of the exercise, the heading first

    def tagged(self, nb, tag: str, cell_type: str | None = None) -> list[int]:
        return [i for i in self.cells if tag in _tags(nb.cells[i])
                and (cell_type is None or nb.cells[i].cell_type == cell_type)]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def read_notebook(path: str | Path):
    """The reviewed jupytext source of a notebook, as an nbformat notebook."""
    import jupytext

    return jupytext.read(Path(path))


def notebook_paths(root: str | Path) -> list[Path]:
    found = sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.py"))
    if not found:
        raise MissingInputError(f"no notebooks/NN_*.py under {root}")
    return found


def exercises(nb, name: str = "") -> list[Exercise]:
    """The exercises of one notebook, in order."""
    found, current = [], None
    for i, cell in enumerate(nb.cells):
        first = cell.source.lstrip().split("\n", 1)[0] if cell.cell_type == "markdown" else ""
        match = HEADING.match(first)
        if match:
            number, kind, title = match.groups()
            current = Exercise(name, number, kind, title.strip(), [i])
            found.append(current)
        elif cell.cell_type == "markdown" and SOLUTION not in _tags(cell):
            current = None  # the notebook's narrative again: the exercise is over
        elif current is not None:
            current.cells.append(i)
    return found


def problems(nb, name: str = "") -> list[str]:
    """Every way the notebook's exercises break the conventions; empty when it follows them."""
    out = []
    for ex in exercises(nb, name):
        where = f"{name}: exercise {ex.number}"
        if ex.kind not in KINDS:
            out.append(f"{where}: kind {ex.kind!r} is not one of {KINDS}")
            continue
        if name[:2].isdigit() and not ex.number.startswith(f"{int(name[:2])}."):
            out.append(f"{where}: numbered outside its notebook")
        solutions = ex.tagged(nb, SOLUTION)
        if not solutions:
            out.append(f"{where}: no cell tagged {SOLUTION!r}")
        if ex.kind == "coding":
            code = ex.tagged(nb, SOLUTION, "code")
            if not code or not ex.tagged(nb, CHECK, "code"):
                out.append(f"{where}: a coding exercise needs a code cell tagged {SOLUTION!r} and one tagged {CHECK!r}")
            for i in code:
                lines = [line.strip() for line in nb.cells[i].source.splitlines()]
                if lines.count(BEGIN) != 1 or lines.count(END) != 1 or lines.index(BEGIN) > lines.index(END):
                    out.append(f"{where}: cell {i} needs one {BEGIN!r} line before one {END!r} line")
        else:
            if not ex.tagged(nb, SOLUTION, "markdown"):
                out.append(f"{where}: a {ex.kind} exercise needs its model answer in a markdown cell tagged {SOLUTION!r}")
            if ex.kind == "predict" and not [i for i in ex.cells if nb.cells[i].cell_type == "code"
                                             and SOLUTION not in _tags(nb.cells[i])]:
                out.append(f"{where}: a predict exercise needs an untagged code cell to run")
    numbers = [ex.number for ex in exercises(nb, name)]
    if numbers != sorted(set(numbers), key=lambda n: tuple(map(int, n.split(".")))):
        out.append(f"{name}: exercises are not numbered in order: {numbers}")
    return out


def _stub(source: str, number: str) -> str:
    """The code between the markers replaced by a raise at the markers' indentation."""
    lines, out, inside = source.splitlines(), [], False
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out.append(f'{indent}raise NotImplementedError("Exercise {number}: your code here")')
        elif stripped == END:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def student_notebook(nb, name: str = ""):
    """A copy with every solution replaced (see the module docstring) and no outputs."""
    found = problems(nb, name)
    if found:
        raise ExerciseError("; ".join(found))
    import nbformat

    owner = {i: ex for ex in exercises(nb, name) for i in ex.cells}
    student = copy.deepcopy(nb)
    for i, cell in enumerate(student.cells):
        tags = _tags(cell)
        if SOLUTION in tags:
            ex = owner[i]
            rest = [t for t in tags if t != SOLUTION]
            if cell.cell_type == "code":
                cell.source = _stub(cell.source, ex.number)
            else:
                prompt = PREDICTION_PROMPT if ex.kind == "predict" else ANSWER_PROMPT
                student.cells[i] = cell = nbformat.v4.new_markdown_cell(f"{prompt} (exercise {ex.number})\n")
                rest.append(ANSWER)
            cell.metadata["tags"] = rest
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    student.metadata.pop("jupytext", None)
    return student


def solution_lines(nb) -> set[str]:
    """What a student copy must not contain: every line of code between the markers and every line of
    a model answer (stripped; blank lines and lone punctuation left out)."""
    lines = set()
    for cell in nb.cells:
        if SOLUTION not in _tags(cell):
            continue
        if cell.cell_type == "code":
            inside = False
            for line in cell.source.splitlines():
                s = line.strip()
                if s in (BEGIN, END):
                    inside = s == BEGIN
                elif inside and len(s) > 3:
                    lines.add(s)
        else:
            lines.update(s for s in (line.strip() for line in cell.source.splitlines()) if len(s) > 3)
    return lines


def leaked_lines(nb, student) -> list[str]:
    """The solution lines of ``nb`` that appear as lines of ``student``: empty for a clean student copy."""
    text = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    return sorted(solution_lines(nb) & text)


def write_student(root: str | Path, out: str | Path) -> list[Path]:
    """Student versions of every numbered notebook, as ``.ipynb`` without outputs, in ``out``."""
    import nbformat

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebook_paths(root):
        target = out / f"{path.stem}.ipynb"
        nbformat.write(student_notebook(read_notebook(path), path.stem), target)
        written.append(target)
    guide = Path(root) / "notebooks" / "COURSE.md"
    if guide.exists():
        (out / "COURSE.md").write_text(guide.read_text())
        written.append(out / "COURSE.md")
    return written


def exercise_table(root: str | Path):
    """One row per exercise: notebook, number, kind, title."""
    import pandas as pd

    rows = [{"notebook": p.stem, "exercise": ex.number, "kind": ex.kind, "title": ex.title}
            for p in notebook_paths(root) for ex in exercises(read_notebook(p), p.stem)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the static site

SITE_CSS = """
body { max-width: 1100px; margin: 0 auto; }
nav.course { font: 15px/1.5 system-ui, sans-serif; padding: 10px 16px; border-bottom: 1px solid #ddd;
             display: flex; gap: 18px; flex-wrap: wrap; align-items: baseline; }
nav.course a { color: #1a5fb4; text-decoration: none; }
nav.course .here { font-weight: 600; }
.celltag_solution { border-left: 5px solid #2e8b57; background: #f3faf5; margin: 6px 0; }
.celltag_solution::before { content: "Solution"; display: block; font: 600 13px system-ui, sans-serif;
                            color: #2e8b57; padding: 4px 10px 0; }
.celltag_check { border-left: 5px solid #b08800; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon table { font-size: 12px; }
.jp-OutputArea-output { overflow-x: auto; }
"""

INDEX_CSS = """
body { font: 16px/1.6 system-ui, sans-serif; max-width: 900px; margin: 2em auto; padding: 0 1em; color: #222; }
a { color: #1a5fb4; } h1 { font-size: 1.8em; } ol li { margin: .4em 0; } ul.sections { font-size: .9em; }
table { border-collapse: collapse; } pre { overflow-x: auto; background: #f6f6f6; padding: 8px; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
"""


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _sections(nb) -> list[str]:
    return [line[3:].strip() for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
            if line.startswith("## ")]


def _shown(path) -> str:
    """A path relative to the working directory where it lies below it: no machine's layout in the site."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return Path(path).name


def _nav(pages: list[tuple[str, str]], here: int) -> str:
    links = ['<a href="index.html">Contents</a>']
    if here > 0:
        links.append(f'<a href="{pages[here - 1][0]}">&larr; {html.escape(pages[here - 1][1])}</a>')
    links.append(f'<span class="here">{html.escape(pages[here][1])}</span>')
    if here + 1 < len(pages):
        links.append(f'<a href="{pages[here + 1][0]}">{html.escape(pages[here + 1][1])} &rarr;</a>')
    return '<nav class="course">' + " ".join(links) + "</nav>"


def build_site(executed: str | Path, out: str | Path, *, title: str = "exifkit", guide: str | Path | None = None) -> Path:
    """Render the executed notebooks in ``executed`` (``NN_*.ipynb``) into ``out``: one HTML page each with
    figures inline, a contents page, and links between pages. The pages carry no scripts (MathJax,
    require.js and the like, which these notebooks do not use), so nothing is fetched and they read offline."""
    import nbformat
    from nbconvert import HTMLExporter

    sources = sorted(Path(executed).glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise MissingInputError(f"{executed}: no executed notebooks (NN_*.ipynb); run `make reproduce` first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(enabled=True), enabled=True)  # bars: last state
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    notebooks = [nbformat.read(p, as_version=4) for p in sources]
    pages = [(f"{p.stem}.html", _title(nb, p.stem)) for p, nb in zip(sources, notebooks)]
    for k, (nb, (page, name)) in enumerate(zip(notebooks, pages)):
        body, _ = exporter.from_notebook_node(nb)
        body = re.sub(r"<script\b[\s\S]*?</script>", "", body)  # static pages need none, and none fetches
        body = body.replace("</head>", f"<style>{SITE_CSS}</style>\n</head>", 1)
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + _nav(pages, k), body, count=1)
        body = body.replace("</body>", _nav(pages, k) + "</body>", 1)
        (out / page).write_text(body, encoding="utf-8")
    items = []
    for nb, (page, name) in zip(notebooks, pages):
        n_ex = len(exercises(nb))
        sections = "".join(f"<li>{html.escape(s)}</li>" for s in _sections(nb))
        items.append(f'<li><a href="{page}">{html.escape(name)}</a>'
                     f"{f' ({n_ex} exercises)' if n_ex else ''}<ul class='sections'>{sections}</ul></li>")
    guide_html = ""
    if guide and Path(guide).exists():
        from nbconvert.filters import markdown2html

        guide_html = re.sub(r'<a class="anchor-link"[^>]*>[^<]*</a>', "", markdown2html(Path(guide).read_text()))
    index = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{INDEX_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
             f"<p>The notebooks as executed into <code>{html.escape(_shown(executed))}</code>, with their outputs; "
             "cells marked <em>Solution</em> hold the exercises' model answers.</p>"
             f"<ol>{''.join(items)}</ol>{guide_html}</body></html>")
    (out / "index.html").write_text(index, encoding="utf-8")
    return out / "index.html"
