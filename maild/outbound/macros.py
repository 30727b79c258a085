"""The spec's template macros, by their names, made from a notification's context (pure).

Templates may use either the structured context (`ticket.title`) or the spec's flat names
(`incident_title`); custom fields are there by their own names when those are identifiers,
and always as `custom["Hardware type"]`.
"""

from __future__ import annotations

from typing import Any

MACROS = ("sitename", "incident_title", "username", "fullname", "incident_id", "url",
          "creation_timestamp", "update_timestamp", "owner", "group", "author", "type_tickets",
          "priority", "status", "resolution", "time_used", "incident_main_text",
          "creatorcompany", "ownercompany", "id_group", "id_priority", "id_status",
          "incident_closed_by", "wu_user", "wu_text", "ticket_satisfaction", "epilog")


def spec_macros(ctx: dict[str, Any]) -> dict[str, Any]:
    site = ctx.get("site") or {}
    t = ctx.get("ticket")
    who = ctx.get("recipient") or {}
    out: dict[str, Any] = {"sitename": site.get("name", ""),
                           "username": who.get("email") or "", "fullname": who.get("name") or "",
                           "wu_user": ctx.get("wu_user", ""), "wu_text": ctx.get("wu_text", "")}
    if not t:
        return out
    out.update(
        incident_title=t["title"], incident_id=t["id"],
        url=f"{site.get('url', '')}/tickets/{t['id']}",
        creation_timestamp=t["created_at"], update_timestamp=t["updated_at"],
        owner=t.get("owner") or "", group=t.get("group") or "",
        author=t.get("creator") or "", type_tickets=t.get("type") or "",
        priority=t["priority"], status=t["status"], resolution=t.get("resolution") or "",
        time_used=t.get("time_used", 0.0), incident_main_text=t.get("description", ""),
        creatorcompany=t.get("creator_company") or "", ownercompany=t.get("owner_company") or "",
        id_group=t.get("id_group", 0), id_priority=t.get("id_priority", 0),
        id_status=t.get("id_status", 0), incident_closed_by=t.get("closed_by") or "",
        ticket_satisfaction=t.get("satisfaction") or "",
        epilog=ctx.get("epilogue") or t.get("epilogue") or "",
        custom=t.get("custom") or {})
    for name, value in (t.get("custom") or {}).items():
        if name.isidentifier() and name not in out:
            out[name] = value
    return out
