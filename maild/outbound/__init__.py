"""Outbound: outbox rows rendered, composed and sent by the delivery worker."""
