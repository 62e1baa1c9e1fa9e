"""``azure_resource_disk`` settings: the schema's values, nothing else.

Every default of :class:`DiskSettings` is read from
``schemas/azure_resource_disk.json``, so tests and production use the same
values (the schema is the only place a default is written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from cloudinit_azure import settings as settings_mod

NAMESPACE = "azure_resource_disk"


def _default(key: str, sub: Optional[str] = None) -> Any:
    node = settings_mod.schema(NAMESPACE)["properties"][key]
    return node["properties"][sub]["default"] if sub else node["default"]


@dataclass(frozen=True)
class DiskSettings:
    """Validated ``azure_resource_disk`` settings (schema defaults filled)."""

    enabled: bool = _default("enabled")
    device: Optional[str] = _default("device")
    filesystem: str = _default("filesystem")
    label: str = _default("label")
    mountpoint: str = _default("mountpoint")
    mount_options: str = _default("mount_options")
    never_destroy_ntfs: bool = _default("never_destroy_ntfs")
    swap_enabled: bool = _default("swap", "enabled")
    swap_size: str = str(_default("swap", "size"))
    wait_seconds: float = float(_default("wait_seconds"))


def load_settings(cfg: Optional[Mapping[str, Any]]) -> DiskSettings:
    """Validate ``cfg["azure_resource_disk"]`` (:func:`settings.load`, as every module)."""
    return from_settings(settings_mod.load(NAMESPACE, cfg), cfg)


def from_settings(raw: Mapping[str, Any], cfg: Optional[Mapping[str, Any]]) -> DiskSettings:
    """:func:`settings.load`'s result as :class:`DiskSettings`; also honour the built-in
    datasource's ``datasource: Azure: never_destroy_ntfs`` (in the merged ``cfg``) so
    existing image configs keep their promise."""
    raw = settings_mod.with_defaults(NAMESPACE, raw)
    ds_cfg = ((cfg or {}).get("datasource") or {}).get("Azure") or {}
    never = bool(raw["never_destroy_ntfs"]) or _truthy(ds_cfg.get("never_destroy_ntfs"))
    swap = raw["swap"]
    return DiskSettings(
        enabled=bool(raw["enabled"]),
        device=raw.get("device"),
        filesystem=raw["filesystem"],
        label=raw["label"],
        mountpoint=raw["mountpoint"],
        mount_options=raw["mount_options"],
        never_destroy_ntfs=never,
        swap_enabled=bool(swap["enabled"]),
        swap_size=str(swap["size"]),
        wait_seconds=float(raw["wait_seconds"]),
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
