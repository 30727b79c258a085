"""The one place that changes tickets (see `desk.Desk`); every entry point calls it."""

from maild.service.desk import Desk, DeskConfig, GroupRef, MailIn, Outcome, clean_title

__all__ = ["Desk", "DeskConfig", "GroupRef", "MailIn", "Outcome", "clean_title"]
