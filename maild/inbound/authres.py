"""Did the trusted relay vouch for the From domain? (Authentication-Results, RFC 8601; pure)

Only results written under the relay's own name (`[security] authserv_id`) count; RFC 8601
§5 has a receiving relay delete headers that claim its name, so these cannot be forged by the
sender. A pass counts only when the domain it proves is the From domain or shares it
(`mail.example.com` and `example.com`), as DMARC's relaxed alignment reads it.
"""

from __future__ import annotations

import re

from maild.domain import Parsed

_COMMENT = re.compile(r"\([^()]*\)")
_METHOD = re.compile(r"^\s*([a-z0-9_-]+)\s*=\s*([a-z]+)", re.IGNORECASE)
_PROP = re.compile(r"([a-z]+\.[a-z-]+)\s*=\s*\"?([^\s;\"]+)\"?", re.IGNORECASE)


def results(parsed: Parsed, authserv_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, result, properties) of every result the trusted relay wrote."""
    out: list[tuple[str, str, dict[str, str]]] = []
    for name, value in parsed.headers:
        if name != "authentication-results":
            continue
        text = value
        while _COMMENT.search(text):  # comments may nest; strip innermost first
            text = _COMMENT.sub("", text)
        head, _, rest = text.partition(";")
        if not head.split() or head.split()[0].lower() != authserv_id.lower():
            continue
        for resinfo in rest.split(";"):
            m = _METHOD.match(resinfo)
            if m is None:
                continue
            props = {k.lower(): v.lower() for k, v in _PROP.findall(resinfo[m.end():])}
            out.append((m.group(1).lower(), m.group(2).lower(), props))
    return out


def _aligned(domain: str, from_domain: str) -> bool:
    d, f = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return bool(d) and (d == f or f.endswith("." + d) or d.endswith("." + f))


def unauthenticated(parsed: Parsed, *, require: str, authserv_id: str | None) -> str | None:
    """None when the mail passes `require` (none | dkim | spf | dkim_or_spf); else why not."""
    if require == "none":
        return None
    if parsed.sender is None or authserv_id is None:
        return "the mail has no sender the relay could vouch for"
    from_domain = parsed.sender.addr.rpartition("@")[2]
    passed: set[str] = set()
    for method, result, props in results(parsed, authserv_id):
        if result != "pass":
            continue
        if method == "dkim" and _aligned(props.get("header.d", ""), from_domain):
            passed.add("dkim")
        if method == "spf":
            if _aligned(props.get("smtp.mailfrom", "").rpartition("@")[2], from_domain):
                passed.add("spf")
    wanted = {"dkim": {"dkim"}, "spf": {"spf"}, "dkim_or_spf": {"dkim", "spf"}}[require]
    if passed & wanted:
        return None
    need = " or ".join(sorted(wanted)).upper()
    return (f"{authserv_id} reported no {need} pass for {from_domain} in Authentication-Results,"
            " which this desk requires before commands act")
