"""Hashed reply addresses: round trip, forgery, truncation, case folding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from maild.tokens import TAG_BYTES, Signer, make_address, split_address

signer = Signer("a-secret-of-enough-length-123456")
ids = st.integers(min_value=0, max_value=2**40)


@given(ids, ids)
def test_reply_token_round_trip(ticket_id: int, user_id: int) -> None:
    claim = signer.verify_reply(signer.reply_token(ticket_id, user_id))
    assert claim is not None
    assert (claim.ticket_id, claim.user_id) == (ticket_id, user_id)


@given(ids, ids, st.integers(min_value=0, max_value=200), st.sampled_from("abcdefghijklmnop234567"))
def test_any_edit_is_rejected(ticket_id: int, user_id: int, pos: int, char: str) -> None:
    token = signer.reply_token(ticket_id, user_id)
    i = pos % len(token)
    edited = token[:i] + char + token[i + 1:]
    if edited != token:
        assert signer.verify_reply(edited) is None


def test_truncated_and_foreign_tokens_are_rejected() -> None:
    token = signer.reply_token(42, 7)
    for n in range(len(token)):
        assert signer.verify_reply(token[:n]) is None
    other = Signer("another-installation-secret-xyz")
    assert other.verify_reply(token) is None
    # a bounce token is not a reply token, even with the same key
    assert signer.verify_reply(signer.bounce_token(42)) is None
    assert signer.verify_bounce(token) is None


def test_tag_is_at_least_64_bits_and_case_insensitive() -> None:
    assert TAG_BYTES * 8 >= 64
    token = signer.reply_token(42, 7)
    assert signer.verify_reply(token.upper()) is not None


def test_reply_address_form() -> None:
    token = signer.reply_token(1, 2)
    addr = make_address("support", token, "example.com")
    assert addr == f"support+{token}@example.com"
    assert split_address(addr.upper(), "support", "example.com") == token.upper()
    assert split_address("support@example.com", "support", "example.com") is None
    assert split_address(f"sales+{token}@example.com", "support", "example.com") is None
    assert split_address(f"support+{token}@other.com", "support", "example.com") is None


def test_garbage_never_raises() -> None:
    for junk in ["", "!!!", "a" * 500, "é", "0" * 40, "=" * 8]:
        assert signer.verify_reply(junk) is None


def test_loop_mark_binds_the_message_id() -> None:
    mark = signer.loop_mark("<a@example.com>")
    assert signer.verify_loop_mark("<a@example.com>", mark)
    assert not signer.verify_loop_mark("<b@example.com>", mark)
