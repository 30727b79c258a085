"""The dependency rule as data, and `check(root)`, which reads a checkout against it.

An allow-list: each part of maild names the parts it may import, each third-party library
names the one module or package that may import it. Anything not listed is a violation,
including a new part or a new library nobody has placed yet. Where today's code breaks the
rule, the breach is listed in KNOWN_DEBTS with its reason instead of the rule being bent to
fit; tests/test_architecture.py checks that every debt still exists, so the list only shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.import_graph import PACKAGE, STORE, Import, is_stdlib, read_imports

# --- project parts -------------------------------------------------------------------------
# A part is the first name under `maild.`: `maild.inbound.parse` belongs to "inbound". Every
# `maild.cli_*` module is the part "cli_*". Imports inside one part are free; the table says
# which other parts each may import. Stdlib is always allowed.
BASE = frozenset({"domain", "errors"})
BELOW_APP = frozenset({
    "domain", "errors", "clock", "tokens", "rules", "store", "service", "inbound", "outbound",
    "settings", "health", "supervise", "doorbell", "jobs", "web", "children", "node",
})

ALLOWED: dict[str, frozenset[str]] = {
    "maild": frozenset(),  # the package's __init__
    # value types, the exception tree, the Clock, reply tokens: stdlib only
    "domain": frozenset(),
    "errors": frozenset(),
    "clock": frozenset(),
    "tokens": frozenset(),
    # process plumbing, stdlib only: supervised tasks and health parts, the wake-up pipes
    "supervise": frozenset(),
    "doorbell": frozenset(),
    # pure decisions: no I/O, no time read, no storage
    "rules": BASE,
    # persistence: never rules, service, inbound, outbound
    "store": BASE,
    # TOML → frozen dataclasses, validated with the rules' own parsers
    "settings": BASE | {"rules"},
    # the one layer that changes tickets: never inbound, outbound
    "service": BASE | {"clock", "rules", "store"},
    # mail in: everything the service may, plus the service itself and the process plumbing
    # (supervise, doorbell: stdlib only); never outbound
    "inbound": BASE | {"clock", "rules", "store", "tokens", "service", "supervise",
                       "doorbell"},
    # mail out: never inbound, service
    "outbound": BASE | {"clock", "tokens", "store", "supervise", "doorbell"},
    # /healthz: asks the store and the supervised parts
    "health": BASE | {"clock", "store", "supervise"},
    # this node among the nodes on one database: its heartbeat and leases, in the store
    "node": BASE | {"store", "supervise"},
    # timed jobs run the service's sweeps
    "jobs": BASE | {"clock", "store", "service", "supervise"},
    # the HTTP edge: the survey page (service, tokens, outbound's renderer), /healthz, and
    # /metrics, which shows the listener's counters (inbound) and the parts' health
    "web": BASE | {"clock", "tokens", "store", "service", "supervise", "health", "inbound",
                   "outbound"},
    # the worker processes of `maild run`: started from the settings' config file, watched
    "children": BASE | {"settings", "health", "supervise"},
    # the composition root wires everything below it; only the command line sits above it.
    # It is four modules: wiring builds the parts, serving runs the roles in one event loop,
    # daemon is `maild run`/`maild work`, and app holds the names the command line uses.
    "wiring": BELOW_APP,
    "serving": BELOW_APP | {"wiring"},
    "daemon": BELOW_APP | {"wiring", "serving"},
    "app": BELOW_APP | {"wiring", "serving", "daemon"},
    # the command line: `maild` itself (cli) and its subcommands (cli_*, imported by cli only)
    "cli": BELOW_APP | {"app", "cli_*"},
    "cli_*": BELOW_APP | {"app"},
    "__main__": frozenset({"cli"}),
}

# --- third-party libraries -----------------------------------------------------------------
# top-level import name → the module or package that alone may import it
LIBRARIES: dict[str, str] = {
    "sqlalchemy": "store",
    "alembic": "store",
    "psycopg": "store",  # reached through SQLAlchemy's URL; never imported by hand
    "aiosmtpd": "maild.inbound.smtp",
    "aioimaplib": "maild.inbound.imap_client",
    "mailparser": "maild.inbound.parse",
    "bleach": "maild.inbound.sanitize",
    "jinja2": "maild.outbound.render",
    "weasyprint": "maild.outbound.pdf",
    "aiosmtplib": "maild.outbound.transport",
    "PIL": "maild.outbound.timeline",
    "aiohttp": "maild.web",  # the webhook poster (outbound/webhook.py) uses urllib
    "apscheduler": "maild.jobs",
    "holidays": "maild.settings.features",
}

# The store's machinery (engine and sessions, tables, the executor, migrations): nothing
# outside the store imports it. Callers get a `Database`, a `Tx`, and typed records.
STORE_INSIDES = frozenset({"store.db", "store.models", "store.prepared", "store.migrations"})

# --- known debts ---------------------------------------------------------------------------
# (importer module, imported project module or library): breaches of the rule in today's code,
# each to be paid by the issue that owns it and then removed from here. Listing a pair that
# is no longer a violation fails the test: the list can only shrink.
KNOWN_DEBTS: dict[tuple[str, str], str] = {
}


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    where: str  # path:line
    why: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.importer, self.imported)

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported} ({self.why})"


def part(module: str) -> str:
    """The row of ALLOWED a module falls under: its first name under `maild.`, or "store"."""
    names = module.split(".")
    if names[0] == STORE:
        return STORE
    if len(names) == 1:
        return PACKAGE
    return "cli_*" if names[1].startswith("cli_") else names[1]


def _owns(owner: str, module: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def check(root: Path) -> list[Violation]:
    """Every import in the checkout at `root` that the rule does not allow, debts included."""
    modules, imports, unresolved = read_imports(root)
    found = [Violation("?", "?", where, "unresolvable") for where in unresolved]
    for module in sorted(modules):
        if part(module) not in ALLOWED:
            where = str(modules[module].path.relative_to(root))
            found.append(Violation(module, module, where, f"part {part(module)!r} has no row "
                                   "in ALLOWED: place it"))
    seen: set[tuple[str, str]] = set()
    for imp in imports:
        why = _judge(imp)
        if why is not None and (imp.importer, imp.imported) not in seen:
            seen.add((imp.importer, imp.imported))
            where = f"{imp.path.relative_to(root)}:{imp.line}"
            found.append(Violation(imp.importer, imp.imported, where, why))
    return found


def _judge(imp: Import) -> str | None:
    """Why this import breaks the rule, or None when it is allowed."""
    if imp.project:
        mine, theirs = part(imp.importer), part(imp.imported)
        if mine not in ALLOWED or (mine == theirs and (mine == STORE or imp.importer.split(
                ".")[:2] == imp.imported.split(".")[:2])):
            return None  # an unplaced part is reported once, as such; a part uses itself freely
        if theirs == STORE and mine != STORE and imp.imported in STORE_INSIDES:
            return (f"{imp.imported} is the store's own machinery: outside the store, use "
                    "store.unit (Database, Tx) and the records the operations return")
        if theirs == PACKAGE or theirs in ALLOWED[mine]:
            return None
        return f"{mine} may import only {', '.join(sorted(ALLOWED[mine])) or 'stdlib'}"
    if is_stdlib(imp.imported):
        return None
    owner = LIBRARIES.get(imp.imported)
    if owner is None:
        return "a library with no row in LIBRARIES: place it in its one module"
    if _owns(owner, imp.importer):
        return None
    return f"only {owner} may import {imp.imported}"
