"""HTML to PDF with WeasyPrint (the only module that imports it), off the event loop.

Rendering takes tens of milliseconds to seconds of CPU, so the daemon calls
`html_to_pdf_async`, which runs it in a worker thread. Renders are serialised (Pango and
fontconfig are not documented as thread-safe, and work orders are rare). Only `file:` and
`data:` URLs are fetched: a template may use a logo beside it, never the network.
WeasyPrint is imported on first use: loading it (Pango, fontconfig) takes about a second,
which every `maild` command and every daemon process start would otherwise pay.
"""

from __future__ import annotations

import asyncio
import threading

from maild.errors import TemplateError

_LOCK = threading.Lock()


def html_to_pdf(html: str, base_url: str | None = None) -> bytes:
    """The PDF of an HTML page; relative URLs resolve against `base_url` (a folder)."""
    import weasyprint  # here, not at the top: see the module docstring
    fetcher = weasyprint.URLFetcher(timeout=5, allowed_protocols=("file", "data"))
    try:
        with _LOCK:
            pdf = weasyprint.HTML(string=html, base_url=base_url, url_fetcher=fetcher,
                                  media_type="print").write_pdf()
    except Exception as exc:  # WeasyPrint's errors have no common base: translate them all
        raise TemplateError(f"PDF rendering failed: {exc}") from exc
    if not isinstance(pdf, bytes):  # write_pdf() without a target returns the bytes
        raise TemplateError("PDF rendering returned no document")
    return pdf


async def html_to_pdf_async(html: str, base_url: str | None = None) -> bytes:
    """`html_to_pdf` in a worker thread, so the event loop never waits on WeasyPrint."""
    return await asyncio.to_thread(html_to_pdf, html, base_url)
