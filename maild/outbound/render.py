"""Jinja2 rendering of notification templates: text and HTML pairs, StrictUndefined.

A template file sets its subject with `{% set subject %}…{% endset %}`; the rest of the file
is the body. Groups may override any file by name; the default set fills the rest.
Work orders (`WorkOrders`) are HTML pages for the PDF step, one per ticket type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from maild.errors import TemplateError
from maild.outbound.macros import spec_macros

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "templates" / "mail"
WEB_DIR = DEFAULT_DIR.parent / "web"
WORKORDER_DIR = DEFAULT_DIR.parent / "workorder"


def _environment(dirs: list[Path], *, mail: bool = False) -> jinja2.Environment:
    """One template set, compiled once for the daemon's life: an unknown variable is an
    error, HTML is escaped (in a mail set, only the .html.j2 half of each text/HTML pair)."""
    escape: Any = (jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=False) if mail else True)
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
        undefined=jinja2.StrictUndefined, autoescape=escape, keep_trailing_newline=mail,
        trim_blocks=True, lstrip_blocks=True, auto_reload=False)


@dataclass(frozen=True, kw_only=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class Renderer:
    """Keeps one compiled environment per template set for the daemon's life."""

    def __init__(self, default_dir: Path = DEFAULT_DIR,
                 group_dirs: dict[int, Path] | None = None) -> None:
        self._default_dir = default_dir
        self._group_dirs = dict(group_dirs or {})
        self._default = _environment([default_dir], mail=True)
        self._groups = {gid: _environment([d, default_dir], mail=True)
                        for gid, d in self._group_dirs.items()}

    def names(self, group_id: int | None = None) -> list[str]:
        """Every notification template of a set (the group's, and the defaults under it)."""
        dirs = [self._default_dir]
        if group_id in self._group_dirs:
            dirs.insert(0, self._group_dirs[group_id])
        found: set[str] = set()
        for d in dirs:
            for path in d.rglob("*.j2"):
                rel = path.relative_to(d).as_posix()
                # a group's workorder/ folder holds work orders (WorkOrders), not mail
                if not path.name.startswith("_") and not rel.startswith("workorder/"):
                    found.add(rel.removesuffix(".j2").rsplit(".", 1)[0])
        return sorted(found)

    def check(self, context: dict[str, Any]) -> list[str]:
        """Render every template of every set with `context`; the errors, by set and name."""
        errors: list[str] = []
        for gid in [None, *self._group_dirs]:
            where = "default templates" if gid is None else str(self._group_dirs[gid])
            for name in self.names(gid):
                try:
                    self.render(name, context, gid)
                except TemplateError as exc:
                    errors.append(f"{where}: {exc}")
        return errors


    def render(self, template: str, context: dict[str, Any],
               group_id: int | None = None) -> Rendered:
        env = self._groups.get(group_id, self._default) if group_id else self._default
        context = {**spec_macros(context), **context}
        try:
            text_tpl = env.get_template(f"{template}.txt.j2")
            module = text_tpl.make_module(context)
            subject = " ".join(str(getattr(module, "subject", "")).split())
            text = str(module).strip() + "\n"
            html: str | None = None
            own = self._group_dirs.get(group_id) if group_id else None
            # The two alternatives must say the same: a group's own text version goes out
            # alone unless the group also wrote the HTML one.
            if own is None or not Path(text_tpl.filename or "").is_relative_to(own) or (
                    own / f"{template}.html.j2").exists():
                try:
                    html = env.get_template(f"{template}.html.j2").render(context)
                except jinja2.TemplateNotFound:
                    html = None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no template {exc.name}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or template}, line {exc.lineno}: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{template}: {exc}") from exc
        if not subject:
            raise TemplateError(f"{template}.txt.j2 sets no subject")
        return Rendered(subject=subject, text=text, html=html)


class Pages:
    """The web part's HTML pages (autoescaped, StrictUndefined)."""

    def __init__(self, directory: Path = WEB_DIR) -> None:
        self._env = _environment([directory])

    def render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self._env.get_template(f"{name}.html.j2").render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"web/{name}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class WorkOrderPage:
    html: str
    template: str  # the file it came from
    base_url: str  # its folder: a custom template may use a logo beside it


class WorkOrders:
    """Work-order HTML (for the PDF step): `workorder/<ticket type>.html.j2`, else
    `workorder/default.html.j2`; a group's template folder over the built-in one, as for mail.
    A type's file may be named as the type is or as its slug ("Technical incident" →
    `technical_incident.html.j2`); a type's own file beats a group's default."""

    def __init__(self, default_dir: Path = WORKORDER_DIR,
                 group_dirs: dict[int, Path] | None = None) -> None:
        self._dirs: dict[int | None, list[Path]] = {None: [default_dir]}
        for gid, d in (group_dirs or {}).items():
            self._dirs[gid] = [d / "workorder", default_dir]
        self._envs = {gid: _environment(dirs) for gid, dirs in self._dirs.items()}

    @staticmethod
    def candidates(type_name: str | None) -> list[str]:
        """The file names tried for a ticket type, in order."""
        names: list[str] = []
        name = (type_name or "").strip()
        if name and not any(c in name for c in "/\\") and not name.startswith((".", "_")):
            names.append(f"{name}.html.j2")
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        if slug:
            names.append(f"{slug}.html.j2")
        return [*dict.fromkeys(names), "default.html.j2"]

    def render(self, context: dict[str, Any], group_id: int | None = None) -> WorkOrderPage:
        """The work order of `context` (a `service.workorders` context), in its type's look."""
        env = self._envs.get(group_id, self._envs[None])
        type_name = (context.get("ticket") or {}).get("type")
        try:
            tpl = env.select_template(self.candidates(type_name))
            return self._page(tpl, {**spec_macros(context), **context})
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or 'workorder'}, line {exc.lineno}: "
                                f"{exc}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"workorder ({type_name or 'default'}): {exc}") from exc

    def check(self, context: dict[str, Any]) -> list[str]:
        """Render every work-order template of every set with `context`; the errors."""
        errors: list[str] = []
        for gid, dirs in self._dirs.items():
            names = sorted({p.name for d in dirs if d.is_dir() for p in d.glob("*.html.j2")
                            if not p.name.startswith("_")})
            for name in names:
                try:
                    tpl = self._envs[gid].get_template(name)
                    self._page(tpl, {**spec_macros(context), **context})
                except jinja2.TemplateError as exc:
                    errors.append(f"{dirs[0]}: workorder/{name}: {exc}")
        return errors

    @staticmethod
    def _page(tpl: jinja2.Template, context: dict[str, Any]) -> WorkOrderPage:
        source = Path(tpl.filename or "")
        return WorkOrderPage(html=tpl.render(context), template=str(source),
                             base_url=str(source.parent))
