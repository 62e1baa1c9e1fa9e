"""Make cloud-init's user-data validation know our config namespaces.

cloud-init 23.4+ validates the instance's cloud-config (user-data, so also
Azure customData) against its own schema, whose top level has
``additionalProperties: false``. An ``azure_resource_disk:`` key in
customData is then "not allowed": cloud-init logs a WARNING (``cloud-config
failed schema validation``) and ``cloud-init status`` says "degraded",
although our module reads the key and applies it. cloud-init has no way for
out-of-tree modules to declare their keys (canonical/cloud-init#5558 is
open), and the validation runs in the init stage before any config module
is imported. The datasource package is imported before it (the init stage
restores or looks up the datasource first), so importing
:mod:`cloudinit_azure.sources` calls :func:`register`, which adds each of our
namespaces, with its own JSON schema, to the schema cloud-init validates
against. Our keys are then validated by our schemas, a typo in them is still
reported, and unknown keys are still refused.

The module names are added to the schema's list of known modules too:
cloud-init 22.4 validates the whole merged config, including the
``cloud_init_modules`` list in which the datasource places our modules, and
logged "Invalid cloud-config provided" on every boot because
``azure_kernel`` and friends were not among cloud-init's own module names.

This wraps ``cloudinit.config.schema.get_schema`` (the same name in 22.4 and
25.1; 22.4 takes no argument, 25.1 a ``SchemaType``). Nothing else of
cloud-init is touched; without cloud-init (unit tests of the core) it does
nothing.
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any, Callable

from cloudinit_azure import settings

LOG = logging.getLogger(__name__)

# Config namespaces whose keys image authors and users may set in cloud-config.
NAMESPACES = ("azure_ready", "azure_resource_disk", "azure_kernel", "azure_network")
# Config modules (top-level shims cc_<name>.py) that may appear in module lists.
MODULES = ("azure_ready", "azure_resource_disk", "azure_kernel", "azure_network")
_MARK = "_cloudinit_azure_namespaces"
_DROP = ("$schema", "$id")


def subschemas() -> dict[str, dict[str, Any]]:
    """Our namespaces' schemas, as subschemas cloud-init's draft-4 validator reads."""
    out = {}
    for name in NAMESPACES:
        sub = copy.deepcopy(settings.schema(name))
        for key in _DROP:
            sub.pop(key, None)
        out[name] = sub
    return out


def extend(full: Any, is_cloud_config: bool = True) -> Any:
    """Add our namespaces to cloud-init's cloud-config schema ``full`` (a fresh dict)."""
    if not is_cloud_config or not isinstance(full, dict) or not full:
        return full
    props = full.setdefault("properties", {})
    for name, sub in subschemas().items():
        props.setdefault(name, sub)
    known = (full.get("$defs") or {}).get("all_modules") or {}
    if isinstance(known.get("enum"), list):
        known["enum"] += [m for m in MODULES if m not in known["enum"]]
    return full


def wrap(get_schema: Callable[..., Any], cloud_config_type: Any) -> Callable[..., Any]:
    """``get_schema`` that also knows our namespaces (for the cloud-config type only)."""
    if getattr(get_schema, _MARK, False):
        return get_schema

    @functools.wraps(get_schema)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        kind = args[0] if args else kwargs.get("schema_type", cloud_config_type)
        return extend(get_schema(*args, **kwargs), kind == cloud_config_type)

    setattr(wrapped, _MARK, True)
    return wrapped


def register() -> bool:
    """Install the wrapper into cloud-init once; False when cloud-init is absent."""
    try:
        from cloudinit.config import schema as ci_schema
    except ImportError:
        return False
    get_schema = getattr(ci_schema, "get_schema", None)
    if get_schema is None:
        LOG.debug("cloud-init has no config.schema.get_schema: namespaces not registered")
        return False
    kind = getattr(getattr(ci_schema, "SchemaType", None), "CLOUD_CONFIG", None)
    ci_schema.get_schema = wrap(get_schema, kind)
    return True
