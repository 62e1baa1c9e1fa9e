"""``python3 -m cloudinit_azure.network publish [--root DIR]``: the host name watcher's job.

An adapter (the systemd unit runs it): it passes this machine's
:class:`~cloudinit_azure.host.Host` (runner, kill) to the core.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from cloudinit_azure.host import Host, this_machine
from cloudinit_azure.network.hostname import check_hostname, hostname_from, publish_hostname
from cloudinit_azure.network.nics import _read, classify_nics, primary_nic
from cloudinit_azure.report import ProvisioningError

LOG = logging.getLogger("cloudinit_azure.network")


def main(argv: Optional[Sequence[str]], host: Host) -> int:
    """Publish the host name in /etc/hostname through the OS DHCP client."""
    parser = argparse.ArgumentParser(prog="python3 -m cloudinit_azure.network")
    parser.add_argument("command", choices=["publish"])
    parser.add_argument("--root", default="/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = Path(args.root)
    lines = (_read(root / "etc/hostname") or "").splitlines()
    name = hostname_from(lines[0] if lines else None)
    nic = primary_nic(classify_nics(root / "sys/class/net"))
    if nic is None:
        LOG.warning("no network interface found")
        return 1
    try:
        name = check_hostname(name) if name else None
    except ProvisioningError as err:
        LOG.warning("%s: publishing the live host name instead", err)
        name = None
    result = publish_hostname(root, nic.name, name, host.runner, LOG, mac=nic.mac,
                              kill=host.kill)
    return 0 if result.client else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], this_machine()))
