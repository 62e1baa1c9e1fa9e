"""The report outbox and the health POST: Ready or ProvisioningFailed, delivered once.

A per-instance marker in the state directory holds the outcome decided for
the instance (``ready`` or ``failed``, with the encoded failure report) and
whether the wireserver has taken it. It is written *pending* before the POST
and *delivered* only after it, so an outcome that could not be delivered is
found and sent on the next boot, and never sent twice. A file in /run notes
that this boot already tried, so a later stage of the same boot does not
retry what init-local just gave up on.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cloudinit_azure import atomic

if TYPE_CHECKING:
    from cloudinit_azure.flowstate import Platform
    from cloudinit_azure.wireserver import WireserverClient

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the outbox holds for one instance."""

    state: str  # "ready" or "failed"
    delivered: bool
    description: Optional[str] = None  # the encoded failure report


def _safe(instance_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in instance_id)[:80]


class Outbox:
    """Outcome markers per instance: ``state_dir`` (persistent), ``run_dir`` (this boot)."""

    def __init__(self, state_dir: str, run_dir: str) -> None:
        self.state_dir = Path(state_dir)
        self.run_dir = Path(run_dir)

    def _marker(self, instance_id: str) -> Path:
        return self.state_dir / f"health-{_safe(instance_id)}.json"

    def get(self, instance_id: str) -> Optional[Outcome]:
        try:
            data = json.loads(self._marker(instance_id).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("state") not in ("ready", "failed"):
            return None
        # Markers of earlier plug-in versions carry no flag: they were sent.
        return Outcome(data["state"], bool(data.get("delivered", True)),
                       data.get("description"))

    def put(self, instance_id: str, outcome: Outcome) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        if not outcome.delivered:
            # Before the POST: what the report promises (the account, keys, host
            # keys) must survive a power cut, and so must the pending outcome.
            atomic.sync_filesystem(self.state_dir)
        atomic.write_file(self._marker(instance_id), json.dumps(
            {"state": outcome.state, "delivered": outcome.delivered,
             "description": outcome.description}), mode=0o600)
        try:
            os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
            (self.run_dir / f"attempted-{_safe(instance_id)}").touch()
        except OSError as exc:
            LOG.debug("could not note this boot's report attempt: %s", exc)

    def write_back(self) -> None:
        """Sync the outbox's file system now, so the sync before a report has less to write.

        A pool VM, while it waits: the host keys and groups it made, its logs.
        Best effort (the sync before the report is the one that counts).
        """
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        except OSError:
            return
        atomic.sync_filesystem(self.state_dir)

    def attempted(self, instance_id: str) -> bool:
        return (self.run_dir / f"attempted-{_safe(instance_id)}").exists()


def send(wireserver: str, description: Optional[str], budget_s: float,
         client: Optional[WireserverClient] = None) -> None:
    """Ready (``description`` None) or ProvisioningFailed; raises ProvisioningError."""
    from cloudinit_azure.wireserver import WireserverClient, wireserver_url

    client = client or WireserverClient(wireserver_url(wireserver), budget_s=budget_s)
    goal_state = client.goal_state()
    if description is None:
        client.report_ready(goal_state)
    else:
        client.report_failure(goal_state, description)


def deliver(platform: Platform, wireserver: str, key: str, outcome: Outcome,
            budget_s: float) -> str:
    """Send a pending outcome; mark it delivered only once the wireserver took it."""
    try:
        platform.report_health(wireserver, outcome.description, budget_s)
    except Exception as exc:  # any failure: the report stays pending, never lost
        LOG.error("%s report not delivered (pending for the next boot): %s",
                  outcome.state, exc)
        return "pending"
    platform.remember(key, replace(outcome, delivered=True))
    LOG.info("reported %s to the wireserver at %s",
             "Ready" if outcome.state == "ready" else "ProvisioningFailed", wireserver)
    return "delivered"
