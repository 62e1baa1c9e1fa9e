"""The init-local ephemeral DHCP, at its old import path (the datasource's).

The code lives in :mod:`cloudinit_azure.network` (``.ephemeral``, ``.clients``,
``.leases``, ``.dhcpcd``, ``.routes``, ``.nics``); this module only re-exports
it. :class:`EphemeralDhcp` takes the root, runner and kill of the machine from
its caller (the platform passes its :class:`~cloudinit_azure.host.Host`'s);
:func:`primary_nic` returns the primary NIC's *name* by the one rule of
:func:`cloudinit_azure.network.nics.primary_nic`.
"""

from __future__ import annotations

from cloudinit_azure.network.clients import (  # noqa: F401
    BUSYBOX_PATHS,
    DEFAULT_TIMEOUT,
    DHCLIENT_PATHS,
    DHCPCD_PATHS,
    FAST_CLIENTS,
    NOOP_SCRIPT,
    TIMEOUT_PATHS,
    UDHCPC_FIELDS,
    UDHCPC_PATHS,
    WIRESERVER_OPTION,
    ClientProgram,
    choose_client,
    dhclient_command,
    dhclient_config,
    find_client,
    udhcpc_command,
    udhcpc_script,
)
from cloudinit_azure.network.dhcpcd import (  # noqa: F401
    DHCPCD_DB_DIRS,
    DHCPCD_EXIT_WAIT,  # noqa: F401
    DHCPCD_FIELDS,
    DHCPCD_KILL_AFTER,
    DHCPCD_MIN_VERSION,
    DHCPCD_RUN_DIR,
    dhcpcd_command,
    dhcpcd_config,
    dhcpcd_lease_files,
    dhcpcd_run_files,
    dhcpcd_script,
    dhcpcd_sockets,
    dhcpcd_version,
)
from cloudinit_azure.network.ephemeral import (  # noqa: F401
    PID_WAIT,
    STDERR_TAIL,
    EphemeralDhcp,
    Fallback,
)
from cloudinit_azure.network.leases import (  # noqa: F401
    DHCPCD_WIRESERVER,
    Lease,
    lease_from_dict,
    make_lease,
    parse_dhclient_lease,
    parse_dhcpcd_dump,
    parse_udhcpc_dump,
)
from cloudinit_azure.network.nics import (  # noqa: F401
    IFF_UP,
    link_is_up,
)
from cloudinit_azure.network.nics import primary_nic_name as primary_nic  # noqa: F401
from cloudinit_azure.network.routes import (  # noqa: F401
    ON_LINK,
    Command,
    Step,
    lease_steps,
    lease_to_commands,
    link_steps,
)
from cloudinit_azure.wireserver import parse_option_245  # noqa: F401
