"""The package's imports flow one way: no cycle, and no function-local import of a sibling module
(the usual way to hide a cycle).  Read from the source with ``ast``, nothing is imported."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seamless_mlx"



def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(name: str, node: ast.AST):
    """The package modules an import statement in module ``name`` loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = node.module or ""
    if node.level:
        package = _package_of(name)
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    if base not in MODULES:
        return []
    # ``from pkg import sub`` loads the submodule; ``from mod import name`` loads mod
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports(name: str):
    """``(target, line, in_function)`` for every package import of module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((t, child.lineno, in_function) for t in imported_modules(name, child) if t != name)
            visit(child, inside)

    visit(tree, False)
    return found


def graph():
    """``{module: {imported module: [(line, in_function), ...]}}``."""
    edges = {}
    for name in MODULES:
        edges[name] = {}
        for target, line, local in _imports(name):
            edges[name].setdefault(target, []).append((line, local))
    return edges


def find_cycle(edges):
    """One import cycle as a list of modules, or ``None``."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in edges.get(node, ()):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in edges:
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_graph_sees_top_level_and_function_local_imports():
    edges = graph()
    assert "seamless_mlx.layers" in edges["seamless_mlx.speech_encoder"]  # from .layers import ...
    assert "seamless_mlx.layers" in edges["seamless_mlx.cpu.ops"]  # from ..layers import ...
    assert "seamless_mlx.cpu.tuning" in edges["seamless_mlx.cpu.linear"]  # from . import tuning
    source = "def f():\n    from .model import SeamlessM4Tv2Model\n"
    node = ast.parse(source).body[0].body[0]
    assert imported_modules("seamless_mlx.loading", node) == ["seamless_mlx.model"]


def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) is None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_local_import_of_a_package_module():
    local = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}"
        for name, targets in graph().items()
        for target, places in targets.items()
        for line, in_function in places
        if in_function
    ]
    assert not local, "import at the top of the module instead:\n" + "\n".join(local)


def test_sanitizers_are_imported_by_name():
    assert "importlib" not in MODULES["seamless_mlx.loading"].read_text(encoding="utf-8")
