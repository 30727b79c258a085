"""Text decoding for inbound parsing: bytes in a mail's charset, raw 8-bit header values,
RFC 2047 encoded words and folding → clean `str`; and reading header values (Message-IDs).

The decoders never raise and never return lone surrogates: a charset Python lacks or refuses
falls back to UTF-8, then cp1252.
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache

# Charsets named in mail that Python lacks or that mean a superset in practice (WHATWG).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "",
    "ascii": "", "unknown-8bit": "", "x-unknown": "", "default": "", "unknown": "",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949", "shift_jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "iso-8859-8-i": "iso-8859-8", "windows-874": "cp874", "tis-620": "cp874",
    "big5": "big5hkscs", "utf8": "utf-8",
}
# Codecs that are no mail charset and are slow or strange on hostile input (punycode is
# quadratic): treated as unknown.
_REFUSED_CODECS = frozenset({"punycode", "idna", "undefined", "unicode-escape",
                             "raw-unicode-escape", "unicode_escape", "raw_unicode_escape"})
_SAFE_CODECS = frozenset({"utf-8", "cp1252", "ascii", "latin-1", "iso8859-15", "cp1250"})
_SURROGATES = re.compile(r"[\ud800-\udfff]")


@lru_cache(maxsize=256)
def _codec(charset: str | None) -> str:
    """The Python codec for a charset name, "" when unknown (then: utf-8, else cp1252)."""
    name = (charset or "").strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name or len(name) > 40:
        return ""
    try:
        codec = codecs.lookup(name).name
        b"".decode(codec)  # rejects bytes-to-bytes codecs such as base64 and rot13
    except (LookupError, ValueError):
        return ""
    return "" if codec in _REFUSED_CODECS else codec


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Text of `data` in `charset`; never raises, never returns lone surrogates."""
    codec = _codec(charset)
    if not codec:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    try:
        text = data.decode(codec, "replace")
    except (UnicodeError, ValueError, LookupError):
        return data.decode("utf-8", "replace")
    if codec not in _SAFE_CODECS and _SURROGATES.search(text):  # utf-7 can produce them
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _from_8bit(value: str) -> str:
    """A header value as text: raw 8-bit bytes (kept by the parser as surrogates) decoded."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value)
    return _decode_bytes(data, None)


_FOLD = re.compile(r"[ \t]*[\r\n]+[ \t]*")
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unfold(value: str) -> str:
    """One line: folding (CR/LF and the indentation after them) and control chars → a space."""
    if not _HEADER_CONTROL.search(value):
        return value.strip()
    return _HEADER_CONTROL.sub(" ", _FOLD.sub(" ", value)).strip()


_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")


def _decode_words(value: str) -> str:
    """RFC 2047: encoded-words decoded; the space between two of them dropped; adjacent words
    in one charset joined before decoding (mailers split multi-byte characters across them);
    a word that does not decode is kept as it was written."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []  # decoded bytes of adjacent words in `charset`
    charset, after_word, pos = "", False, 0
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        data = _word_bytes(m.group(2), m.group(3))
        word_charset = m.group(1).split("*", 1)[0]  # RFC 2231: charset*language
        joined = not gap or (after_word and gap.isspace())
        if data is None or not joined or word_charset.lower() != charset.lower():
            out.append(_decode_bytes(b"".join(pending), charset))
            pending = []
            if not joined or data is None:
                out.append(gap)
        if data is None:
            out.append(m.group(0))
        else:
            pending.append(data)
            charset = word_charset
        after_word, pos = data is not None, m.end()
    out.append(_decode_bytes(b"".join(pending), charset))
    out.append(value[pos:])
    return _HEADER_CONTROL.sub(" ", "".join(out))


def _word_bytes(encoding: str, text: str) -> bytes | None:
    try:
        if encoding in "bB":  # a missing padding is common and harmless
            return binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
        return binascii.a2b_qp(text.encode("ascii"), header=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _clean_body(text: str) -> str:
    """Body text with "\n" line ends and no NUL or other control characters (tab, form feed
    stay): databases refuse NUL and terminals obey escape sequences."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_CONTROL.sub("", text)


# -- header values ------------------------------------------------------------------------------

def _first(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k == name), "")


_MSGID_IN_BRACKETS = re.compile(r"<\s*([^<>\s]+)\s*>")
_MSGID = re.compile(r"[^\x00-\x20\x7f<>]+@[^\x00-\x20\x7f<>]+")


def _message_ids(value: str) -> tuple[str, ...]:
    """`<id>` tokens of a Message-ID / In-Reply-To / References value, in order, without
    duplicates; brackets added where a mailer left them out; anything without an @ dropped."""
    tokens = _MSGID_IN_BRACKETS.findall(value) if "<" in value else value.replace(",", " ").split()
    out: dict[str, None] = {}
    for token in tokens:
        if len(token) <= 250 and _MSGID.fullmatch(token):
            out.setdefault(f"<{token}>", None)
    return tuple(out)

