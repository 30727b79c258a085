"""The code's shape for issue 14's closing note: long modules, long functions, import circles.

Run by hand over a checkout, e.g. the baseline and today's tree:

    git worktree add /tmp/shape-base 6e0ee4d
    python benchmarks/code_shape.py --root /tmp/shape-base
    python benchmarks/code_shape.py
    git worktree remove /tmp/shape-base

It reads the project's modules (maild/ and store/, whether store sits at the top or, as in
older checkouts, at maild/store; tests excluded) with tests/import_graph.py of the checkout
this script lives in, so an old checkout is measured by today's reader. Stdlib only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tests.import_graph import Module, _targets, find_modules  # noqa: E402

MODULE_LIMIT = 400  # lines in a file
FUNCTION_LIMIT = 40  # lines from `def` to the function's last line, decorators excluded

# where an import statement sits; the circles are counted twice, with and without the last two
TOP = "module level"
TYPING = "under if TYPE_CHECKING"
LAZY = "inside a function"


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    kind: str  # TOP, TYPING or LAZY
    where: str  # path:line


def long_modules(root: Path, modules: dict[str, Module]) -> list[tuple[str, int]]:
    sized = [(str(m.path.relative_to(root)), _line_count(m.path)) for m in modules.values()]
    return sorted((s for s in sized if s[1] > MODULE_LIMIT), key=lambda s: (-s[1], s[0]))


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def long_functions(root: Path, modules: dict[str, Module]) -> list[tuple[str, str, int]]:
    """(path:line, qualified name, length) of every function or method over the limit; a
    nested function is measured on its own and also counts in its enclosing one."""
    found = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        for name, node in _functions(tree, ""):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > FUNCTION_LIMIT:
                where = f"{module.path.relative_to(root)}:{node.lineno}"
                found.append((where, name, length))
    return sorted(found, key=lambda f: (-f[2], f[0]))


def _functions(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef
                                                               | ast.AsyncFunctionDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def project_edges(root: Path, modules: dict[str, Module]) -> list[Edge]:
    """Every import of one project module by another, with where the statement sits."""
    edges = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        for node, kind in _imports(tree, TOP):
            for target in _targets(node, module, modules, []):
                if target in modules and target != module.name:
                    where = f"{module.path.relative_to(root)}:{node.lineno}"
                    edges.append(Edge(module.name, target, kind, where))
    return edges


def _imports(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, kind
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _imports(child, LAZY)
        elif isinstance(child, ast.If) and _is_type_checking(child.test) and kind == TOP:
            for stmt in child.body:
                yield from _imports_of_stmt(stmt, TYPING)
            for stmt in child.orelse:
                yield from _imports_of_stmt(stmt, TOP)
        else:
            yield from _imports(child, kind)


def _imports_of_stmt(stmt: ast.stmt, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom,
                                                                  str]]:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        yield stmt, kind
    else:
        yield from _imports(stmt, kind)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def circles(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module, largest first."""
    succ: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        succ[e.importer].add(e.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(nodes) + 100))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(found, key=lambda c: (-len(c), c))


def report_circles(title: str, nodes: list[str], edges: list[Edge], *,
                   show_edges: bool) -> None:
    found = circles(nodes, edges)
    print(f"\nimport circles, {title}: {len(found)} "
          f"(modules in them: {sum(len(c) for c in found)})")
    for component in found:
        members = set(component)
        print(f"  {len(component)} modules: {', '.join(component)}")
        if not show_edges:
            continue
        inside = sorted({(e.importer, e.imported, e.kind, e.where) for e in edges
                         if e.importer in members and e.imported in members})
        for importer, imported, kind, where in inside:
            print(f"    {importer} -> {imported}  [{kind}, {where}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE,
                        help="the checkout to measure (default: the one this script is in)")
    root = parser.parse_args().root.resolve()
    modules = find_modules(root)
    if not modules:
        sys.exit(f"no maild/ or store/ package under {root}")
    layout = "store/ at the top" if (root / "store").is_dir() else "store at maild/store"
    total = sum(_line_count(m.path) for m in modules.values())
    print(f"checkout {root} ({layout}): {len(modules)} modules, {total} lines")

    big = long_modules(root, modules)
    print(f"\nmodules over {MODULE_LIMIT} lines: {len(big)}")
    for path, count in big:
        print(f"  {count:5}  {path}")

    long = long_functions(root, modules)
    print(f"\nfunctions and methods over {FUNCTION_LIMIT} lines (def line to last line, "
          f"decorators excluded; nested ones counted on their own too): {len(long)}")
    for where, name, length in long:
        print(f"  {length:5}  {where}  {name}")

    edges = project_edges(root, modules)
    nodes = sorted(modules)
    print("\nimport graph: project modules only; an edge per import statement; importing "
          "a.b.c is not counted as importing the package a.b")
    for kind in (TOP, TYPING, LAZY):
        print(f"  imports {kind}: {sum(1 for e in edges if e.kind == kind)}")
    report_circles("run-time imports at module level only", nodes,
                   [e for e in edges if e.kind == TOP], show_edges=False)
    report_circles("module level, TYPE_CHECKING included, function-level left out",
                   nodes, [e for e in edges if e.kind != LAZY], show_edges=False)
    report_circles("all imports (also under TYPE_CHECKING and inside functions), with the "
                   "edges inside each circle", nodes, edges, show_edges=True)


if __name__ == "__main__":
    main()
