"""Thin adapters between cloud-init's config-module API and the pure core.

cloud-init finds a module named ``azure_x`` as the top-level ``cc_azure_x``
on ``sys.path``; those shims import ``handle`` and ``meta`` from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModuleCall:
    """The arguments cloud-init passed to ``handle``, whatever its version."""

    name: str
    cfg: dict
    cloud: Any
    log: logging.Logger
    args: list


def module_call(args: tuple, kwargs: dict, logger_name: str) -> ModuleCall:
    """Normalise ``handle`` arguments across cloud-init releases.

    22.4 calls ``handle(name, cfg, cloud, log, args)`` positionally; 23.2+
    calls ``handle(name=, cfg=, cloud=, args=)`` and deprecates the ``log``
    parameter. ``def handle(*args, **kwargs)`` accepts both.
    """
    names = ("name", "cfg", "cloud", "log", "args")
    values: dict[str, Any] = dict(zip(names, args))
    if len(args) == 4:  # (name, cfg, cloud, args): no log
        values = dict(zip(("name", "cfg", "cloud", "args"), args))
    values.update(kwargs)
    log = values.get("log") or logging.getLogger(logger_name)
    return ModuleCall(
        name=values.get("name", ""),
        cfg=values.get("cfg") or {},
        cloud=values.get("cloud"),
        log=log,
        args=list(values.get("args") or []),
    )
