"""What the Azure Linux Agent (waagent) finds in its directory once we have reported.

Endorsed images run waagent beside cloud-init. With ``Provisioning.Agent=cloud-init``
(Debian's packaged /etc/waagent.conf) or ``auto``, its cloud-init handler (read in
WALinuxAgent 2.7.3 and 2.12, Debian 12 and 13) does this when the daemon starts:

- its marker ``<data_dir>/provisioned`` holds this VM's id: provisioning is done,
  it reports nothing and goes on to handle extensions;
- a marker with another VM's id: it clears its state, rewrites the marker and
  reports **Ready**;
- no marker: it waits (30 minutes) for our ``ovf-env.xml`` copy, then reports
  **NotReady** ("Provisioning"), waits for an SSH host key, writes the marker and
  reports **Ready**; it writes ``disable_agent`` (and later sleeps instead of
  handling extensions) when the copy says ``ProvisionGuestAgent`` false.

So the platform hears one story only if, after our Ready, the marker holds this
VM's id (waagent then adds nothing), and after our ProvisioningFailed neither the
copy nor any marker is left (waagent keeps waiting, and after 30 minutes reports
its own failure, never a Ready). Since waagent no longer reads the copy, the copy
itself carries its ``disable_agent`` decision. Pure plans here; :func:`apply` is
the one edge, given the directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Optional

from cloudinit_azure import atomic, identity

LOG = logging.getLogger(__name__)
MARKER = "provisioned"
OVF_COPY = "ovf-env.xml"
DISABLE_AGENT = "disable_agent"


@dataclasses.dataclass(frozen=True)
class Handoff:
    """Files to write (name, text) and to remove in waagent's directory."""

    write: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


def agent_instance_id(instance_id: str) -> str:
    """The id waagent writes in its marker for this VM.

    waagent reads the DMI product uuid and reverses the bytes of its first three
    fields; it accepts a marker in either order, so ours matches its own byte for
    byte when ``instance_id`` is the DMI uuid (ours keeps an earlier id that differs
    only in that order, which waagent accepts too).
    """
    return identity.byte_swap(instance_id) if identity.is_uuid(instance_id) \
        else instance_id.lower()


def after_ready(instance_id: str) -> Handoff:
    """Our Ready is decided: the marker, as waagent's handler would write it."""
    return Handoff(write=((MARKER, agent_instance_id(instance_id)),))


def after_failure() -> Handoff:
    """Our ProvisioningFailed is decided: nothing that lets waagent report Ready."""
    return Handoff(remove=(OVF_COPY, MARKER))


def on_copy(provision_guest_agent: Optional[bool]) -> Handoff:
    """The copy is written: what waagent would decide on reading it."""
    if provision_guest_agent is False:
        return Handoff(write=((DISABLE_AGENT, ""),))
    return Handoff()


def apply(handoff: Handoff, directory: Path) -> None:
    """Carry out ``handoff`` in ``directory`` (waagent's, 0700); files are 0600."""
    if handoff.write:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in handoff.write:
        atomic.write_file(directory / name, text, mode=0o600)
    for name in handoff.remove:
        try:
            os.unlink(directory / name)
            LOG.info("removed %s: the Azure Linux Agent must not report Ready after "
                     "a failure", directory / name)
        except FileNotFoundError:
            pass
