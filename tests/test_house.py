"""The house rules a newcomer relies on: no import cycle inside the package, functions that fit on a screen."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mnistcnn"
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every mnistcnn module `path` imports, at module level or inside a function (a lazy import still couples)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("mnistcnn")}


def test_no_import_cycle_inside_the_package():
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}
    # a package's __init__ importing its own submodules is how a package is assembled, not a cycle
    graph = {
        m: {i for i in deps if not (i.startswith(m + ".") and modules[m].name == "__init__.py")}
        for m, deps in graph.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph[m]):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(path + [m, dep])}"
            if dep not in state:
                visit(dep, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_functions_fit_on_a_screen():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines: " + ", ".join(long)


def test_the_checker_finds_a_cycle(tmp_path):
    # the cycle test must be able to fail: cli.explain importing the cli package back was one
    a = tmp_path / "a.py"
    a.write_text("from mnistcnn.cli import app\nimport mnistcnn.data\n")
    assert imports_of(a) == {"mnistcnn.cli", "mnistcnn.cli.app", "mnistcnn.data"}
