"""The package's layering, read from its source with ``ast`` (nothing is imported).

Lazy imports inside functions count as edges: moving an import into a function hides a
cycle from Python's import machinery, not from the design. ``if TYPE_CHECKING:`` imports
are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "ganforge"
MAX_LINES = 400

# What config.py may import from the package: leaves that import nothing above config.
CONFIG_MAY_IMPORT = {"errors", "registry"}

# Which modules own the names of which kind: only they may compare a config's
# ``objective`` / ``optimizer`` / ``dataset`` against string constants.
REGISTRY_OWNERS = {
    "objective": ("losses",),
    "optimizer": ("optim",),
    "dataset": ("data",),  # the data/ package and its submodules
}


def module_name(path: Path) -> str:
    """``data/mnist.py`` -> ``data.mnist``; ``data/__init__.py`` -> ``data``."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import in the module, at any depth, except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(name: str, mod: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute dotted name (within the package; "" = the package) a relative import names."""
    if node.level == 0:
        return name
    here = mod.split(".") if mod != "__init__" else []
    package = here if path.name == "__init__.py" else here[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join(base + ([node.module] if node.module else []))


def _target(dotted: str, known: dict[str, Path]) -> str | None:
    """The module an import of ``dotted`` (within the package) runs, if it is one of ours."""
    dotted = dotted or "__init__"
    while dotted:
        if dotted in known:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "ganforge" or alias.name.startswith("ganforge."):
                        targets.append(alias.name.removeprefix("ganforge").lstrip("."))
            else:
                if node.level == 0:
                    if node.module is None or not (node.module == "ganforge"
                                                   or node.module.startswith("ganforge.")):
                        continue
                    base = node.module.removeprefix("ganforge").lstrip(".")
                else:
                    base = _resolve("", mod, path, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    # ``from .pkg import name``: an edge to pkg.name when it is a submodule
                    targets.append(sub if sub in known else base)
            for t in targets:
                got = _target(t, known)
                if got is not None and got != mod:
                    graph[mod].add(got)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_graph_builder_sees_lazy_relative_and_submodule_imports():
    g = import_graph()
    assert "errors" in g["config"]  # module level, ``from .errors import ...``
    assert "registry" in g["data"]  # ``from ..registry import`` in a package __init__
    assert "models.mlp" in g["models"]  # ``from . import mlp``: the submodule
    assert "data.mnist" in g["features.lenet"]  # ``from ..data.mnist import``
    assert "data.download" in g["__main__"] or "cli" in g["__main__"]  # absolute imports
    assert "remedies" in g["models.registry"]  # an import inside a function
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n"
                     "def f():\n    import y\n")
    got = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
           for n in _import_nodes(tree)]
    assert got == ["typing", "y"]


def test_find_cycle_reports_a_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_import_graph_is_acyclic():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_config_is_at_the_bottom():
    graph = import_graph()
    extra = graph["config"] - CONFIG_MAY_IMPORT
    assert not extra, f"config.py imports {sorted(extra)}; it may import only " \
                      f"{sorted(CONFIG_MAY_IMPORT)}"
    for leaf in CONFIG_MAY_IMPORT:  # the leaves themselves stay below config
        assert graph[leaf] <= CONFIG_MAY_IMPORT, f"{leaf}.py imports {sorted(graph[leaf])}"


def test_modules_are_small():
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    long = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _string_constants(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_string_constants(e) for e in node.elts)
    return False


def name_comparisons(tree: ast.AST) -> list[tuple[str, int]]:
    """(field, line) of every ``x.objective == "..."``-like comparison in the tree."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        fields = [o.attr for o in operands
                  if isinstance(o, ast.Attribute) and o.attr in REGISTRY_OWNERS]
        if fields and any(_string_constants(o) for o in operands):
            found.extend((f, node.lineno) for f in fields)
    return found


def _owns(mod: str, field: str) -> bool:
    return any(mod == owner or mod.startswith(owner + ".") for owner in REGISTRY_OWNERS[field])


def test_name_comparison_scan_catches_the_forms():
    src = ('cfg.objective == "began"\n"adam" != cfg.optimizer\n'
           'cfg.dataset in ("mnist", "cifar10")\ncfg.dataset == other\nname == "mnist"\n')
    assert name_comparisons(ast.parse(src)) == [("objective", 1), ("optimizer", 2),
                                                ("dataset", 3)]


def test_registry_names_are_compared_only_by_their_registries():
    bad = [f"{path.relative_to(PKG)}:{line} compares .{field} with a name "
           f"(owned by {', '.join(REGISTRY_OWNERS[field])})"
           for mod, path in modules().items()
           for field, line in name_comparisons(ast.parse(path.read_text()))
           if not _owns(mod, field)]
    assert not bad, "\n".join(bad)
