"""Inbound: from SMTP/LMTP/IMAP bytes to a committed journal row, then to ticket changes."""
