"""The stdlib's `email.feedparser`, in a private copy that does not compile a regular
expression for every multipart boundary.

For each multipart the stdlib parser compiles `(?P<sep>--BOUNDARY)(?P<end>--)?…$`. Every mail
has its own boundary, so `re`'s cache never helps, and compiling that pattern was a fifth of
the journal processor's CPU (0.4 ms a mail). This module loads the stdlib's own source under
another name and gives that copy an `re` whose `compile` answers the boundary pattern with an
object that matches exactly the same lines (the literal separator, then the compiled-once
tail) and returns the same `end` and `linesep` groups, which are all the parser reads. Any
other pattern, or a boundary pattern of another shape (a future Python), goes to `re`.
The stdlib module itself is left as it is.
"""

from __future__ import annotations

import email.feedparser
import importlib.util
import re
import sys
from types import ModuleType
from typing import Any

_HEAD = "(?P<sep>"
_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_TAIL_RE = re.compile(_TAIL[1:])
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class _Boundary:
    """`re.compile(_HEAD + re.escape(separator) + _TAIL)`, for `.match(line)` only."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        if not line.startswith(self.separator):
            return None
        return _TAIL_RE.match(line, len(self.separator))


class _Re:
    """The `re` module, but for the boundary pattern (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: Any, flags: int = 0) -> Any:
        if (not flags and isinstance(pattern, str) and pattern.startswith(_HEAD)
                and pattern.endswith(_TAIL)):
            escaped = pattern[len(_HEAD):-len(_TAIL)]
            separator = _ESCAPED.sub(r"\1", escaped)
            if re.escape(separator) == escaped:  # exactly what the parser built
                return _Boundary(separator)
        return re.compile(pattern, flags)


def _private_copy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("maild.inbound._stdlib_feedparser",
                                                  email.feedparser.__file__)
    if spec is None or spec.loader is None:  # no source to load: the stdlib parser as is
        return email.feedparser
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.re = _Re()  # type: ignore[attr-defined]
    return module


_module = _private_copy()
BytesFeedParser: type[email.feedparser.BytesFeedParser] = _module.BytesFeedParser
