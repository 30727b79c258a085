"""Authentication-Results of the trusted relay, read for the From domain (pure)."""

from __future__ import annotations

import pytest

from maild.domain import Address, Parsed
from maild.inbound.authres import unauthenticated


def parsed(*results: str, sender: str = "ramon@example.com") -> Parsed:
    return Parsed(message_id=None, sender=Address(addr=sender, name=""),
                  headers=tuple(("authentication-results", r) for r in results))


@pytest.mark.parametrize("require, headers, ok", [
    ("none", (), True),
    ("dkim", ("mx.example.com; dkim=pass header.d=example.com",), True),
    ("dkim", ("mx.example.com; dkim=pass header.i=@example.com",), False),  # no header.d
    ("spf", ("mx.example.com; spf=pass smtp.mailfrom=bounce@mail.example.com",), True),
    ("spf", ("mx.example.com; spf=softfail smtp.mailfrom=example.com",), False),
    ("dkim_or_spf", ("mx.example.com; dkim=fail header.d=example.com",
                     "mx.example.com; spf=pass smtp.mailfrom=example.com"), True),
    ("dkim", ("mx.example.com (postfix (v3)); dkim=pass (2048-bit key; secure) "
              "header.d=example.com",), True),
    ("dkim", ("mx.example.com; none",), False),
    ("dkim", ("mx.example.com.evil.example; dkim=pass header.d=example.com",), False),
    ("dkim", ("mx.example.com; dkim=pass header.d=notexample.com",), False),
])
def test_results(require: str, headers: tuple[str, ...], ok: bool) -> None:
    reason = unauthenticated(parsed(*headers), require=require, authserv_id="mx.example.com")
    assert (reason is None) is ok, reason
