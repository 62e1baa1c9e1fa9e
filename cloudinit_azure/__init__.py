"""Azure provisioning plug-ins for cloud-init.

The pure core (parsing, protocol, planning) lives in the top-level modules of
this package and never imports cloud-init; ``sources`` and ``modules`` hold the
thin adapters that cloud-init loads.
"""

__version__ = "0.3.0"
AGENT_NAME = "cloudinit-azure"
