"""The package's import graph: no cycle, and no arrow from a lower layer to a higher one, so a reader
can learn the kit bottom-up (data in, labels, model, training, detectors, evaluation, pipeline, command
line). Imports sit at module top; the command line alone imports its command's modules when it runs,
so that `exifkit --help` stays fast."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "exifkit"

#: Lowest first. A module may import its own layer and those below it, never one above.
LAYERS = [
    ("core", ["version", "errors", "progress", "runtime", "checkout", "loglinear"]),
    ("data in, EXIF labels", ["data", "exif", "data.images", "data.inputs", "data.archive", "data.transforms", "data.manifest",
                              "data.suites", "data.synthetic", "exif.read", "exif.schema", "data.shards"]),
    ("pixel operations", ["patches", "augment", "perturb"]),
    ("model", ["model", "model.srm", "model.covariance", "model.native", "model.winograd", "model.normact", "model.conv_choice", "model.fast", "model.extractor",
               "model.heads", "model.official"]),
    ("features and metrics", ["features", "metrics", "report"]),
    ("training", ["train", "data.stream", "pretext", "binary"]),
    ("detectors", ["oneclass", "bundle", "detect"]),
    ("evaluation", ["robustness", "probe", "modelcard"]),
    ("pipeline", ["config", "pipeline", "scaling", "runner", "course"]),
    ("command line", ["cli", "cli.data", "cli.exif", "cli.train", "cli.bundle", "cli.detect", "cli.study",
                      "cli.notebooks", "cli.__main__"]),
]
LAZY = set(LAYERS[-1][1])  # may import inside functions


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, dict[str, list[tuple[int, bool]]]]:
    """module -> imported module -> [(line, at module top)] for every import of an exifkit module."""
    graph = {}
    for path in ROOT.rglob("*.py"):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        edges = graph.setdefault(name, {})
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package.split(".") if package else []
            base = base[:len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import x` names a module when x is one
                full = f"{target}.{alias.name}".strip(".")
                mod = full if (ROOT / full.replace(".", "/")).with_suffix(".py").exists() \
                    or (ROOT / full.replace(".", "/")).is_dir() else target
                if mod != name:
                    edges.setdefault(mod, []).append((node.lineno, node in tree.body))
    return graph


def test_every_module_has_a_layer():
    modules = {m for m in _graph() if m}
    placed = [m for _, ms in LAYERS for m in ms]
    assert len(placed) == len(set(placed))
    assert modules == set(placed), (sorted(modules - set(placed)), sorted(set(placed) - modules))


def test_no_import_cycle_inside_exifkit():
    graph = {m: set(t) for m, t in _graph().items()}
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                cycle = path[path.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_arrow_from_a_lower_layer_to_a_higher_one_and_imports_at_top():
    level = {m: i for i, (_, ms) in enumerate(LAYERS) for m in ms}
    level[""] = len(LAYERS)  # the package itself: `exifkit.Detector` is looked up lazily
    upward, local = [], []
    for m, targets in _graph().items():
        for t, sites in targets.items():
            for line, at_top in sites:
                if level[t] > level[m]:
                    upward.append(f"exifkit/{m.replace('.', '/') or '__init__'}.py:{line} imports {t} "
                                  f"({LAYERS[level[t]][0]} above {LAYERS[level[m]][0]})")
                if not at_top and m not in LAZY and m:
                    local.append(f"exifkit/{m.replace('.', '/')}.py:{line} imports {t} inside a function")
    assert not upward, "\n".join(upward)
    assert not local, "\n".join(local)
