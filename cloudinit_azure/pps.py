"""Preprovisioning (PPS): is this VM in a pool, how does it wait, what ends the wait.

A pool VM boots with the pool's placeholder ovf-env.xml. It must report Ready
for the pool, wait until a customer is assigned, fetch the customer's
ovf-env.xml from IMDS ``reprovisiondata`` and provision *that*, never the
placeholder. Pure: :func:`classify` and :func:`plan` decide, :func:`wait_for_customer`
orchestrates the wait over a small seam (:class:`Reuse`: link events, the
lease, the HTTP call, the pool Ready, a marker), :class:`LinkTracker` reads
netlink link messages. No cloud-init import, no I/O of its own.

Types (``PreprovisionedVMType`` in the OVF, ``extended.compute.ppsType`` in
IMDS): ``Running`` waits for the vnet switch (the NIC's carrier goes down and
up), ``Savable`` for its NIC to be unplugged and a new one plugged in,
``PreprovisionedOSDisk`` for the host to shut it down (the customer's boot
is then an ordinary first boot). ``PreprovisionedVm`` true without a known
type, or an unknown type, waits as Running (cloud-init's built-in does the
same): polling reprovisiondata ends every wait, so nothing is provisioned
from the placeholder.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

from cloudinit_azure.ovf import OvfEnvironment, parse_ovf, redact_ovf
from cloudinit_azure.report import (
    OvfError,
    ProvisioningError,
    ReprovisionDataEmptyError,
    ReprovisionDataError,
    ReprovisionDataPoolError,
    StillPreprovisionedError,
)

LOG = logging.getLogger(__name__)

RUNNING, SAVABLE, OS_DISK = "running", "savable", "os_disk"
OVF_TYPES = {"Running": RUNNING, "Savable": SAVABLE, "PreprovisionedOSDisk": OS_DISK}
NO_TYPE = (None, "", "None")
WAIT_SLICE_S = 5.0     # between two link waits, one reprovisiondata poll
POLL_INTERVAL_S = 1.0
SHUTDOWN_LOG_S = 60.0


@dataclass(frozen=True)
class Pool:
    """This boot is a pool VM's: which kind, as declared, and whether it resumes."""

    kind: str
    declared: Optional[str] = None
    resumed: bool = False  # the pool Ready went out on an earlier boot
    fallback: Optional[str] = None  # why an unknown type waits as Running


@dataclass(frozen=True)
class Plan:
    """What the wait does, in order."""

    report_pool_ready: bool
    tolerate_ready_error: bool  # Savable: the NIC may go away under the report
    remember: bool              # mark "pool Ready sent" so a reboot resumes the wait
    waits: tuple[str, ...]      # "vnet_switch", "nic_detach", "nic_attach", "shutdown"
    poll: bool
    prepare: bool = True        # the customer's boot is this one: prepare it while waiting


def classify(preprovisioned_vm: bool, ovf_type: Optional[str], imds_type: Optional[str],
             marker: Optional[str]) -> Optional[Pool]:
    """The pool this VM is in, or None for an ordinary VM.

    ``marker`` is the kind remembered when the pool Ready was delivered on an
    earlier boot. It counts only while the documents still say "pool": a
    stale marker on an ordinary VM (say, an image captured mid-wait) must not
    make it wait for ever, as cloud-init's built-in would.
    """
    declared = [t for t in (ovf_type, imds_type) if t not in NO_TYPE]
    if not preprovisioned_vm and not declared:
        return None
    kinds = [OVF_TYPES.get(t or "") for t in declared]
    fallback = None
    for kind in (SAVABLE, OS_DISK, RUNNING):
        if kind in kinds:
            break
    else:
        kind = RUNNING
        if declared:
            fallback = (f"unknown preprovisioning type {declared[0]!r}: waiting for the "
                        "customer as a Running pool VM does")
    resumed = marker is not None and kind != OS_DISK
    return Pool(kind, declared[0] if declared else None, resumed, fallback)


def plan(pool: Pool) -> Plan:
    if pool.kind == OS_DISK:
        # Ready, then the host shuts us down; the customer's boot starts afresh.
        return Plan(True, False, False, ("shutdown",), False, prepare=False)
    if pool.resumed:
        return Plan(False, False, False, (), True)
    if pool.kind == SAVABLE:
        return Plan(True, True, True, ("nic_detach", "nic_attach"), True)
    return Plan(True, False, True, ("vnet_switch",), True)


def poll_next(status: Optional[int]) -> str:
    """After a reprovisiondata answer: ``done``, ``wait`` (not yet) or ``renew`` the lease."""
    if status == 200:
        return "done"
    if status in (404, 410, 429):
        return "wait"
    return "renew"  # 5xx, no answer: as cloud-init, take a new lease and poll again


def should_log(attempt: int) -> bool:
    """INFO for attempts 1, 2, 4, 8, ... and every 60th: progress without a flood."""
    return attempt & (attempt - 1) == 0 or attempt % 60 == 0


def customer_document(data: bytes) -> OvfEnvironment:
    """The customer's ovf-env.xml from reprovisiondata, or a ProvisioningError saying why not."""
    if not data.strip():
        raise ReprovisionDataEmptyError()
    try:
        ovf = parse_ovf(data)
    except OvfError as exc:  # a document that is not an ovf-env.xml: say which one
        raise ReprovisionDataError(ovf_error=exc.reason, **exc.supporting_data) from exc
    if ovf.preprovisioned_vm:
        raise ReprovisionDataPoolError(type=ovf.preprovisioned_vm_type or "none")
    return ovf


def pool_of(ovf: Optional[OvfEnvironment], imds: Any,
            marker: Callable[[], Optional[str]]) -> Optional[Pool]:
    """:func:`classify` from the flow's documents (``imds``: InstanceMetadata or None).

    ``marker`` is read only for a pool VM: an ordinary boot touches nothing.
    """
    args = (bool(ovf and ovf.preprovisioned_vm), ovf.preprovisioned_vm_type if ovf else None,
            getattr(imds, "pps_type", None))
    if classify(*args, marker=None) is None:
        return None
    return classify(*args, marker=marker())


def step_pool(flow: Any, pool: Pool, imds_step: Callable[[OvfEnvironment], Any],
              prepare: Optional[Callable[[], None]] = None) -> tuple[OvfEnvironment, Any]:
    """The provisioning flow's step between IMDS and the plan, for a pool VM.

    The pool's Ready, the wait, the customer's ovf-env.xml (checked, and
    cached redacted in place of the placeholder's), the customer's IMDS
    document. The flow then plans and provisions the customer exactly as a
    normal VM; the placeholder's document is never planned. ``flow`` is the
    flow's run (its ``platform`` seam, ``phase``, ``clock``, ``state``);
    ``prepare``: work that does not depend on the customer, done during the
    wait (see :func:`wait_for_customer`).
    """
    started = flow.clock()
    reuse = flow.platform.reuse(flow.state.wireserver)
    try:
        data = wait_for_customer(pool, reuse, clock=flow.clock, prepare=prepare)
        ovf = customer_document(data)
    except ProvisioningError as exc:
        flow.phase("pool", "failed", started, exc.reason)
        raise
    reuse.forget_pool()
    flow.platform.cache_ovf(redact_ovf(data))
    flow.phase("pool", "ok", started, f"{pool.kind}: customer assigned")
    imds = imds_step(ovf)
    if imds is not None and getattr(imds, "pps_type", None) not in NO_TYPE:
        raise StillPreprovisionedError(pps_type=imds.pps_type)
    return ovf, imds


# --- the wait ---------------------------------------------------------------------


class Reuse(Protocol):
    """What the wait needs from the machine and the platform."""

    def open_watch(self) -> None: ...      # listen to link events (before the pool Ready)
    def close_watch(self) -> None: ...
    def wait_link(self, what: str, timeout: float) -> bool: ...  # True: it happened
    def renew_lease(self) -> None: ...     # DHCP again, on the primary NIC as it is now
    def fetch(self) -> tuple[Optional[int], bytes]: ...  # reprovisiondata; None: no answer
    def report_pool_ready(self) -> None: ...  # ProvisioningError
    def remember_pool(self, kind: str) -> None: ...
    def forget_pool(self) -> None: ...
    def sleep(self, seconds: float) -> None: ...


def wait_for_customer(pool: Pool, reuse: Reuse, *, log: logging.Logger = LOG,
                      clock: Callable[[], float] = lambda: 0.0,
                      prepare: Optional[Callable[[], None]] = None) -> bytes:
    """Report the pool's Ready, wait for the customer, return the customer's ovf-env.xml.

    An OS-disk pool VM never returns (the host powers it off). Transient
    faults are retried for ever, as the platform expects: it abandons a pool
    VM it no longer wants. ``prepare`` runs once, after the pool's Ready and
    before the wait (also when a reboot resumes it), never for an OS disk
    (its customer boots afresh): what it does then is off the path from the
    assignment to the customer's Ready. Its failure is logged; the flow does
    that work again after the assignment.
    """
    steps = plan(pool)
    if pool.fallback:
        log.info("%s", pool.fallback)
    log.info("preprovisioned VM (%s pool%s)", pool.kind,
             ", resuming the wait after a reboot" if pool.resumed else "")
    reuse.open_watch()
    try:
        if steps.report_pool_ready:
            try:
                reuse.report_pool_ready()
            except ProvisioningError as exc:
                if not steps.tolerate_ready_error:
                    raise
                log.info("pool Ready may not have arrived (%s): the NIC goes away now", exc)
            log.info("reported Ready for the %s pool: waiting for a customer", pool.kind)
            if steps.remember:
                reuse.remember_pool(pool.kind)
        if prepare is not None and steps.prepare:
            try:
                prepare()
            except Exception as exc:  # done again after the assignment
                log.info("could not prepare while waiting (%s): after the assignment", exc)
        for what in steps.waits:
            if what == "shutdown":
                _wait_for_shutdown(reuse, log)
            data = _wait_for_link(what, reuse, log, clock)
            if data is not None:
                return data
    finally:
        reuse.close_watch()
    return poll(reuse, log)


def _wait_for_shutdown(reuse: Reuse, log: logging.Logger) -> None:
    while True:
        log.info("OS-disk pool VM: waiting for the host to shut it down")
        reuse.sleep(SHUTDOWN_LOG_S)


def _wait_for_link(what: str, reuse: Reuse, log: logging.Logger,
                   clock: Callable[[], float]) -> Optional[bytes]:
    """Wait for one link event; in between, poll once (a missed event must not hang us)."""
    started = clock()
    slices = 0
    while not reuse.wait_link(what, WAIT_SLICE_S):
        slices += 1
        if should_log(slices):
            log.info("still waiting for the %s (%.0f s)", what.replace("_", " "),
                     clock() - started)
        if what != "nic_detach":
            status, body = reuse.fetch()
            if status == 200 and body:
                log.info("the customer's document arrived before the %s",
                         what.replace("_", " "))
                return body
    log.info("%s seen after %.1f s", what.replace("_", " "), clock() - started)
    if what in ("vnet_switch", "nic_attach"):
        _renew(reuse, log)
    return None


def _renew(reuse: Reuse, log: logging.Logger) -> None:
    try:
        reuse.renew_lease()
    except ProvisioningError as exc:
        log.info("could not renew the DHCP lease yet (%s): polling anyway", exc)


def poll(reuse: Reuse, log: logging.Logger = LOG) -> bytes:
    """Poll reprovisiondata until it answers 200 with a body."""
    attempt = 0
    while True:
        attempt += 1
        status, body = reuse.fetch()
        verdict = poll_next(status)
        if verdict == "done" and body:
            log.info("fetched the customer's ovf-env.xml (attempt %d)", attempt)
            return body
        if should_log(attempt):
            log.info("reprovisiondata not there yet (attempt %d: %s)", attempt,
                     status if status is not None else "no answer")
        if verdict == "renew":
            _renew(reuse, log)
        reuse.sleep(POLL_INTERVAL_S)


# --- link events (netlink RTM_NEWLINK / RTM_DELLINK) ------------------------------

RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME, IFLA_OPERSTATE = 3, 16
OPER_DOWN, OPER_UP = 2, 6
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")


@dataclass(frozen=True)
class LinkEvent:
    deleted: bool
    index: int
    name: Optional[str]
    operstate: Optional[int]


def parse_link_messages(data: bytes) -> list[LinkEvent]:
    """RTM_NEWLINK / RTM_DELLINK messages of a netlink datagram (others skipped)."""
    out = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind = _NLMSG.unpack_from(data, offset)[:2]
        if length < _NLMSG.size or offset + length > len(data):
            break
        if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= _NLMSG.size + _IFINFO.size:
            index = _IFINFO.unpack_from(data, offset + _NLMSG.size)[2]
            name, oper = None, None
            pos = offset + _NLMSG.size + _IFINFO.size
            while pos + _RTA.size <= offset + length:
                rta_len, rta_type = _RTA.unpack_from(data, pos)
                if rta_len < _RTA.size:
                    break
                value = data[pos + _RTA.size:pos + rta_len]
                if rta_type == IFLA_IFNAME:
                    name = value.split(b"\0", 1)[0].decode("utf-8", "replace")
                elif rta_type == IFLA_OPERSTATE and value:
                    oper = value[0]
                pos += (rta_len + 3) & ~3
            out.append(LinkEvent(kind == RTM_DELLINK, index, name, oper))
        offset += (length + 3) & ~3
    return out


class LinkTracker:
    """Turns link events into what a pool VM waits for.

    ``vnet_switch``: an interface known at the start went DOWN, then UP.
    ``nic_detach``: an interface was deleted. ``nic_attach``: an interface
    that was not there at the start appeared (the new NIC, maybe under the
    old name, always with a new ifindex).
    """

    def __init__(self, known: Sequence[int] = ()) -> None:
        self.known = set(known)
        self.down: set[int] = set()
        self.seen: set[str] = set()
        self.new_nic: Optional[str] = None

    def feed(self, events: Sequence[LinkEvent]) -> None:
        for e in events:
            if e.deleted:
                self.seen.add("nic_detach")
                self.known.discard(e.index)
                continue
            if e.index not in self.known and e.name and e.name != "lo":
                self.known.add(e.index)
                self.new_nic = e.name
                self.seen.add("nic_attach")
            if e.operstate == OPER_DOWN:
                self.down.add(e.index)
            elif e.operstate == OPER_UP and e.index in self.down:
                self.down.discard(e.index)
                self.seen.add("vnet_switch")

    def happened(self, what: str) -> bool:
        return what in self.seen
