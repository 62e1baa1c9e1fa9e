"""``cloudinit-azure doctor``: will this image (or this system) provision on Azure?

Pure checks over a root tree: nothing is written, executed or read outside
the tree. See :func:`run` and docs/image-authors.md.
"""

from __future__ import annotations

import os

from cloudinit_azure.doctor import cloudcfg, plugin, system
from cloudinit_azure.doctor.facts import Facts
from cloudinit_azure.doctor.model import Check, exit_code
from cloudinit_azure.doctor.tree import RootError, Tree

__all__ = ["Check", "RootError", "exit_code", "inspect", "run"]


def inspect(root: os.PathLike | str) -> tuple[Facts, list[Check]]:
    """Every check over ``root``; raises :class:`RootError` for a path that is no tree."""
    facts = Facts(Tree.open(root))
    return facts, system.checks(facts) + plugin.checks(facts) + cloudcfg.checks(facts)


def run(root: os.PathLike | str) -> list[Check]:
    return inspect(root)[1]
