"""The legacy SSH host key thumbprint report (wireserver roleProperties).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from pathlib import Path
from typing import Any, Callable, Optional
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from cloudinit_azure.network.nics import (
    _read,
)

LOG = logging.getLogger(__name__)


def host_key_thumbprint(public_key: str, algorithm: str = "sha1") -> str:
    """Hex digest of an OpenSSH public key's decoded blob (``type base64 [comment]``)."""
    parts = public_key.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ValueError("public key is not valid base64") from None
    return hashlib.new(algorithm, blob, usedforsecurity=False).hexdigest().upper()


def render_role_properties(container_id: str, instance_id: str, thumbprint: str) -> bytes:
    """The legacy ``POST /machine?comp=roleProperties`` body."""
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        "<RoleProperties><Container>"
        f"<ContainerId>{xml_escape(container_id)}</ContainerId>"
        "<RoleInstances><RoleInstance>"
        f"<Id>{xml_escape(instance_id)}</Id>"
        "<Properties>"
        f'<Property name="CertificateThumbprint" value={quoteattr(thumbprint)} />'
        "</Properties></RoleInstance></RoleInstances></Container></RoleProperties>"
    )
    return text.encode("utf-8")


HOST_KEY_PREFERENCE = ("rsa", "ecdsa", "ed25519")


def report_host_key(root: Path, post: Callable[[bytes], Any], container_id: str,
                    instance_id: str, key_type: Optional[str] = None,
                    log: logging.Logger = LOG) -> bool:
    """Send one host key's thumbprint with ``post(body)`` (the wireserver client's
    :meth:`~cloudinit_azure.wireserver.WireserverClient.report_role_properties`);
    False if no key.

    ``key_type`` None takes the first host key present in the Azure Linux
    Agent's order of preference (rsa, then ecdsa, then ed25519): images that
    generate only some key types still report one.
    """
    for kind in (key_type,) if key_type else HOST_KEY_PREFERENCE:
        key = Path(root) / "etc/ssh" / f"ssh_host_{kind}_key.pub"
        text = _read(key)
        if text:
            body = render_role_properties(container_id, instance_id,
                                          host_key_thumbprint(text))
            post(body)
            log.info("reported the %s host key's thumbprint to the wireserver", kind)
            return True
    log.info("no SSH host key (%s) found: host key fingerprint not reported",
             key_type or ", ".join(HOST_KEY_PREFERENCE))
    return False


def wireserver_role_properties(address: str, client: Any = None,
                               budget_s: float = 30.0) -> tuple[Callable[[bytes], Any],
                                                                str, str]:
    """The wireserver client's roleProperties POST, and the goal state's ids."""
    from cloudinit_azure import wireserver as ws

    client = client or ws.WireserverClient(ws.wireserver_url(address), budget_s=budget_s)
    goal = client.goal_state()
    return client.report_role_properties, goal.container_id, goal.instance_id
