"""From alert events to messages in the outbox: who is told, in which language, with which
buttons.

For each ``alert`` event the policy writes with ``notify`` set, every carer who looks after
the device's person gets one message, rendered from the catalogue in the carer's language,
with signed links to the local control endpoint ("Block now", "It's fine: allow for 2 h").
The message is written to the outbox (SQLite, write-ahead) before anything is sent; the
delivery worker (``netwatch alert deliver``) sends it, retries, merges updates. During the
household's quiet hours, ``info`` alerts (expected help) are not sent; warnings and critical
alerts always are.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from . import messages
from .actions import links_for_alert, load_or_create_secret
from .outbox import Outbox

LINK_TTL_S = 24 * 3600.0


class Notifier:
    """Turns alert events into outbox rows for the household's carers."""

    def __init__(self, household: Any, state_dir: str | Path, control_url: str | None = None,
                 outbox: Outbox | None = None):
        self.h = household
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = outbox or Outbox(self.state_dir)
        self.control_url = control_url.rstrip("/") if control_url else None
        self.secret = load_or_create_secret(self.state_dir) if control_url else b""
        self.queued = 0
        self.held_quiet = 0

    def handle(self, event: dict[str, Any]) -> list[int]:
        """Queue the messages one alert event causes; returns the outbox row ids."""
        alert = event["alert"]
        if not alert.get("notify", True):
            return []
        if alert["level"] == "info" and self.h.is_quiet(
                datetime.fromisoformat(event["timestamp"])):
            # Quiet hours: expected help is not worth waking anyone for; it stays in the
            # event log. Warnings and critical alerts are always sent.
            self.held_quiet += 1
            return []
        device = self.h.device_for(event["src_ip"]) if event.get("src_ip") else None
        person = self.h.person_of(device) if device is not None else None
        now = messages.event_time(event)
        rows: list[int] = []
        for carer in self.h.carers_for(person):
            if not carer.notify:
                continue
            links: list[tuple[str, str]] = []
            if self.control_url and alert.get("actions"):
                links = links_for_alert(self.secret, self.control_url, alert, carer.name, now,
                                        LINK_TTL_S, lang=carer.language)
            msg = messages.render(event, carer.name, carer.language, self.h.tz,
                                  person.country if person else None, links)
            rows += self.outbox.enqueue(msg, carer.notify)
        self.queued += len(rows)
        return rows
