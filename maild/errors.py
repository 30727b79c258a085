"""The exception tree. Expected outcomes are values; these are for what should not happen.

    MaildError
    ├── ConfigError              a config file or value is wrong (names the key)
    ├── ParseError               a mail cannot be turned into a Parsed (quarantine it)
    │   └── LimitExceeded        a sender-controlled size/count cap was passed
    ├── StoreError               the database failed
    │   └── TransientStoreError  worth retrying (locked, connection lost); SMTP answers 451
    ├── NotFound                 a ticket, journal row or user asked for does not exist
    ├── DeliveryError            sending a mail failed
    │   └── TransientDeliveryError   retry with backoff
    └── TemplateError            a mail template is missing or does not render
"""

from __future__ import annotations


class MaildError(Exception):
    """Base of every error maild raises on purpose."""


class ConfigError(MaildError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class ParseError(MaildError):
    pass


class LimitExceeded(ParseError):
    pass


class StoreError(MaildError):
    pass


class TransientStoreError(StoreError):
    pass


class NotFound(MaildError):
    pass


class DeliveryError(MaildError):
    pass


class TransientDeliveryError(DeliveryError):
    pass


class TemplateError(MaildError):
    pass
