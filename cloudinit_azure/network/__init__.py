"""Networking, one package: NICs, DHCP clients and leases, platform routes, host name.

- :mod:`.nics`: NIC discovery and classification (VFs, virtual devices) with one
  rule for the primary NIC; stable NIC names (udev persistent-net rules);
- :mod:`.clients`: the image's DHCP client programs and their command lines;
- :mod:`.leases`: one lease parser per client, option 121/245 decoders;
- :mod:`.routes`: routes to the platform; a lease as ip(8) commands;
- :mod:`.dhcpcd`, :mod:`.ephemeral`: the init-local ephemeral DHCP run;
- :mod:`.hostname`, :mod:`.watcher`: host name publishing to Azure DNS;
- :mod:`.networkd`: the ``.network`` file networkd applies to a NIC (no D-Bus);
- :mod:`.hostkey`: the legacy host key thumbprint report;
- :mod:`.netconfig`: the typed IMDS interfaces as cloud-init network config v2;
- :mod:`.configure`: what the ``azure_network`` module does.

Parsers and config edits are pure; everything that touches the machine takes
``root`` and a ``runner`` (and ``kill``) from the adapter. Nothing here ever
releases a DHCP lease or takes a link down. The names below are the API the
datasource and the modules import (``cloudinit_azure.network.names_by_mac``...);
``python3 -m cloudinit_azure.network publish`` is the host name watcher's job.
"""

from cloudinit_azure.network.clients import (  # noqa: F401
    udhcpc_program,
    udhcpc_publish_command,
)
from cloudinit_azure.network.configure import (  # noqa: F401
    Outcome,
    configure,
    find_lease,
)
from cloudinit_azure.network.hostkey import (  # noqa: F401
    HOST_KEY_PREFERENCE,
    host_key_thumbprint,
    render_role_properties,
    report_host_key,
    wireserver_role_properties,
)
from cloudinit_azure.network.hostname import (  # noqa: F401
    DHCP_CLIENTS,
    NETWORKD_DROPIN,
    PublishResult,
    check_hostname,
    configured_hostname,
    detect_dhcp_client,
    ensure_dhclient_hostname,
    ensure_dhcpcd_hostname,
    hostname_from,
    networkd_dropin,
    parse_ipv4_address,
    publish_hostname,
    running_clients,
)
from cloudinit_azure.network.leases import (  # noqa: F401
    DhclientBlock,
    dhclient_blocks,
    dhcp_packet_option,
    newest_dhclient_block,
    parse_classless_routes,
    parse_lease,
)
from cloudinit_azure.network.networkd import (  # noqa: F401
    file_matches,
    find_network_file,
    network_file_for,
    parse_state,
)
from cloudinit_azure.network.nics import (  # noqa: F401
    PERSISTENT_NET_GENERATOR,
    PERSISTENT_NET_RULES,
    STALE_RULES_DIR,
    SYNTHETIC_DRIVER,
    VF_DRIVERS,
    Nic,
    classify_nics,
    mask_persistent_net_rules,
    names_by_mac,
    primary_nic,
    primary_nic_name,
    remove_stale_net_rules,
)
from cloudinit_azure.network.routes import (  # noqa: F401
    DEFAULT_WIRESERVER,
    IMDS_ADDRESS,
    Route,
    apply_routes,
    lease_gateway,
    parse_default_gateway,
    platform_routes,
)
from cloudinit_azure.network.watcher import (  # noqa: F401
    WATCH_UNIT,
    install_watcher,
    watcher_units,
    write_if_changed,
)
