"""Tell the platform how provisioning ended: Ready, or ProvisioningFailed.

The edge between the typed errors and the two channels Azure reads: the
wireserver health report and the Hyper-V KVP pool. A per-instance marker
makes each outcome go out once: never Ready after a failure, never twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from cloudinit_azure import kvp
from cloudinit_azure.report import ProvisioningError, Report
from cloudinit_azure.wireserver import MAX_DESCRIPTION, WireserverClient, wireserver_url

LOG = logging.getLogger(__name__)
STATE_DIR = "/var/lib/cloudinit-azure"


def _marker(state_dir: str, instance_id: str) -> Path:
    return Path(state_dir) / f"health-{instance_id}.json"


def reported(state_dir: str, instance_id: str) -> Optional[str]:
    """The outcome already sent for this instance ("ready"/"failed"), if any."""
    try:
        return json.loads(_marker(state_dir, instance_id).read_text()).get("state")
    except (OSError, ValueError):
        return None


def _remember(state_dir: str, instance_id: str, state: str) -> None:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = _marker(state_dir, instance_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": state}))
    os.replace(tmp, path)


class Reporter:
    """Sends one outcome per instance to the wireserver and KVP."""

    def __init__(self, wireserver: str, *, kvp_pool: str = kvp.DEFAULT_POOL,
                 state_dir: str = STATE_DIR, vm_id: Optional[str] = None,
                 budget_s: float = 1200.0,
                 client: Optional[WireserverClient] = None) -> None:
        self.client = client or WireserverClient(wireserver_url(wireserver),
                                                 budget_s=budget_s)
        self.kvp_pool = kvp_pool
        self.state_dir = state_dir
        self.vm_id = vm_id

    def ready(self, instance_id: str) -> bool:
        """Report Ready unless an outcome was already sent; raise on wireserver failure."""
        previous = reported(self.state_dir, instance_id)
        if previous:
            LOG.info("provisioning outcome for %s already reported (%s): not reporting "
                     "Ready again", instance_id, previous)
            return False
        goal_state = self.client.goal_state()
        self.client.report_ready(goal_state)
        _remember(self.state_dir, instance_id, "ready")
        kvp.report_to_kvp(self.kvp_pool, Report.success(vm_id=self.vm_id).encode())
        LOG.info("reported Ready to the wireserver (incarnation %s)",
                 goal_state.incarnation)
        return True

    def failure(self, error: ProvisioningError, instance_id: Optional[str]) -> bool:
        """Report ProvisioningFailed with the encoded report; KVP even when offline."""
        key = instance_id or "unknown"
        if reported(self.state_dir, key):
            LOG.info("provisioning outcome for %s already reported: not reporting the "
                     "failure again", key)
            return False
        text = Report.from_error(error, vm_id=self.vm_id).encode()
        LOG.error("provisioning failed: %s", text)
        kvp.report_to_kvp(self.kvp_pool, text)
        _remember(self.state_dir, key, "failed")
        try:
            goal_state = self.client.goal_state()
            self.client.report_failure(
                goal_state, Report.from_error(error, vm_id=self.vm_id).encode(
                    max_len=MAX_DESCRIPTION))
        except ProvisioningError as exc:
            LOG.error("could not send the failure report to the wireserver: %s", exc)
            return False
        return True
