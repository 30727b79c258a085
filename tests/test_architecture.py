"""The dependency rule of ARCHITECTURE.md, kept by CI instead of by memory."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "maild"

# module prefix → project modules it must never import
FORBIDDEN = {
    "maild.domain": ("maild.",),
    "maild.errors": ("maild.",),
    "maild.clock": ("maild.",),
    "maild.tokens": ("maild.",),
    "maild.rules": ("maild.store", "maild.service", "maild.inbound", "maild.outbound",
                    "maild.app", "maild.cli", "maild.settings", "sqlalchemy", "jinja2"),
    "maild.store": ("maild.rules", "maild.service", "maild.inbound", "maild.outbound",
                    "maild.app", "maild.cli"),
    "maild.service": ("maild.inbound", "maild.outbound", "maild.app", "maild.cli", "jinja2",
                      "aiosmtpd", "aioimaplib", "maild.tokens"),
    "maild.inbound": ("maild.outbound", "maild.app", "maild.cli"),
    "maild.outbound": ("maild.inbound", "maild.service", "maild.app", "maild.cli"),
}

# third-party library → the one module allowed to import it
CONFINED = {
    "mailparser": "maild.inbound.parse",
    "bleach": "maild.inbound.sanitize",
    "aiosmtpd": "maild.inbound.smtp",
    "aioimaplib": "maild.inbound.imap",
    "jinja2": "maild.outbound.render",
    "weasyprint": "maild.outbound.pdf",
    "aiosmtplib": "maild.outbound.transport",
    "holidays": "maild.settings.features",
    "PIL": "maild.outbound.timeline",
    "aiohttp": "maild.web",
}


def modules() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imports.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports.add(node.module)
        out[name] = imports
    return out


def banned(imp: str, prefixes: tuple[str, ...]) -> bool:
    return any(imp == p.rstrip(".") or imp.startswith(p if p.endswith(".") else p + ".")
               for p in prefixes)


def test_dependency_rule() -> None:
    problems = []
    for mod, imports in modules().items():
        for prefix, prefixes in FORBIDDEN.items():
            if mod != prefix and not mod.startswith(prefix + "."):
                continue
            problems += [f"{mod} imports {imp}" for imp in imports if banned(imp, prefixes)]
    assert problems == []


def test_third_party_libraries_stay_in_their_module() -> None:
    problems = []
    for mod, imports in modules().items():
        for imp in imports:
            lib = imp.split(".")[0]
            if lib in CONFINED and mod != CONFINED[lib]:
                problems.append(f"{mod} imports {lib} (only {CONFINED[lib]} may)")
    assert problems == []


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "maild", "tests",
                             "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "maild"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
