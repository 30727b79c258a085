"""Reply stripping: the step that turns a reply's body into the note a ticket stores.

`strip_quoted` keeps what the sender wrote and drops what their client added: the quoted
history (attribution lines, `>` blocks, Outlook separators and header blocks) and the
signature ("-- " or a mobile trailer such as "Sent from my iPhone"). A forwarded message is
the content of a forward, so it is kept.

Everything works line by line with plain string tests (no backtracking regexes): each line
is looked at a bounded number of times, so a megabyte body costs milliseconds.

Known limit: an Outlook forward has no marker line, only the header block, so it looks like
a reply and its forwarded part is dropped.
"""

from __future__ import annotations

from maild.inbound.quote_lines import Kind, is_quoted, line_kind


def strip_quoted(text: str) -> str:
    """The new text of a reply, without quoted history and signature.

    Leading and trailing blank lines are trimmed; kept lines are returned unchanged. When
    nothing would be left (a mail that is only a quote), the original text, trimmed.
    """
    lines = text.split("\n")
    return _joined(_new_lines(lines)) or _joined(lines)


def _new_lines(lines: list[str]) -> list[str]:
    """One pass over the lines; stops where the history or the signature starts."""
    note = _Note()
    i = 0
    while i < len(lines):
        kind, span = line_kind(lines, i)
        if kind is Kind.TEXT:
            note.keep(lines[i])
        elif kind is Kind.QUOTED:
            note.drop()
        elif kind is Kind.ATTRIBUTION:
            if not _quote_follows(lines, i + span):
                break  # the history follows unquoted (e.g. text made from HTML)
            note.drop()  # the header of a quote block: inline or bottom-posted reply
        elif kind is Kind.FORWARD:
            note.keep_all(lines[i:])
            break
        elif kind is Kind.SIGNATURE:
            note.drop()
            note.keep_all(lines[_forward_after(lines, i) :])
            break
        else:
            break  # Kind.HISTORY
        i += span
    return note.lines


def _forward_after(lines: list[str], signature: int) -> int:
    """Where a forward marker after the signature starts, else len(lines).

    The forwarder's signature sits above the forwarded message, which is kept.
    """
    for j in range(signature + 1, len(lines)):
        kind, _ = line_kind(lines, j)
        if kind is Kind.FORWARD:
            return j
        if kind in (Kind.ATTRIBUTION, Kind.HISTORY):
            break
    return len(lines)


class _Note:
    """The kept lines; where lines were dropped, one blank line separates what is left."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._gap = False

    def drop(self) -> None:
        self._gap = True

    def keep(self, line: str) -> None:
        blank = not line.strip()
        if self._gap and self.lines:
            last_blank = not self.lines[-1].strip()
            if blank and last_blank:
                return
            if not blank and not last_blank:
                self.lines.append("\r" if self.lines[-1].endswith("\r") else "")
        if not blank:
            self._gap = False
        self.lines.append(line)

    def keep_all(self, lines: list[str]) -> None:
        for line in lines:
            self.keep(line)


def _joined(lines: list[str]) -> str:
    """Lines joined, without leading blank lines and trailing whitespace."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    return "\n".join(lines[start:]).rstrip()


def _quote_follows(lines: list[str], i: int) -> bool:
    """Whether the next non-blank line from i on is quoted."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i < len(lines) and is_quoted(lines[i])
