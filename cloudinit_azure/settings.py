"""One config namespace per module, validated by a JSON schema.

Each module's keys live under its own top-level key in cloud.cfg
(``azure_resource_disk:``, ``azure_kernel:`` ...). Defaults are the
``default`` values of the schema in ``schemas/<namespace>.json``, so the
schema is the single place that documents and defaults a key.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any, Mapping, Optional

from cloudinit_azure.report import ConfigError


@cache
def schema(namespace: str) -> dict[str, Any]:
    """Load the JSON schema shipped for ``namespace``."""
    text = resources.files("cloudinit_azure").joinpath(
        "schemas", f"{namespace}.json"
    ).read_text(encoding="utf-8")
    return json.loads(text)


def _defaults(node: Mapping[str, Any]) -> Any:
    if "default" in node:
        return copy.deepcopy(node["default"])
    if node.get("type") == "object" and "properties" in node:
        return {
            key: _defaults(sub)
            for key, sub in node["properties"].items()
            if "default" in sub or sub.get("type") == "object"
        }
    return None


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return copy.deepcopy(override)


def load(namespace: str, cfg: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the validated settings of ``namespace`` with defaults filled in.

    Raises :class:`ConfigError` naming the offending key when the image
    author's config does not match the schema.
    """
    import jsonschema  # deferred: keeps stages that do not use us cheap

    sch = schema(namespace)
    given = (cfg or {}).get(namespace)
    if given is None:
        given = {}
    try:
        jsonschema.validate(given, sch)
    except jsonschema.ValidationError as err:
        path = ".".join([namespace, *(str(p) for p in err.absolute_path)])
        raise ConfigError(f"invalid config at {path}: {err.message}") from None
    return _merge(_defaults(sch) or {}, given)
