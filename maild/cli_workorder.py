"""`maild workorder ID -o FILE.pdf [--html FILE.html]`: a ticket's work order, printed.

The service gathers the ticket's values (`service.workorders`), the ticket type's template
makes the HTML (`outbound.render.WorkOrders`), WeasyPrint makes the PDF (`outbound.pdf`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maild import app
from maild.errors import ConfigError
from maild.outbound.pdf import html_to_pdf
from maild.outbound.render import WorkOrders
from maild.service.workorders import workorder_context
from maild.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def _target(text: str, option: str, suffix: str) -> Path:
    """An output file we can write: the right suffix, in an existing folder, not a folder."""
    path = Path(text)
    if path.suffix.lower() != suffix:
        raise ConfigError(option, f"{text} must end in {suffix}")
    if path.is_dir():
        raise ConfigError(option, f"{text} is a folder")
    if not path.parent.is_dir():
        raise ConfigError(option, f"{path.parent} is not a folder")
    return path


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(option, f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_workorder(args: argparse.Namespace) -> int:
    out = _target(args.output, "--output", ".pdf")
    html_out = _target(args.html, "--html", ".html") if args.html else None
    settings = _settings(args)
    with app.opened(settings) as parts:
        with parts.db.read() as tx:
            ctx = workorder_context(parts.desk.kit, tx, args.id, site_name=settings.site.name,
                                    site_url=settings.site.url,
                                    timezone=settings.site.timezone, now=parts.clock.now())
        orders = WorkOrders(group_dirs=app.group_templates(settings, parts.desk.directory.groups))
    page = orders.render(ctx, group_id=ctx["ticket"]["id_group"])
    if html_out is not None:
        _write(html_out, page.html.encode("utf-8"), "--html")
    _write(out, html_to_pdf(page.html, page.base_url), "--output")
    print(f"wrote {out} (ticket {args.id}, template {page.template})")
    return 0


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add("workorder", cmd_workorder, sub,
             help="a ticket's work order as a PDF, in its ticket type's template")
    sp.add_argument("id", type=int)
    sp.add_argument("-o", "--output", required=True, help="FILE.pdf")
    sp.add_argument("--html", help="also write the HTML it was made from (FILE.html)")
