"""benchmarks/ingest.py's several nodes (``--nodes N --processors P``) and its reference line
(``--reference``): the nodes' folders and ports, their CPU by node and role, who processed
what (the journal's ``lease_holder``), and benchmarks/reference.py's line A measured in the
same invocation."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from measure import tree_cpu


class Query(Protocol):
    def execute(self, sql: str, /) -> Any: ...


@dataclass
class Node:
    """One `maild run`: its folder (config.toml, maild.log, data/), SMTP port, web port."""

    name: str
    folder: Path
    port: int
    web_port: int | None  # None: the config's default, as single-node runs always had
    proc: subprocess.Popen[bytes] | None = None
    cpu0: dict[str, float] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.folder / "maild.log"


def layout(folder: Path, nodes: int, free_port: Any) -> list[Node]:
    """One node: the run folder itself, as before; several: folder/node1, folder/node2..."""
    if nodes == 1:
        return [Node("node1", folder, free_port(), None)]
    out = []
    for k in range(1, nodes + 1):
        sub = folder / f"node{k}"
        sub.mkdir()
        out.append(Node(f"node{k}", sub, free_port(), free_port()))
    return out


def node_sections(node: Node, processors: int, plain: bool) -> str:
    """The config's [inbound] processors, [web] listen and [node] name; nothing when `plain`
    (one node, one processor: the config single-node runs always had)."""
    if plain:
        return ""
    web = f'[web]\nlisten = "127.0.0.1:{node.web_port}"\n' if node.web_port else ""
    return (f"[inbound]\nprocessors = {processors}\n\n{web}\n"
            f'[node]\nname = "{node.name}"\n\n')


def cpu_by_node(nodes: Sequence[Node]) -> dict[str, dict[str, float]]:
    """Per node, CPU seconds by role since its `cpu0` snapshot."""
    return {n.name: {k: v - n.cpu0.get(k, 0.0) for k, v in tree_cpu(n.proc.pid).items()}
            for n in nodes if n.proc is not None}


def roles_sum(per_node: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for roles in per_node.values():
        for k, v in roles.items():
            out[k] = out.get(k, 0.0) + v
    return out


def processed_by(ro: Query) -> dict[str, int]:
    """Done journal rows by the processor that claimed them ("NODE/pK"; "unclaimed" when a
    processor took them without a claim: SQLite with one processor)."""
    rows = ro.execute("SELECT coalesce(lease_holder, 'unclaimed'), count(*) FROM journal "
                      "WHERE state = 'done' GROUP BY 1 ORDER BY 1").fetchall()
    return {str(h): int(n) for h, n in rows}


def report_nodes(accepted_by_node: dict[str, int], cpu: dict[str, dict[str, float]],
                 by_processor: dict[str, int], accepted: int) -> None:
    per = 1000 / max(accepted, 1)
    print("  accepted by node: " + ", ".join(f"{k} {v}" for k, v in accepted_by_node.items()))
    for name, roles in cpu.items():
        total = sum(roles.values())
        print(f"  CPU of {name}: {total:.2f} s ({total * per:.2f} ms/msg of all): " + ", ".join(
            f"{k} {v:.2f} s" for k, v in roles.items()))
    nodes = Counter[str]()
    for holder, n in by_processor.items():
        nodes[holder.split("/")[0]] += n
    print("  processed by node: " + ", ".join(f"{k} {v}" for k, v in sorted(nodes.items()))
          + "; by processor: " + ", ".join(f"{k} {v}" for k, v in by_processor.items()))


# -- the reference line ----------------------------------------------------------------------

def line_a(mails: Sequence[Any], tmp: str | None) -> float:
    """benchmarks/reference.py's line A on these mails, once: aiosmtpd (own process, 8
    smtplib connections) + policy.default parse + SQLAlchemy ORM store (default journal),
    "sum of parts"; its messages/s."""
    import reference
    from sqlalchemy.orm import configure_mappers

    rows = reference.make_rows(mails)
    configure_mappers()
    server = reference.Server()
    try:
        smtp = reference.smtp_part(server, mails)
    finally:
        server.close()
    raws = [m.raw for m in mails]
    parse = reference.timed(lambda: reference.parse_default(raws))
    with tempfile.TemporaryDirectory(prefix="maild-reference-", dir=tmp) as folder:
        store = reference.store_orm(rows, Path(folder), reference.DEFAULT)
    seconds = smtp.wall_s + parse.wall_s + store.wall_s
    return len(mails) / seconds


def report_reference(e2e: Sequence[float], line: Sequence[float]) -> None:
    """Each run's line A (measured right after it) and the ratio of the medians."""
    a, m = statistics.median(line), statistics.median(e2e)
    print("\nreference line A (benchmarks/reference.py: aiosmtpd + policy.default + "
          "SQLAlchemy ORM, sum of parts), after each run: "
          + ", ".join(f"{x:.1f}" for x in line) + f" msg/s; median {a:.1f}")
    print(f"  ingest ÷ line A: {m / a:.2f} (median end to end {m:.1f} msg/s ÷ {a:.1f}; "
          f"PEERS.md's target is 300 ÷ 280 = {300 / 280:.2f})")

