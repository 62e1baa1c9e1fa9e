"""Instance metadata as cloud-init's built-in Azure datasource shapes it.

Image authors have scripts, ``cloud-init query`` calls and jinja customData
written against the built-in datasource: ``ds.meta_data.imds.compute.vmSize``,
``v1.region``, ``v1.availability_zone``. So ``ds.meta_data`` holds the same
keys with the same values (the whole IMDS document under ``imds``), and the
values cloud-init's ``v1`` namespace asks the datasource for (``region``,
``availability_zone``) are read from that document the way the built-in
reads them. Pure: dicts in, dicts out; docs/differences.md lists what still
differs and why.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional, Sequence


def instance_metadata(*, instance_id: str, local_hostname: Optional[str],
                      imds_document: Optional[Mapping[str, Any]],
                      public_keys: Sequence[str]) -> dict[str, Any]:
    """``ds.meta_data``: the built-in's keys (``instance-id``, ``local-hostname``,
    ``imds``) plus ``public-keys``, which the built-in sets only for keys from
    the wireserver and we always set (cloud-init reads keys from it)."""
    return {
        "instance-id": instance_id,
        "local-hostname": local_hostname or "",
        # The built-in keeps {} when IMDS gave nothing; a deep copy keeps the
        # parsed document's owner from sharing mutable state with cloud-init.
        "imds": copy.deepcopy(dict(imds_document or {})),
        "public-keys": list(public_keys),
    }


def _compute(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    imds = metadata.get("imds") if isinstance(metadata, Mapping) else None
    compute = imds.get("compute") if isinstance(imds, Mapping) else None
    return compute if isinstance(compute, Mapping) else {}


def region(metadata: Mapping[str, Any]) -> Optional[str]:
    """``v1.region``: IMDS ``compute.location`` (as the built-in)."""
    return _compute(metadata).get("location") or metadata.get("region")


def availability_zone(metadata: Mapping[str, Any]) -> Optional[str]:
    """``v1.availability_zone``: IMDS ``compute.platformFaultDomain``.

    The built-in reports the fault domain, not ``compute.zone``; scripts
    written for it expect that, so we do the same (docs/differences.md).
    """
    return _compute(metadata).get("platformFaultDomain") or metadata.get(
        "availability-zone")

