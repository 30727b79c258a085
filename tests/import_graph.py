"""Read every module of maild and the project modules and libraries each one imports.

A checkout's layout is found from a root folder, so the same reader runs over the real tree and
over a scratch copy with violations planted in it (tests/test_architecture.py does both).
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "maild"
STORE = "store"  # the persistence layer: a package of its own at the top of the repository
TOPS = (PACKAGE, STORE)  # the project's own top-level packages


@dataclass(frozen=True)
class Import:
    """One dependency of a module: a project module (full name) or a library (top name)."""

    importer: str
    imported: str
    path: Path
    line: int

    @property
    def project(self) -> bool:
        return self.imported.split(".")[0] in TOPS


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool  # an __init__.py: relative imports start from the module itself


def find_modules(root: Path) -> dict[str, Module]:
    """Every .py file of the project's packages (maild/ and store/) by its import name;
    migrations are modules like the others."""
    found: dict[str, Module] = {}
    for top in TOPS:
        if not (root / top).is_dir():
            continue
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root / top).with_suffix("").parts
            is_package = rel[-1] == "__init__"
            parts = rel[:-1] if is_package else rel
            name = ".".join((top, *parts))
            found[name] = Module(name, path, is_package)
    return found


def read_imports(root: Path) -> tuple[dict[str, Module], list[Import], list[str]]:
    """The modules, every import they make, and the imports that could not be resolved.

    The whole tree of each file is walked, not only its top level: an import inside a function
    (a lazy import) or under `if TYPE_CHECKING:` is still a dependency of the module — the
    lazy one runs at the first call, the type-only one ties the module to the other's names —
    so it obeys the same rule.
    """
    modules = find_modules(root)
    imports: list[Import] = []
    unresolved: list[str] = []
    for module in modules.values():
        for node in _import_nodes(module.path.read_text(encoding="utf-8")):
            imports += [Import(module.name, target, module.path, node.lineno)
                        for target in _targets(node, module, modules, unresolved)]
    return modules, imports, unresolved


@functools.lru_cache(maxsize=1024)
def _import_nodes(source: str) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """The import statements of a source text, anywhere in it (cached: the tests read many
    copies of the same files)."""
    return tuple(node for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.Import | ast.ImportFrom))


def _targets(node: ast.Import | ast.ImportFrom, module: Module, modules: dict[str, Module],
             unresolved: list[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [_named(alias.name, modules) for alias in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        # `from . import x` in a.b.c means a.b; each further dot climbs one package
        package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
        if node.level - 1 >= len(package):
            unresolved.append(f"{module.path}:{node.lineno}: relative import beyond the top")
            return []
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    if base.split(".")[0] not in TOPS:
        return [_named(base, modules)]
    # `from maild import outbound` imports the module maild.outbound, not a name of maild
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in modules else _named(base, modules))
    return out


def _named(name: str, modules: dict[str, Module]) -> str:
    """A project module by its full name; a library by its top-level name."""
    top = name.split(".")[0]
    if top not in TOPS:
        return top
    parts = name.split(".")
    while len(parts) > 1 and ".".join(parts) not in modules:
        parts.pop()  # a name the package has no file for: its nearest existing package
    return ".".join(parts)


def is_stdlib(library: str) -> bool:
    return library in sys.stdlib_module_names
