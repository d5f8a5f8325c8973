"""The installed package's shape: the core never imports the application or the dev
tooling, and no module of backlane/ takes part in an import cycle.

Imports are read from the source (every ``import`` statement, including those inside
functions; type-only imports under ``if TYPE_CHECKING:`` are left out since they never
run), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import backlane

PACKAGE_DIR = Path(backlane.__file__).parent
#: Top-level packages of this repository that backlane/ must never import.
FORBIDDEN = {"actors", "scheduler", "devtools", "tests", "benchmarks"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports at run time (absolute names; ``from a import b`` gives a and a.b)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = set()
        for target in imported_names(path, name):
            # Importing a.b.c runs a, a.b and a.b.c: each is an edge when it is one of ours.
            # A module's own ancestor packages are already importing when it runs: not an edge.
            parts = target.split(".")
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
            edges.update(p for p in prefixes if p in known and not name.startswith(p + "."))
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_backlane_never_imports_the_application_or_dev_tooling() -> None:
    offenders = {
        f"{name} imports {target}"
        for name, path in modules().items()
        for target in imported_names(path, name)
        if target.split(".")[0] in FORBIDDEN
    }
    assert not offenders, sorted(offenders)


def test_no_import_cycle_in_backlane() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


#: The pipelines of this repository: one folder each under actors/ (read from the tree, so
#: a new pipeline is held to this too without an edit here).
ACTORS_DIR = PACKAGE_DIR.parent / "actors"
PIPELINE_FOLDERS = sorted(p.name for p in ACTORS_DIR.iterdir() if (p / "__init__.py").is_file())


def _code_words(path: Path) -> set[str]:
    """The identifiers and string literals of ``path`` as words, docstrings and comments left
    out: what the code does, not what its prose mentions as an example."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.update(node.name.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(re.findall(r"[A-Za-z_]+", node.value))
    return {word.lower() for word in words}


def _pipeline_words(name: str) -> set[str]:
    """``catalog`` -> catalog, catalogs; ``exports`` -> exports (an export is a purpose, not a pipeline)."""
    return {name, name + "s"} if not name.endswith("s") else {name}


def test_the_pipelines_live_in_their_folders() -> None:
    assert PIPELINE_FOLDERS, "actors/ holds one folder per pipeline"
    assert not [p.name for p in ACTORS_DIR.glob("*.py") if p.name != "__init__.py"], "a pipeline is a folder"


def test_the_framework_names_no_pipeline() -> None:
    """backlane/ is the framework: no identifier, string or template of it names one of the
    pipelines (their folders in actors/); docstrings may use one as an example."""
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        named = _code_words(path) & {w for name in PIPELINE_FOLDERS for w in _pipeline_words(name)}
        if named:
            offenders.append(f"{path.relative_to(PACKAGE_DIR.parent)}: {sorted(named)}")
    for path in sorted(PACKAGE_DIR.rglob("*.html")) + sorted(PACKAGE_DIR.rglob("*.js")):
        text = re.sub(r"<!--.*?-->|\{#.*?#\}", "", path.read_text(), flags=re.S).lower()
        named = {name for name in PIPELINE_FOLDERS if re.search(rf"\b{name}\b", text)}
        if named:
            offenders.append(f"{path.relative_to(PACKAGE_DIR.parent)}: {sorted(named)}")
    assert not offenders, offenders
