"""Jinja2 rendering of notification templates: text and HTML pairs, StrictUndefined.

A template file sets its subject with `{% set subject %}…{% endset %}`; the rest of the file
is the body. Groups may override any file by name; the default set fills the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from maild.errors import TemplateError

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "templates" / "mail"


@dataclass(frozen=True, kw_only=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class Renderer:
    """Keeps one compiled environment per template set for the daemon's life."""

    def __init__(self, default_dir: Path = DEFAULT_DIR,
                 group_dirs: dict[int, Path] | None = None) -> None:
        self._default = self._env([default_dir])
        self._groups = {gid: self._env([d, default_dir]) for gid, d in (group_dirs or {}).items()}

    @staticmethod
    def _env(dirs: list[Path]) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                default_for_string=False),
            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
            auto_reload=False)  # templates are loaded once for the daemon's life
        return env

    def render(self, template: str, context: dict[str, Any],
               group_id: int | None = None) -> Rendered:
        env = self._groups.get(group_id, self._default) if group_id else self._default
        try:
            text_tpl = env.get_template(f"{template}.txt.j2")
            module = text_tpl.make_module(context)
            subject = " ".join(str(getattr(module, "subject", "")).split())
            text = str(module).strip() + "\n"
            html: str | None = None
            try:
                html = env.get_template(f"{template}.html.j2").render(context)
            except jinja2.TemplateNotFound:
                html = None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no template {exc.name}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{template}: {exc}") from exc
        if not subject:
            raise TemplateError(f"{template}.txt.j2 sets no subject")
        return Rendered(subject=subject, text=text, html=html)
