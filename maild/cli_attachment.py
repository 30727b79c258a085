"""`maild attachment ID [-o FILE]`: an attachment's bytes, from any node.

The id is the one `maild ticket show` prints (`[attachment ID] name (size bytes)`). The
bytes go to FILE, or to stdout when stdout is a pipe or a file; a terminal gets them only
when they are plain text (binary, or text with control characters, would garble it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maild import app
from maild.service import attachments
from maild.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def printable(content_type: str, data: bytes) -> bool:
    """Whether `data` may go to a terminal: UTF-8 text with no control characters but
    line ends and tabs (an escape sequence in an attachment must not drive the terminal)."""
    if not content_type.startswith("text/"):
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c in "\n\r\t" or (c >= " " and c != "\x7f") for c in text)


def cmd_attachment(args: argparse.Namespace) -> int:
    with app.opened(_settings(args)) as parts:
        with parts.db.read() as tx:
            view, data = attachments.attachment(parts.blobs, tx, args.id)
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"{args.output}: attachment {view.id} {view.filename} ({view.content_type}, "
              f"{len(data)} bytes)")
        return 0
    if sys.stdout.isatty() and not printable(view.content_type, data):
        print(f"attachment {view.id} {view.filename} ({view.content_type}, {len(data)} bytes) "
              "is not text: not written to the terminal; use -o FILE or redirect the output",
              file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add("attachment", cmd_attachment, sub,
             help="an attachment's bytes, by the id `ticket show` prints")
    sp.add_argument("id", type=int)
    sp.add_argument("-o", "--output", metavar="FILE",
                    help="write to FILE (default: stdout, unless it is a terminal)")
