"""/metrics names the node that answers, its version, and the leases it holds."""

from __future__ import annotations

import asyncio

import aiohttp

from maild import __version__
from maild.node import imap_lease, wall_clock
from maild.web import NodeFigures, prometheus


def held(d) -> int:
    with d.parts.db.read() as tx:
        now = wall_clock()
        return sum(1 for lease in tx.nodes.leases()
                   if lease.holder == d.parts.node.me.name and lease.until >= now)


async def test_metrics_carry_the_node(make_settings, start_daemon):
    d = await start_daemon(make_settings())
    name = d.parts.node.me.name
    assert await asyncio.to_thread(d.parts.node.take, imap_lease("support-box"))
    assert await asyncio.to_thread(d.parts.node.take, "test:another")
    before = await asyncio.to_thread(held, d)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{d.running.web_port}/metrics") as r:
            text = await r.text()
    after = await asyncio.to_thread(held, d)  # the scheduler's lease may come in between
    assert "# TYPE maild_node_info gauge" in text
    assert f'maild_node_info{{node="{name}",version="{__version__}"}} 1' in text
    [line] = [x for x in text.splitlines() if x.startswith("maild_node_leases{")]
    assert line.startswith(f'maild_node_leases{{node="{name}"}} ')
    assert 2 <= before <= int(line.rsplit(" ", 1)[1]) <= after


def test_node_labels_are_escaped_and_leases_left_out_without_the_database():
    text = prometheus(None, None, None, NodeFigures('a"b\\c\nd', "1.0", None))
    assert 'maild_node_info{node="a\\"b\\\\c\\nd",version="1.0"} 1' in text
    assert "maild_node_leases" not in text
