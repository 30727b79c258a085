"""maild's copy of the stdlib feed parser (no regex compiled per boundary) parses exactly as
the stdlib's does: the same tree, payloads, preambles, epilogues and defects."""

from __future__ import annotations

from email.feedparser import BytesFeedParser as StdlibParser
from email.message import Message
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from maild.inbound.feedparser import BytesFeedParser

MAIL = Path(__file__).resolve().parent.parent / "mail"


def shape(m: Message) -> list[Any]:
    return [(p.get_content_type(), p.get_boundary(), p.preamble, p.epilogue,
             [type(d).__name__ for d in p.defects],
             None if p.is_multipart() else p.get_payload(decode=True)) for p in m.walk()]


def both(raw: bytes, chunk: int = 1 << 20) -> tuple[list[Any], list[Any]]:
    out = []
    for cls in (StdlibParser, BytesFeedParser):
        parser = cls()
        for i in range(0, len(raw), chunk):
            parser.feed(raw[i:i + chunk])
        out.append(shape(parser.close()))
    return out[0], out[1]


def test_the_sample_mails_parse_alike() -> None:
    for path in sorted(MAIL.glob("*.eml")):
        theirs, ours = both(path.read_bytes())
        assert ours == theirs, path.name


boundary = st.text(st.sampled_from("abcXYZ019'()+_,-./:=? \\*[]{}|$^"), min_size=1,
                   max_size=40).filter(lambda b: not b.endswith(" "))
tails = st.sampled_from(["", "--", " ", "\t", "--  ", "x", "-- trailing"])


@settings(max_examples=300, deadline=None)
@given(outer=boundary, inner=boundary, tail1=tails, tail2=tails, close=st.booleans(),
       nl=st.sampled_from(["\r\n", "\n"]), chunk=st.integers(1, 200))
def test_boundaries_of_any_shape_parse_alike(outer: str, inner: str, tail1: str, tail2: str,
                                             close: bool, nl: str, chunk: int) -> None:
    lines = [f'Content-Type: multipart/mixed; boundary="{outer}"', "", "preamble",
             f"--{outer}{tail1}", "Content-Type: text/plain", "", "one", f"--{outer}",
             f'Content-Type: multipart/alternative; boundary="{inner}"', "",
             f"--{inner}", "Content-Type: text/plain", "", "two", f"--{inner}{tail2}",
             "Content-Type: text/html", "", "<p>three</p>", f"--{inner}--",
             f"--{outer}" + ("--" if close else ""), "epilogue"]
    theirs, ours = both(nl.join(lines).encode(), chunk)
    assert ours == theirs
