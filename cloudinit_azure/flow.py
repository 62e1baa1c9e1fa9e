"""One provisioning flow for init-local: media, DHCP, IMDS, certificates, plan, apply, report.

Pure orchestration: every effect goes through two seams the adapter passes in,
:class:`Platform` (media, DHCP, IMDS, wireserver, KVP, the report outbox) and
:class:`Machine` (the account, sshd, key pairs, host keys, host name). The
rules kept here:

- ProvisioningFailed as soon as a failure is known, its reason naming the step;
  never Ready after a failure, never a second outcome for one instance;
- an outcome is written to the outbox as *pending* before it is sent and marked
  *delivered* only after the wireserver took it; a pending one goes out on the
  next boot (:func:`deferred.deliver_pending`), exactly once;
- no half-created user after a failed account step; a pool VM's customer gets
  the account's and the host's steps side by side, any other VM one after the
  other (:mod:`apply`), Ready only after all of them;
- where init-local cannot safely create the account (:mod:`early`), Ready is
  deferred to the ``azure_ready`` module (:mod:`deferred`).

Each step is its own function so that preprovisioning can slot a wait between
the pool's Ready and the customer's provisioning.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable, Optional

from cloudinit_azure import apply, identity, keypairs, pps, provision, waagent
from cloudinit_azure.flowstate import (
    FlowConfig,
    FlowState,
    Link,
    Machine,
    Media,
    Phase,
    Platform,
)
from cloudinit_azure.health import Outcome, deliver
from cloudinit_azure.imds import InstanceMetadata
from cloudinit_azure.ovf import OvfEnvironment, parse_ovf, redact_ovf
from cloudinit_azure.report import (
    DhcpError,
    ImdsError,
    ImdsParseError,
    ProvisioningError,
    Report,
    UnexpectedError,
)
from cloudinit_azure.wireserver import DEFAULT_WIRESERVER, MAX_DESCRIPTION, wireserver_address

if TYPE_CHECKING:  # cryptography costs ~0.1 s to import: only for certificates
    from cloudinit_azure.certificates import CertificateKeys

LOG = logging.getLogger(__name__)
MAX_DIAGNOSTICS = 16  # KVP records per flow run: one per phase, bounded


# --- the run --------------------------------------------------------------------

class Run:
    """One flow run: the seams, the phases so far, and the report discipline."""

    def __init__(self, platform: Platform, machine: Machine, config: FlowConfig,
                 instance_id: Optional[str], *,
                 clock: Callable[[], float] = time.monotonic,
                 together: apply.Together = apply.in_threads) -> None:
        self.platform = platform
        self.machine = machine
        self.config = config
        self.clock = clock
        self.together = together  # runs the independent steps of apply_plan side by side
        self.phases: list[Phase] = []
        self.state = FlowState(instance_id=instance_id,
                               wireserver=config.wireserver or DEFAULT_WIRESERVER)
        self.vm_id: Optional[str] = None

    def phase(self, name: str, outcome: str, started: float, detail: str = "", *,
              seconds: Optional[float] = None) -> None:
        """Record one phase and write its KVP diagnostic (bounded in count and size)."""
        took = self.clock() - started if seconds is None else seconds
        item = Phase(name, outcome, round(took, 3), detail[:200])
        self.phases.append(item)
        if len(self.phases) <= MAX_DIAGNOSTICS:
            text = f"{name}: {outcome} in {item.seconds:.3f} s"
            self.platform.kvp(name, f"{text} ({item.detail})" if item.detail else text)

    def update(self, **changes: Any) -> FlowState:
        self.state = dataclasses.replace(self.state, phases=tuple(self.phases), **changes)
        return self.state

    def fail(self, error: ProvisioningError, *, online: bool = True) -> FlowState:
        """ProvisioningFailed to KVP and (when online) the wireserver; pending until sent."""
        started = self.clock()
        report = Report.from_error(error, vm_id=self.vm_id)
        LOG.error("provisioning failed: %s", report.encode())
        key = self.state.instance_id or "unknown"
        if self.platform.outcome(key) is not None:
            # Never a second outcome for one instance (e.g. a re-run after Ready).
            self.phase("report", "skipped", started, f"{error.reason}; already reported")
            return self.update(failure=error.reason)
        self.platform.kvp("PROVISIONING_REPORT", report.encode())
        pending = Outcome("failed", False, report.encode(max_len=MAX_DESCRIPTION))
        self.platform.remember(key, pending)
        self.platform.hand_off(waagent.after_failure())
        result = "pending (no network)"
        if online:
            result = deliver(self.platform, self.state.wireserver, key, pending,
                              self.config.failure_budget_s)
        self.phase("report", "failed", started, f"{error.reason}; {result}")
        return self.update(failure=error.reason)

    def ready(self) -> str:
        """Ready to KVP and the wireserver; pending until the wireserver took it."""
        key = self.state.instance_id or "unknown"
        self.platform.kvp("PROVISIONING_REPORT", Report.success(vm_id=self.vm_id).encode())
        self.platform.remember(key, Outcome("ready", False))
        if self.state.instance_id:
            self.platform.hand_off(waagent.after_ready(self.state.instance_id))
        return deliver(self.platform, self.state.wireserver, key, Outcome("ready", False),
                        self.config.ready_budget_s)


def _unexpected(exc: Exception, where: str) -> ProvisioningError:
    """A bug of ours must still end in a report."""
    LOG.exception("unexpected error in %s", where)
    return UnexpectedError(where=where, exception=type(exc).__name__,
                           detail=str(exc)[:160])


def run(platform: Platform, machine: Machine, config: FlowConfig, *,
        system_uuid: str, previous_instance_id: Optional[str] = None,
        settings_error: Optional[ProvisioningError] = None,
        clock: Callable[[], float] = time.monotonic,
        together: apply.Together = apply.in_threads) -> FlowState:
    """Provision this boot's instance and report how it ended; never raises."""
    iid = (identity.instance_id(system_uuid, previous_instance_id)
           if identity.is_uuid(system_uuid) else None)
    flow = Run(platform, machine, config, iid, clock=clock, together=together)
    prior = platform.outcome(iid) if iid else None
    if prior is not None and prior.state == "failed":
        return redeliver_failure(flow, prior)
    media: Optional[Media] = None
    ovf: Optional[OvfEnvironment] = None
    pending = settings_error
    if pending is None:
        try:
            media, ovf = step_media(flow)
        except ProvisioningError as exc:
            pending = exc
        except Exception as exc:
            pending = _unexpected(exc, "media")
    try:
        with network(flow) as link:
            flow.update(link=link, wireserver=choose_wireserver(config.wireserver, link))
            if pending is not None:
                return flow.fail(pending)
            try:
                return provision_instance(flow, media, ovf, previous_instance_id,
                                          system_uuid, prior)
            except ProvisioningError as exc:
                return flow.fail(exc)
            except Exception as exc:
                return flow.fail(_unexpected(exc, "provisioning"))
    except DhcpError as exc:
        return flow.fail(pending or exc, online=False)


def choose_wireserver(configured: Optional[str], link: Optional[Link]) -> str:
    """Configuration, then DHCP option 245, then the well-known address."""
    return wireserver_address([configured, link.option_245 if link else None])


def redeliver_failure(flow: Run, prior: Outcome) -> FlowState:
    """A failure was decided for this instance on an earlier boot: never provision again."""
    started = flow.clock()
    if prior.delivered:
        LOG.info("provisioning of %s already failed and was reported: nothing to do",
                 flow.state.instance_id)
        flow.phase("report", "skipped", started, "failure already delivered")
        return flow.update(failure="already reported")
    try:
        with network(flow) as link:
            flow.update(link=link, wireserver=choose_wireserver(flow.config.wireserver, link))
            result = deliver(flow.platform, flow.state.wireserver,
                             flow.state.instance_id or "unknown", prior,
                             flow.config.failure_budget_s)
    except DhcpError as exc:
        result = f"pending ({exc.reason})"
    flow.phase("report", "failed", started, f"earlier failure {result}")
    return flow.update(failure="reported on an earlier boot")


def network(flow: Run) -> AbstractContextManager[Link]:
    """The ephemeral DHCP lease, timed as the ``dhcp`` phase."""
    return _Timed(flow, "dhcp", flow.platform.network())


class _Timed(AbstractContextManager):
    def __init__(self, flow: Run, name: str, inner: AbstractContextManager[Link]) -> None:
        self.flow, self.name, self.inner = flow, name, inner

    def __enter__(self) -> Link:
        started = self.flow.clock()
        try:
            link = self.inner.__enter__()
        except DhcpError as exc:
            self.flow.phase(self.name, "failed", started, exc.reason)
            raise
        except Exception as exc:  # no lease, whatever the cause: offline failure report
            self.flow.phase(self.name, "failed", started, type(exc).__name__)
            raise DhcpError(exception=type(exc).__name__, detail=str(exc)[:160]) from exc
        self.flow.phase(self.name, "ok", started, f"option 245: {link.option_245 or 'none'}")
        return link

    def __exit__(self, *exc: Any) -> Optional[bool]:
        return self.inner.__exit__(*exc)


# --- steps ----------------------------------------------------------------------

def step_media(flow: Run) -> tuple[Optional[Media], Optional[OvfEnvironment]]:
    """Find and parse ovf-env.xml; keep the redacted copy the Azure Linux Agent waits for."""
    started = flow.clock()
    try:
        media = flow.platform.read_media()
        if media is None:
            LOG.info("no provisioning media (seed, DVD, cached copy): IMDS only")
            flow.phase("media", "skipped", started, "no media: IMDS only")
            return None, None
        ovf = parse_ovf(media.data)
        if media.kind != "cache":
            flow.platform.cache_ovf(redact_ovf(media.data))
            flow.platform.hand_off(waagent.on_copy(ovf.provision_guest_agent))
    except ProvisioningError as exc:
        flow.phase("media", "failed", started, exc.reason)
        raise
    flow.update(media_kind=media.kind, media_device=media.path)
    flow.phase("media", "ok", started, f"{media.kind} {media.path}")
    return media, ovf


def step_imds(flow: Run, ovf: Optional[OvfEnvironment]) -> Optional[InstanceMetadata]:
    """IMDS; a hard failure with a complete OVF provisions from the OVF alone."""
    started = flow.clock()
    try:
        imds = flow.platform.instance_metadata()
    except ImdsParseError as exc:
        flow.phase("imds", "failed", started, exc.reason)
        raise
    except ImdsError as exc:
        if ovf is None:
            flow.phase("imds", "failed", started, str(exc))
            raise
        LOG.warning("IMDS failed (%s): provisioning from ovf-env.xml with the fallback "
                    "network configuration", exc)
        flow.phase("imds", "fallback", started, str(exc))
        flow.update(imds_problem=str(exc))
        return None
    flow.vm_id = imds.vm_id
    flow.update(imds_network=(imds.raw or {}).get("network"))
    flow.phase("imds", "ok", started, f"vm {imds.vm_id}")
    return imds


def step_certificates(flow: Run, ovf: Optional[OvfEnvironment],
                      imds: Optional[InstanceMetadata]) -> Optional[CertificateKeys]:
    """Goal state and certificates, only for keys given by fingerprint and key pairs."""
    started = flow.clock()
    wanted = provision.fingerprints_needed(ovf, imds)
    if not wanted:
        flow.phase("certificates", "skipped", started, "no fingerprints")
        return None
    try:
        keys = flow.platform.certificate_keys(flow.state.wireserver,
                                              private=bool(ovf and ovf.key_pairs))
    except ProvisioningError as exc:
        flow.phase("certificates", "failed", started, exc.reason)
        raise
    flow.phase("certificates", "ok", started, f"{len(keys.public_keys)} certificates")
    return keys


def step_plan(flow: Run, ovf: Optional[OvfEnvironment], imds: Optional[InstanceMetadata],
              keys: Optional[CertificateKeys], system_uuid: str, previous: Optional[str],
              ) -> tuple[provision.Provisioning, list[keypairs.KeyPairFile]]:
    """Decide the instance (pure) and where each key pair goes (inside the user's home)."""
    plan = provision.plan(ovf, imds, system_uuid=system_uuid, previous_instance_id=previous,
                          cert_keys=dict(keys.public_keys) if keys else {},
                          existing_users=flow.machine.existing_users(),
                          runner=flow.machine.runner,
                          sudo=flow.config.sudo)
    home = flow.machine.home_dir(plan.username)
    files = [keypairs.key_pair_file(fingerprint, path, home, keys)
             for fingerprint, path in plan.key_pairs]
    flow.update(provisioning=plan, instance_id=flow.state.instance_id or plan.instance_id)
    return plan, files


def step_ready(flow: Run, prior: Optional[Outcome]) -> FlowState:
    """Ready, once per instance."""
    started = flow.clock()
    if prior is not None:
        flow.phase("ready", "skipped", started, "already reported for this instance")
        return flow.update()
    result = flow.ready()
    flow.phase("ready", "ok" if result == "delivered" else "failed", started, result)
    return flow.update()


def provision_instance(flow: Run, media: Optional[Media], ovf: Optional[OvfEnvironment],
                       previous: Optional[str], system_uuid: str,
                       prior: Optional[Outcome]) -> FlowState:
    imds = step_imds(flow, ovf)
    pool = pps.pool_of(ovf, imds, lambda: flow.platform.pool_marker())
    iid = flow.state.instance_id
    premade: list[str] = []  # the instance whose host keys the pool's wait made
    if pool is not None:  # preprovisioned: the pool's Ready, the wait, the customer's documents
        def host_keys() -> None:  # the customer's host keys do not depend on the customer
            if iid is not None:
                flow.update(host_keys=flow.machine.generate_host_keys(
                    previous != iid and prior is None))
                premade.append(iid)

        def prepare() -> None:  # what is the same for every customer, done while waiting
            for what, action in (("account", flow.machine.prepare_account),
                                 ("host keys", host_keys),
                                 ("disk", flow.platform.write_back)):
                try:
                    action()
                except Exception as exc:  # done again after the assignment
                    LOG.info("could not prepare the %s while waiting (%s)", what, exc)
        ovf, imds = pps.step_pool(flow, pool, lambda customer: step_imds(flow, customer),
                                  prepare=prepare)
    keys = step_certificates(flow, ovf, imds)
    started = flow.clock()
    try:
        plan, files = step_plan(flow, ovf, imds, keys, system_uuid, previous)
    except ProvisioningError as exc:
        flow.phase("plan", "failed", started, exc.reason)
        raise
    flow.phase("plan", "ok", started, plan.instance_id)
    # An outcome in our outbox means this instance was provisioned here before,
    # even if a power cut lost cloud-init's instance-id file: keep its host keys.
    if not apply.apply_plan(flow, plan, files, new_instance=previous != plan.instance_id
                            and prior is None and plan.instance_id not in premade,
                            side_by_side=pool is not None):
        return flow.update()
    state = step_ready(flow, prior)
    if flow.config.eject_media and media is not None and media.kind == "device":
        flow.platform.eject(media.path)
    return state
