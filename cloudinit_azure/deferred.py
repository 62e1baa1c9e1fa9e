"""After init-local: the fallback path's Ready, and reports an earlier boot left pending.

Run by the ``azure_ready`` module in the init stage of every boot. On the
fallback path (init-local could not create the account, :mod:`early`) it
finishes what the flow left: sshd's password setting and the key pairs, once
cloud-init's own modules made the user, then Ready. On any boot it delivers
an outcome that an earlier boot decided but could not deliver, exactly once.
"""

from __future__ import annotations

from typing import Optional

from cloudinit_azure import keypairs
from cloudinit_azure.flow import Run
from cloudinit_azure.flowstate import (
    READY_FROM_MODULE,
    ApplyError,
    FlowConfig,
    FlowState,
    Machine,
    Platform,
)
from cloudinit_azure.health import deliver


def finish_deferred(state: FlowState, platform: Platform, machine: Machine,
                    config: FlowConfig) -> Optional[str]:
    """The fallback path: key pairs and sshd after cloud-init's user modules, then Ready."""
    plan = state.provisioning
    if plan is None or state.instance_id is None:
        return None
    if platform.outcome(state.instance_id) is not None:
        return deliver_pending(state, platform, config)
    flow = Run(platform, machine, config, state.instance_id)
    flow.vm_id = plan.vm_id
    flow.update(wireserver=state.wireserver)
    started = flow.clock()
    step = "password authentication"
    try:
        pwauth = plan.config.get("ssh_pwauth")
        if pwauth is not None:
            machine.set_password_auth(bool(pwauth))
        step = "key pairs"
        machine.install_key_pairs(plan.username, [
            keypairs.KeyPairFile(fp, path) for fp, path in state.key_pairs])
    except Exception as exc:
        flow.fail(ApplyError(step=step, exc=exc))
        return "failed"
    result = flow.ready()
    flow.phase("ready", "ok" if result == "delivered" else "failed", started,
               f"{result} from azure_ready")
    if config.eject_media and state.media_kind == "device" and state.media_device:
        platform.eject(state.media_device)
    return result


def deliver_pending(state: FlowState, platform: Platform,
                    config: FlowConfig) -> Optional[str]:
    """An outcome of an earlier boot that never reached the wireserver: send it once."""
    iid = state.instance_id
    prior = platform.outcome(iid) if iid else None
    if iid is None or prior is None or prior.delivered or platform.attempted_this_boot(iid):
        return None
    budget = config.ready_budget_s if prior.state == "ready" else config.failure_budget_s
    return deliver(platform, state.wireserver, iid, prior, budget)



def after_init_local(state: FlowState, platform: Platform, machine: Machine,
                     config: FlowConfig) -> Optional[str]:
    """What ``azure_ready`` does on every boot: the fallback's Ready, or a pending report."""
    if state.ready_from == READY_FROM_MODULE:
        return finish_deferred(state, platform, machine, config)
    return deliver_pending(state, platform, config)
