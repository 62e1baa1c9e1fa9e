"""One config namespace per module, validated by a JSON schema.

Each module's keys live under its own top-level key in cloud.cfg
(``azure_resource_disk:``, ``azure_kernel:`` ...). Defaults are the
``default`` values of the schema in ``schemas/<namespace>.json``, so the
schema is the single place that documents and defaults a key.

A schema may say ``"x-unknown-keys": "warn"`` (the datasource's does: image
configs carry keys of every cloud-init release's built-in Azure datasource):
then a top-level key the schema does not know is logged once, by name, and
ignored, while a known key with a wrong value is still a
:class:`~cloudinit_azure.report.ConfigError` naming it.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Optional

from cloudinit_azure.report import ConfigError

LOG = logging.getLogger(__name__)
DATASOURCE_NAMESPACE = "datasource_azure"
# Where an image author writes the datasource's keys (for messages).
DATASOURCE_LABEL = "datasource.Azure"


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


def _shown(key: Any) -> str:
    """A key as it may appear in a log line: printable, bounded."""
    return repr(key)[:80].encode("utf-8", "backslashreplace").decode("utf-8")


def _known_only(given: Mapping[Any, Any], sch: Mapping[str, Any], label: str,
                log: logging.Logger) -> dict[Any, Any]:
    known = sch.get("properties", {})
    out = {}
    for key, value in given.items():
        if key in known:
            out[key] = value
        else:
            log.warning("%s: unknown key %s ignored", label, _shown(key))
    return out


def with_defaults(namespace: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (already validated) with the schema's defaults for what it lacks.

    For core functions handed a partial settings mapping (tests, the
    simulator): the schema stays the only place a default is written.
    """
    return _merge(_defaults(schema(namespace)) or {}, dict(given))


def load(namespace: str, cfg: Optional[Mapping[str, Any]], *,
         label: Optional[str] = None,
         log: Optional[logging.Logger] = None) -> dict[str, Any]:
    """Return the validated settings of ``namespace`` with defaults filled in.

    ``cfg`` is the merged cloud config holding ``namespace`` as a key;
    ``label`` names the namespace in messages (default: ``namespace``).
    Raises :class:`ConfigError` naming the offending key when the image
    author's config does not match the schema.
    """
    import jsonschema  # deferred: keeps stages that do not use us cheap

    sch = schema(namespace)
    label = label or namespace
    given = (cfg or {}).get(namespace)
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ConfigError(key=label, problem=f"not a mapping ({type(given).__name__})")
    if sch.get("x-unknown-keys") == "warn":
        given = _known_only(given, sch, label, log or LOG)
    try:
        jsonschema.validate(dict(given), sch)
    except jsonschema.ValidationError as err:
        path = ".".join([label, *(str(p) for p in err.absolute_path)])
        raise ConfigError(key=path, problem=err.message[:200]) from None
    return with_defaults(namespace, given)


def load_datasource(sys_cfg: Optional[Mapping[str, Any]], *,
                    log: Optional[logging.Logger] = None) -> dict[str, Any]:
    """The validated ``datasource: Azure:`` settings from cloud-init's merged config.

    Every key of the built-in datasource (current and legacy) is accepted;
    an unknown key is one WARNING naming it; a bad value, or a
    ``datasource``/``Azure`` entry that is not a mapping, is a
    :class:`ConfigError` whose ``key`` names it (``datasource.Azure.<key>``).
    The caller reports that error to the platform like any other.
    """
    top = (sys_cfg or {}).get("datasource")
    if top is None:
        top = {}
    if not isinstance(top, Mapping):
        raise ConfigError(key="datasource", problem=f"not a mapping ({type(top).__name__})")
    return load(DATASOURCE_NAMESPACE, {DATASOURCE_NAMESPACE: top.get("Azure")},
                label=DATASOURCE_LABEL, log=log)
