"""What the service's feature modules (opening, replying, commanding, closing, automation,
survey, work orders) work with: the lower layer, bundled. They receive a `Kit`, never the
`Desk`, so the desk is the only module that imports them and nothing imports it back."""

from __future__ import annotations

from dataclasses import dataclass

from maild.clock import Clock
from maild.service.notifying import Notifier
from maild.service.people import People
from maild.service.sla import SlaKeeper
from maild.service.values import DeskConfig
from maild.service.writer import TicketWriter
from store.directory import Directory


@dataclass(frozen=True, kw_only=True)
class Kit:
    clock: Clock
    config: DeskConfig
    directory: Directory
    people: People  # who is who, and what they may do
    notifier: Notifier  # outbox rows and their contexts
    writer: TicketWriter  # ticket, workunit and thread rows
    sla: SlaKeeper  # deadlines and breaches
