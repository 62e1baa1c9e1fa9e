"""Config module ``azure_ready``: report Ready once the user can log in.

Listed in cloud_init_modules right after the modules that create the user,
install the SSH keys and host keys and set the host name; slow work (disk
formatting) comes after it. Does nothing on later boots of the same
instance, for other datasources, or after a failure was reported.
"""

from __future__ import annotations

import pwd
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
        from cloudinit_azure import keypairs

        name = ((call.cfg.get("system_info") or {}).get("default_user") or {}).get("name")
        try:
            user = pwd.getpwnam(name)
            keypairs.install(ds.key_pairs, user.pw_uid, user.pw_gid, log=call.log)
        except KeyError:
            call.log.warning("user %s missing: key pairs not installed", name)
    reporter = Reporter(ds.wireserver_address or "168.63.129.16",
                        kvp_pool=settings["kvp_pool"], vm_id=ds.vm_id,
                        budget_s=float(settings["ready_budget_s"]))
    if reporter.ready(iid) and settings.get("eject_media", True) \
            and ds.media_kind == "device" and ds.media_device:
        media.eject(ds.media_device, run)
