"""The spec's red/green SLA time line of a ticket, drawn to SVG (by hand) or PNG (Pillow)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

GREEN, RED, GREY = "#2e9e44", "#d23c3c", "#555555"
WIDTH, BAR_TOP, BAR_HEIGHT, HEIGHT = 900, 34, 36, 100

Segment = tuple[datetime, datetime, bool]  # from, to, compliant


def _layout(segments: list[Segment]) -> list[tuple[float, float, bool]]:
    start, end = segments[0][0], segments[-1][1]
    span = max((end - start).total_seconds(), 1.0)
    scale = (WIDTH - 20) / span
    return [(10 + (a - start).total_seconds() * scale, 10 + (b - start).total_seconds() * scale,
             ok) for a, b, ok in segments]


def _labels(segments: list[Segment], title: str) -> tuple[str, str, str]:
    return (title, f"{segments[0][0]:%Y-%m-%d %H:%M} UTC", f"{segments[-1][1]:%Y-%m-%d %H:%M} UTC")


def svg(segments: list[Segment], title: str) -> str:
    if not segments:
        raise ValueError("the ticket has no time to draw yet")
    head, left, right = (escape(x) for x in _labels(segments, title))
    bars = "".join(
        f'<rect x="{x0:.1f}" y="{BAR_TOP}" width="{max(x1 - x0, 0.5):.1f}" '
        f'height="{BAR_HEIGHT}" fill="{GREEN if ok else RED}"/>'
        for x0, x1, ok in _layout(segments))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'font-family="sans-serif" font-size="12">'
            f'<text x="10" y="20" fill="{GREY}">{head}</text>{bars}'
            f'<text x="10" y="{BAR_TOP + BAR_HEIGHT + 18}" fill="{GREY}">{left}</text>'
            f'<text x="{WIDTH - 10}" y="{BAR_TOP + BAR_HEIGHT + 18}" fill="{GREY}" '
            f'text-anchor="end">{right}</text></svg>\n')


def png(segments: list[Segment], title: str) -> bytes:
    from io import BytesIO

    from PIL import Image, ImageDraw

    if not segments:
        raise ValueError("the ticket has no time to draw yet")
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    head, left, right = _labels(segments, title)
    draw.text((10, 8), head, fill=GREY)
    for x0, x1, ok in _layout(segments):
        draw.rectangle((x0, BAR_TOP, max(x1, x0 + 0.5), BAR_TOP + BAR_HEIGHT),
                       fill=GREEN if ok else RED)
    draw.text((10, BAR_TOP + BAR_HEIGHT + 8), left, fill=GREY)
    draw.text((WIDTH - 10 - draw.textlength(right), BAR_TOP + BAR_HEIGHT + 8), right, fill=GREY)
    out = BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write(path: Path, segments: list[Segment], title: str) -> None:
    suffix = path.suffix.lower()
    if suffix == ".svg":
        path.write_text(svg(segments, title), encoding="utf-8")
    elif suffix == ".png":
        path.write_bytes(png(segments, title))
    else:
        raise ValueError(f"{path.name}: the time line is drawn to .svg or .png")
