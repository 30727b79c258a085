"""The dependency rule, kept by CI instead of by memory.

The rule itself (an allow-list per part, each library's one home, the known debts) is data in
tests/architecture_rules.py; tests/import_graph.py reads the imports. Here: the real tree must
obey the rule, every debt listed must still exist, and the checker must catch violations
planted in a scratch copy of the code (a checker that passes everything would pass too).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.architecture_rules import ALLOWED, KNOWN_DEBTS, LIBRARIES, check, part
from tests.import_graph import PACKAGE, STORE, find_modules

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def today() -> set[tuple[str, str]]:
    return {v.key for v in check(ROOT)}


def test_dependency_rule() -> None:
    problems = [str(v) for v in check(ROOT) if v.key not in KNOWN_DEBTS]
    assert problems == [], "\n".join(problems)


def test_every_known_debt_still_exists(today: set[tuple[str, str]]) -> None:
    paid = sorted(debt for debt in KNOWN_DEBTS if debt not in today)
    assert paid == [], f"no longer violations, remove them from KNOWN_DEBTS: {paid}"


def test_the_table_names_real_parts_and_homes() -> None:
    """A renamed module must not leave a rule that silently protects nothing."""
    modules = find_modules(ROOT)
    assert {part(name) for name in modules} == set(ALLOWED)
    homeless = {lib: home for lib, home in LIBRARIES.items() if home not in modules}
    assert homeless == {}


# --- the checker is tested on violations planted in a scratch copy -------------------------


@dataclass(frozen=True)
class Plant:
    label: str
    module: str  # where the code goes (appended to the module, or a new module)
    code: str
    caught: tuple[str, str]  # the violation check() must report


PLANTS = [
    Plant("relative import of outbound from inbound", "maild.inbound.x",
          "from ..outbound import compose\n", ("maild.inbound.x", "maild.outbound.compose")),
    Plant("`from maild import outbound` in the service", "maild.service.planted",
          "from maild import outbound\n", ("maild.service.planted", "maild.outbound")),
    Plant("SQLAlchemy in rules/", "maild.rules.planted",
          "import sqlalchemy\n", ("maild.rules.planted", "sqlalchemy")),
    Plant("a lazy import inside a function", "store.planted",
          "def later() -> None:\n    from maild.service import desk\n",
          ("store.planted", "maild.service.desk")),
    Plant("an import under TYPE_CHECKING", "maild.rules.typed",
          "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
          "    from store.models import Ticket\n",
          ("maild.rules.typed", "store.models")),
    Plant("a new third-party library", "maild.outbound.planted",
          "import requests\n", ("maild.outbound.planted", "requests")),
    Plant("a cli_* module imported by the service", "maild.service.planted",
          "from maild.cli_reports import main\n", ("maild.service.planted", "maild.cli_reports")),
    Plant("`from . import app` in jobs", "maild.jobs",
          "from . import app\n", ("maild.jobs", "maild.app")),
    Plant("the store reaching up to rules", "store.planted",
          "from maild.rules import sla\n", ("store.planted", "maild.rules.sla")),
    Plant("a relative import climbing out of the store", "store.planted",
          "from ..maild import service\n", ("?", "?")),
    Plant("outbound importing the service by `import a.b.c`", "maild.outbound.planted",
          "import maild.service.desk\n", ("maild.outbound.planted", "maild.service.desk")),
    Plant("Jinja2 in the service", "maild.service.planted",
          "import jinja2\n", ("maild.service.planted", "jinja2")),
    Plant("aiosmtpd outside the SMTP module", "maild.inbound.planted",
          "from aiosmtpd.smtp import SMTP\n", ("maild.inbound.planted", "aiosmtpd")),
    Plant("Alembic in app", "maild.app",
          "from alembic import command\n", ("maild.app", "alembic")),
    Plant("domain importing clock", "maild.domain",
          "from .clock import Clock\n", ("maild.domain", "maild.clock")),
    Plant("the service reaching for the store's sessions", "maild.service.planted",
          "from store.db import transaction\n", ("maild.service.planted", "store.db")),
    Plant("app importing the store's tables", "maild.app",
          "from store.models import Ticket\n", ("maild.app", "store.models")),
    Plant("settings importing the store", "maild.settings.planted",
          "from store import db\n", ("maild.settings.planted", "store.db")),
    Plant("web importing cli", "maild.web",
          "from maild import cli\n", ("maild.web", "maild.cli")),
    Plant("one cli_* module importing another", "maild.cli_search",
          "from maild import cli_outbox\n", ("maild.cli_search", "maild.cli_outbox")),
    Plant("a new part with no row in the table", "maild.newpart",
          "import json\n", ("maild.newpart", "maild.newpart")),
]


def copy_tree(root: Path) -> Path:
    """The project's packages (maild/, store/) copied to `root`."""
    skip = shutil.ignore_patterns("__pycache__", "templates")
    for top in (PACKAGE, STORE):
        shutil.copytree(ROOT / top, root / top, ignore=skip)
    return root


def module_file(root: Path, module: str) -> Path:
    folder = root.joinpath(*module.split("."))
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def plant(root: Path, module: str, code: str) -> None:
    path = module_file(root, module)
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(before + "\n" + code, encoding="utf-8")


@pytest.mark.parametrize("planted", PLANTS, ids=[p.label for p in PLANTS])
def test_a_planted_violation_is_caught(planted: Plant, tmp_path: Path,
                                       today: set[tuple[str, str]]) -> None:
    assert planted.caught not in today
    root = copy_tree(tmp_path)
    plant(root, planted.module, planted.code)
    found = {v.key for v in check(root)}
    assert planted.caught in found, sorted(found - today)


# --- linters -------------------------------------------------------------------------------


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "maild", "store", "tests",
                             "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "maild", "store"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
