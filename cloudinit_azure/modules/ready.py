"""Config module ``azure_ready``: report Ready once the user can log in.

Listed in cloud_init_modules right after the modules that create the user,
install the SSH keys and host keys and set the host name; slow work (disk
formatting) comes after it. Does nothing on later boots of the same
instance, for other datasources, or after a failure was reported.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Any

from cloudinit_azure.modules import module_call

meta: dict[str, Any] = {
    "id": "cc_azure_ready",
    "name": "Azure Ready",
    "title": "Report Ready to the Azure platform",
    "description": __doc__,
    "distros": ["all"],
    "frequency": "once-per-instance",
    "activate_by_schema_keys": [],
}

STAGING = Path("/var/lib/cloudinit-azure/keypairs")


def install_key_pairs(key_pairs: list, username: str, log: Any) -> None:
    """Move certificate key pairs staged in init-local to their OVF paths."""
    try:
        user = pwd.getpwnam(username)
    except KeyError:
        log.warning("user %s missing: key pairs not installed", username)
        return
    for fingerprint, path in key_pairs:
        private = STAGING / fingerprint
        if not private.exists():
            log.warning("no certificate for key pair %s: %s not written", fingerprint, path)
            continue
        dest = Path(path)
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.move(str(private), dest)
        os.chmod(dest, 0o600)
        os.chown(dest, user.pw_uid, user.pw_gid)
        pub = STAGING / f"{fingerprint}.pub"
        if pub.exists():
            pub_dest = Path(f"{path}.pub")
            shutil.move(str(pub), pub_dest)
            os.chmod(pub_dest, 0o644)
            os.chown(pub_dest, user.pw_uid, user.pw_gid)


def handle(*args: Any, **kwargs: Any) -> None:
    from cloudinit_azure import media
    from cloudinit_azure.health import Reporter
    from cloudinit_azure.runner import run

    call = module_call(args, kwargs, __name__)
    ds = getattr(call.cloud, "datasource", None)
    if not getattr(ds, "provisioned", False):
        call.log.info("azure_ready: this instance was not provisioned by cloudinit-azure; "
                      "nothing to report")
        return
    settings = ds.settings
    iid = ds.metadata["instance-id"]
    if getattr(ds, "key_pairs", None):
        user = ((call.cfg.get("system_info") or {}).get("default_user") or {}).get("name")
        install_key_pairs(ds.key_pairs, user, call.log)
    reporter = Reporter(ds.wireserver_address or "168.63.129.16",
                        kvp_pool=settings["kvp_pool"], vm_id=ds.vm_id,
                        budget_s=float(settings["ready_budget_s"]))
    if reporter.ready(iid) and settings.get("eject_media", True) \
            and ds.media_kind == "device" and ds.media_device:
        media.eject(ds.media_device, run)
