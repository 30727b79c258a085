"""A sample notification context with every variable the templates may use, so that
`maild check-config` can render each template of each group and name what breaks."""

from __future__ import annotations

from typing import Any

SAMPLE: dict[str, Any] = {
    "site": {"name": "Example Support", "url": "https://support.example.com"},
    "recipient": {"name": "Ramón", "email": "ramon@example.com"},
    "ticket": {
        "id": 42, "title": "Terminal 3 does not boot", "status": "assigned",
        "priority": "high", "group": "Support", "owner": "javi", "owner_name": "Javi",
        "owner_company": "Example", "creator": "carla@acme.example", "creator_name": "Carla",
        "creator_company": "Acme", "description": "Terminal 3 shows a blank screen.",
        "created_at": "2026-11-02T09:00:00+00:00", "updated_at": "2026-11-02T11:30:00+00:00",
        "resolution": "solved", "id_group": 1, "id_priority": 4, "id_status": 3,
        "type": "Hardware", "time_used": 1.5, "closed_by": "javi",
        "epilogue": "The power supply was replaced.", "custom": {"Serial": "T3-0042"},
        "satisfaction": "good",
    },
    "wu_text": "We ordered a replacement power supply.", "wu_user": "Javi",
    "changes": [{"field": "status", "old": "new", "new": "assigned"}],
    "closed": False, "epilogue": None,
    "sla": {"name": "standard", "metric": "response", "limit": 4.0,
            "since": "2026-11-02T13:00:00+00:00", "type": "normal"},
    "result": {"ok": False, "reason": None, "workunit_id": 7, "kept_internal": True,
               "mail_subject": "Re: [#42] Terminal 3", "opening": False,
               "lines": [{"line": "#status assigned", "applied": True,
                          "message": "status: new → assigned"},
                         {"line": "#stauts x", "applied": False,
                          "message": "unknown command #stauts, did you mean #status?"}]},
    "help": {"commands": [{"name": "status", "args": "STATUS", "text": "change the status"}],
             "next": ["pending_close"], "status": "assigned", "owner": "javi",
             "you_own": True},
    "mail_subject": "Terminal 3", "reason": "the reply address is not valid",
    "rule": "Urgent to Javi", "event": "create",
    "workorder": {"created": "2026-11-02 10:00", "updated": "2026-11-02 12:30",
                  "printed": "2026-11-03 09:00", "timezone": "Europe/Madrid",
                  "workunits": [{"id": 7, "date": "2026-11-02 12:30", "author": "javi",
                                 "time_used": 1.5, "text": "Replaced the power supply."}],
                  "listed_time": 1.5},
    "group": "Support", "limit_warning": "you have 2 open tickets in Support (the limit is 2)",
    "survey": {"url": "https://support.example.com/rate/TOKEN", "days": 14,
               "until": "2026-11-16", "ticket_id": 42, "user_id": 3, "last_day": 20408},
}
