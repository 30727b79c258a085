"""Workflow webhooks: a JSON POST, sent from the outbox like a mail (retried, never lost).

The standard library's HTTP client, in a worker thread: one short request at a time per
outbox row. 5xx, timeouts and refused connections are retried; other 4xx are given up.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from maild.errors import DeliveryError, TransientDeliveryError


def post_json(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> int:
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": "maild-webhook"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise TransientDeliveryError(f"webhook {url}: HTTP {exc.code}") from None
        raise DeliveryError(f"webhook {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise TransientDeliveryError(f"webhook {url}: {exc}") from None
