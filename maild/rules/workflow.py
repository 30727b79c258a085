"""Workflow rules: conditions on a ticket and the actions they trigger (pure matching).

Rules are evaluated in their order on creation and on update; the service applies a matching
rule's actions and then looks at the next rule with the ticket as it now is. Each rule fires
at most once per change, so rules cannot loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

EVENTS = ("create", "update")


@dataclass(frozen=True, kw_only=True)
class When:
    group: str | None = None
    type: str | None = None
    priority: str | None = None
    status: str | None = None
    sender_domain: str | None = None
    subject: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Then:
    owner: str | None = None  # a staff login
    priority: str | None = None
    status: str | None = None
    group: str | None = None
    cc: tuple[str, ...] = ()
    mail_to: tuple[str, ...] = ()
    mail_template: str = "workflow/notice"
    webhook: str | None = None  # POST the ticket as JSON here


@dataclass(frozen=True, kw_only=True)
class Rule:
    name: str
    on: frozenset[str] = frozenset(EVENTS)
    when: When = field(default_factory=When)
    then: Then = field(default_factory=Then)


@dataclass(frozen=True, kw_only=True)
class Seen:
    """The ticket and the change as a rule sees them."""

    event: str
    group: str
    type: str | None
    priority: str
    status: str
    sender: str  # the address whose mail made the change ("" for none)
    subject: str
    body: str
    custom: Mapping[str, str] = field(default_factory=dict)


def matches(rule: Rule, seen: Seen) -> bool:
    w = rule.when
    if seen.event not in rule.on:
        return False
    if w.group is not None and w.group.lower() != seen.group.lower():
        return False
    if w.type is not None and w.type.lower() != (seen.type or "").lower():
        return False
    if w.priority is not None and w.priority.lower() != seen.priority.lower():
        return False
    if w.status is not None and w.status.lower() != seen.status.lower():
        return False
    if w.sender_domain is not None:
        domain = seen.sender.rpartition("@")[2].lower()
        want = w.sender_domain.lower()
        if not (domain == want or domain.endswith("." + want)):
            return False
    if w.subject is not None and not w.subject.search(seen.subject):
        return False
    if w.body is not None and not w.body.search(seen.body):
        return False
    return all(str(seen.custom.get(k, "")).lower() == v.lower() for k, v in w.fields.items())
