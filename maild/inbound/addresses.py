"""Address parsing for inbound parsing: From / To / Cc header values → `Address` values.

Strict on purpose: nothing here trusts a decoded value for structure. A list member whose
structure is broken or ambiguous (text after the <address>, a second <, bare specials in the
display name) gives no address, and an ambiguous From gives no sender at all. Only display
names are decoded (RFC 2047).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from maild.domain import Address
from maild.inbound.decode import _decode_words

_ADDR_TOKEN = re.compile(
    r"""(?P<qs>"(?:[^"\\]|\\.)*+")"""
    r"""|(?P<comment>\((?:[^()\\]|\\.)*+\))"""
    r"""|(?P<ws>\s++)"""
    r"""|(?P<atom>[^\s"(),.:;<>@\[\]\\]++)"""
    r"""|(?P<special>.)""",
    re.DOTALL,
)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\ud7ff\ue000-\U0010ffff-]"
_LABEL_CHAR = r"[A-Za-z0-9\u00a0-\ud7ff\ue000-\U0010ffff]"
_LABEL = rf"{_LABEL_CHAR}(?:[A-Za-z0-9\u00a0-\ud7ff\ue000-\U0010ffff-]{{0,61}}{_LABEL_CHAR})?"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_ADDR_SPEC = re.compile(rf'(?:({_DOT_ATOM})|"({_DOT_ATOM})")@({_LABEL}(?:\.{_LABEL})*)')

_Token = tuple[str, str]  # (kind, text)


@dataclass
class _Item:
    """One list member of an address header, as tokens; `bad` when its structure is broken."""

    tokens: list[_Token] = field(default_factory=list)
    bad: bool = False
    in_group: bool = False


def _address_items(value: str) -> list[_Item]:
    """Split an address header at top-level commas, understanding groups (`name: a, b;`)."""
    items = [_Item()]
    angle, group = 0, False
    for m in _ADDR_TOKEN.finditer(value):
        kind, text = m.lastgroup or "special", m.group()
        item = items[-1]
        if kind == "special" and text in ",;:<>" and not (angle and text in ",;:"):
            if text == "<":
                item.bad |= angle > 0
                angle += 1
            elif text == ">":
                item.bad |= angle == 0
                angle = max(angle - 1, 0)
            elif text == ":":
                item.bad |= group or any(k == "special" and t == "<" for k, t in item.tokens)
                group, item.tokens = True, []  # the group's name is no address
                item.in_group = True
                continue
            else:
                item.bad |= text == ";" and not group
                group = group and text != ";"
                items.append(_Item(in_group=group))
                continue
        item.tokens.append((kind, text))
    items[-1].bad |= angle > 0  # an unclosed group at the end is forgiven, not an unclosed <
    return [i for i in items if any(k not in ("ws", "comment") for k, _ in i.tokens) or i.bad]


def _mailbox(item: _Item) -> Address | None:
    """The address of one list member, or None when it is malformed or ambiguous."""
    if item.bad:
        return None
    tokens = item.tokens
    opens = [i for i, (k, t) in enumerate(tokens) if k == "special" and t == "<"]
    if not opens:
        core = _trim(tokens)
        comments = " ".join(t[1:-1] for k, t in tokens if k == "comment")
        addr = _addr_spec(core)
        return Address(addr=addr, name=_display(comments)) if addr else None
    start = opens[0]
    close = next(i for i in range(start, len(tokens)) if tokens[i] == ("special", ">"))
    if any(k not in ("ws", "comment") for k, _ in tokens[close + 1 :]):
        return None  # text after the <address>: which one was meant?
    addr = _addr_spec(tokens[start + 1 : close])
    if addr is None:
        return None
    phrase = _trim([t for t in tokens[:start] if t[0] != "comment"])
    if all(k in ("atom", "qs", "ws") or t == "." for k, t in phrase):
        return Address(addr=addr, name=_display(_phrase_text(phrase)))
    # `a@b.example <a@b.example>` is common and harmless; any other bare specials are not.
    if "".join(t for k, t in phrase if k != "ws").lower() == addr:
        return Address(addr=addr)
    return None


def _trim(tokens: list[_Token]) -> list[_Token]:
    """Tokens without comments and without whitespace at either end."""
    kept = [t for t in tokens if t[0] != "comment"]
    while kept and kept[0][0] == "ws":
        kept.pop(0)
    while kept and kept[-1][0] == "ws":
        kept.pop()
    return kept


def _addr_spec(tokens: list[_Token]) -> str | None:
    """`local@domain`, lower-cased, when the tokens are exactly that (no spaces, comments,
    routes or domain literals)."""
    if any(k in ("ws", "comment") or (k == "special" and t not in ".@") for k, t in tokens):
        return None
    return _valid_addr("".join(t for _, t in tokens))


def _valid_addr(text: str) -> str | None:
    """`text` lower-cased if it is a plain addr-spec; a domain needs a dot unless localhost."""
    m = _ADDR_SPEC.fullmatch(text)
    if m is None:
        return None
    local, domain = m.group(1) or m.group(2), m.group(3).lower()
    if len(local) > 64 or len(domain) > 253 or ("." not in domain and domain != "localhost"):
        return None
    # RFC 6532 allows UTF-8, but only letters, marks and digits of it: an invisible character
    # (zero-width space, right-to-left override) would make a look-alike of another address.
    if not text.isascii() and any(unicodedata.category(ch)[0] not in "LMN"
                                  for ch in text if ord(ch) > 127):
        return None
    return f"{local}@{domain}".lower()


def _phrase_text(tokens: list[_Token]) -> str:
    parts = []
    for kind, text in tokens:
        if kind == "qs":
            parts.append(re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL))
        else:
            parts.append(" " if kind == "ws" else text)
    return "".join(parts)


def _display(text: str) -> str:
    return " ".join(_decode_words(text).split())


_SPECIALS = r'"(),:;<>@\[\]\\'
# The usual one-mailbox header (`Name <a@b>`, `"Name" <a@b>`, `a@b`), read by one regex with
# exactly the rules of the token parser below, which handles all the rest.
_SIMPLE_MAILBOX = re.compile(
    rf'\s*(?:"((?:[^"\\]|\\.)*+)"|([^{_SPECIALS}]*+))<([^\s{_SPECIALS}]+@[^\s{_SPECIALS}]+)>\s*'
    rf'|\s*([^\s{_SPECIALS}]+@[^\s{_SPECIALS}]+)\s*',
    re.DOTALL)


def _mailboxes(value: str) -> list[tuple[Address | None, bool]]:
    """(address or None when invalid, whether it is a group member) for each list member."""
    m = _SIMPLE_MAILBOX.fullmatch(value)
    if m is None:
        return [(_mailbox(i), i.in_group) for i in _address_items(value)]
    quoted, plain, addr, bare = m.groups()
    valid = _valid_addr(addr or bare)
    if valid is None:
        return [(None, False)]
    name = re.sub(r"\\(.)", r"\1", quoted, flags=re.DOTALL) if quoted is not None else plain
    return [(Address(addr=valid, name=_display(name or "")), False)]


def _sender(raw_headers: list[tuple[str, str]]) -> Address | None:
    """The one mailbox of the one From header; None for anything else."""
    values = [v for k, v in raw_headers if k == "from"]
    if len(values) != 1:
        return None
    found = _mailboxes(values[0])
    if len(found) != 1 or found[0][1]:
        return None
    return found[0][0]


def _address_list(raw_headers: list[tuple[str, str]], name: str
                  ) -> tuple[tuple[Address, ...], int]:
    """The valid, distinct addresses of every `name` header, and how many members there were."""
    members = [a for k, v in raw_headers if k == name for a, _ in _mailboxes(v)]
    found: dict[str, Address] = {}
    for address in members:
        if address is not None:
            found.setdefault(address.addr, address)
    return tuple(found.values()), len(members)

