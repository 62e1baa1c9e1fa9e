"""cloud-init configuration in a tree: the wiring, the datasource list, conflicts.

The files are merged as cloud-init does for the system config: cloud.cfg,
then cloud.cfg.d/*.cfg in name order (later files win; mappings merge, lists
are replaced), then /run/cloud-init/cloud.cfg (ds-identify's answer on a
running system). The kernel command line is not known for an image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from cloudinit_azure.doctor.facts import Facts
from cloudinit_azure.doctor.model import Check, Subject
from cloudinit_azure.doctor.plugin import SHIMS

AREA = "config"
OUR_PKG = "cloudinit_azure.sources"
WIRING = "etc/cloud/cloud.cfg.d/91_cloudinit_azure.cfg"
NAMESPACES = ("azure_kernel", "azure_network", "azure_resource_disk")
MODULE_LISTS = ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules")
SINGLE_LINE = re.compile(r"^datasource_list\s*:\s*\[[^\]\n]*\]\s*(#.*)?$", re.M)


@dataclass(frozen=True)
class Config:
    files: tuple[tuple[str, dict[str, Any]], ...]  # (tree path, parsed mapping)
    errors: tuple[tuple[str, str], ...]  # (tree path, parse error)
    merged: dict[str, Any]

    def last_setting(self, key: str) -> Optional[str]:
        """The file whose value of ``key`` wins."""
        return next((p for p, d in reversed(self.files) if key in d), None)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(facts: Facts) -> Config:
    tree = facts.tree
    paths = ["etc/cloud/cloud.cfg"]
    paths += tree.glob("etc/cloud/cloud.cfg.d", r".+\.cfg")
    paths.append("run/cloud-init/cloud.cfg")
    files, errors, merged = [], [], {}
    for rel in paths:
        text = tree.read_text(rel)
        if text is None:
            continue
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            errors.append(("/" + rel, str(exc).splitlines()[0]))
            continue
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(("/" + rel, "the top level is not a mapping"))
            continue
        files.append(("/" + rel, data))
        merged = _merge(merged, data)
    return Config(tuple(files), tuple(errors), merged)


def _parse(cfg: Config) -> Check:
    c = Subject("config.parse", AREA, "cloud-init config parses")
    if cfg.errors:
        path, why = cfg.errors[0]
        return c.error(f"{path} is not valid YAML ({why}): cloud-init ignores the whole file",
                     f"fix {path}; check it with python3 -c 'import yaml,sys; "
                     "yaml.safe_load(open(sys.argv[1]))' FILE")
    if not cfg.files:
        return c.error("no /etc/cloud/cloud.cfg",
                     "install cloud-init, which ships /etc/cloud/cloud.cfg")
    return c.ok(f"{len(cfg.files)} files")


def _datasource_list(facts: Facts, cfg: Config) -> Check:
    c = Subject("datasource-list", AREA, "datasource_list contains Azure")
    where = cfg.last_setting("datasource_list")
    if where is None:
        return c.ok("not set: cloud-init's default list and ds-identify include Azure")
    value = cfg.merged.get("datasource_list")
    names = [str(v) for v in value] if isinstance(value, list) else []
    if "Azure" not in names:
        near = [n for n in names if n.lower() == "azure"]
        why = (f"{where} lists {near[0]!r}: names are case-sensitive" if near
               else f"{where} sets datasource_list: {names}, without Azure")
        return c.error(why,
                     f"in {where}: datasource_list: [ Azure, None ]")
    if not SINGLE_LINE.search(facts.tree.read_text(where.lstrip("/")) or ""):
        return c.warning(f"{where} writes datasource_list over several lines: ds-identify "
                       "reads only the single-line form",
                       f"in {where}: datasource_list: [ {', '.join(names)} ]")
    return c.ok(f"{names} ({where})")


def _package_present(facts: Facts, pkg: str) -> bool:
    rel = pkg.replace(".", "/")
    return any(facts.tree.is_file(f"{d}/{rel}/__init__.py") for d in facts.python_dirs)


def _pkg_list(facts: Facts, cfg: Config) -> Check:
    c = Subject("datasource-pkg-list", AREA, "datasource_pkg_list selects the plug-in")
    where = cfg.last_setting("datasource_pkg_list")
    value = cfg.merged.get("datasource_pkg_list")
    if where is None:
        return c.error("no datasource_pkg_list: cloud-init uses its built-in Azure datasource",
                     f"install the plug-in's wiring /{WIRING}")
    pkgs = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    absent = [p for p in pkgs if not _package_present(facts, p)]
    if absent:
        return c.error(f"{where} lists {', '.join(absent)}, not installed: init-local "
                     "crashes (ModuleNotFoundError)",
                     f"remove {', '.join(absent)} from datasource_pkg_list or install it")
    if OUR_PKG not in pkgs:
        return c.error(f"{where} sets datasource_pkg_list: {pkgs}, replacing ours: the "
                     "built-in Azure datasource runs",
                     f"add {OUR_PKG} to that list (cloud.cfg.d files replace lists)")
    if pkgs[0] != OUR_PKG:
        return c.warning(f"{where} searches {pkgs[0]} before {OUR_PKG}: a DataSourceAzure "
                       "there would win",
                       f"put {OUR_PKG} first in datasource_pkg_list")
    return c.ok(f"{pkgs} ({where})")


def _wiring(facts: Facts, cfg: Config) -> Check:
    c = Subject("wiring", AREA, "plug-in wiring file")
    if facts.tree.is_file(WIRING):
        return c.ok(f"/{WIRING}")
    where = cfg.last_setting("datasource_pkg_list")
    if where and OUR_PKG in str(cfg.merged.get("datasource_pkg_list")):
        return c.warning(f"/{WIRING} is missing; {where} wires the plug-in instead",
                       f"keep the package's /{WIRING} and override settings in a later file")
    return c.error(f"/{WIRING} is missing",
                 "install python3-cloudinit-azure, or copy config/cloud.cfg.d/"
                 "91_cloudinit_azure.cfg into the image")


def _module_name(entry: Any) -> str:
    name = entry[0] if isinstance(entry, list) and entry else entry
    name = str(name)
    return name[3:] if name.startswith("cc_") else name


def _modules(facts: Facts, cfg: Config) -> Check:
    c = Subject("modules", AREA, "module lists match the installed modules")
    ours = {s[3:] for s in SHIMS}
    listed = {(key, _module_name(e)) for key in MODULE_LISTS
              for e in (cfg.merged.get(key) or []) if _module_name(e).startswith("azure_")}
    unknown = sorted(f"{name} (in {key})" for key, name in listed
                     if name not in ours or facts.module_path(f"cc_{name}") is None)
    if unknown:
        return c.error(f"listed but not installed: {', '.join(unknown)}: cloud-init aborts "
                     "that stage",
                     "remove the entry or install the plug-in version that has it")
    ds = ((cfg.merged.get("datasource") or {}).get("Azure") or {})
    if isinstance(ds, dict) and ds.get("insert_modules") is False:
        missing = sorted(ours - {name for _, name in listed})
        if missing:
            return c.warning(f"insert_modules is false and {', '.join(missing)} is in no "
                           "module list: it never runs",
                           "add it to cloud_init_modules (docs/configuration.md), or drop "
                           "insert_modules: false")
        return c.ok("insert_modules: false; all our modules listed")
    return c.ok("the datasource inserts our modules at boot")


def _settings(cfg: Config) -> Check:
    from cloudinit_azure import settings
    from cloudinit_azure.report import ConfigError

    c = Subject("settings", AREA, "plug-in settings validate")
    try:
        settings.load_datasource(cfg.merged)
        for ns in NAMESPACES:
            settings.load(ns, cfg.merged)
    except ConfigError as exc:
        return c.error(f"{exc}: provisioning fails at once",
                     "fix the key (docs/configuration.md lists every key)")
    return c.ok("datasource: Azure and " + ", ".join(NAMESPACES))


def _waagent_conf(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _waagent(facts: Facts) -> Check:
    """The Azure Linux Agent's configuration, judged by what its 2.7-2.12 code does.

    ``auto`` (the default) and ``cloud-init`` use its cloud-init handler, which the
    plug-in's marker (cloudinit_azure.waagent) keeps quiet; ``waagent`` provisions
    too; ``disabled`` writes the marker and reports Ready on every start, also after
    a ProvisioningFailed. ``ResourceDisk.Format=y`` (Debian's packaged default)
    formats at start any unmounted NTFS resource disk.
    """
    c = Subject("waagent", AREA, "no second provisioning agent")
    text = facts.tree.read_text("etc/waagent.conf")
    if text is None:
        return c.ok("no /etc/waagent.conf (the Azure Linux Agent)")
    conf = _waagent_conf(text)
    agent = conf.get("Provisioning.Agent", "").lower()
    enabled = conf.get("Provisioning.Enabled", "").lower()
    fix = ("set Provisioning.Agent=cloud-init in /etc/waagent.conf (the agent then only "
           "runs extensions)")
    if agent == "waagent" or (not agent and enabled == "y"
                              and conf.get("Provisioning.UseCloudInit", "n").lower() != "y"):
        setting = (f"Provisioning.Agent={agent}" if agent else "Provisioning.Enabled=y")
        return c.error(f"/etc/waagent.conf has {setting}: the agent provisions too and reports "
                     "Ready on its own", fix)
    if agent == "disabled":
        return c.error("/etc/waagent.conf has Provisioning.Agent=disabled: the agent reports "
                       "Ready on every start, also after a ProvisioningFailed", fix)
    if conf.get("ResourceDisk.Format", "n").lower() == "y" or \
            conf.get("ResourceDisk.EnableSwap", "n").lower() == "y":
        mount = conf.get("ResourceDisk.MountPoint", "/mnt/resource")
        return c.warning("/etc/waagent.conf formats the resource disk (ResourceDisk.Format/"
                         "EnableSwap=y): it races azure_resource_disk, reformatting at its "
                         "start an NTFS disk left alone as not provably empty, mounted at "
                         f"{mount}", "set ResourceDisk.Format=n and ResourceDisk.EnableSwap=n")
    return c.ok(f"/etc/waagent.conf leaves provisioning to cloud-init "
              f"(Provisioning.Agent={agent or 'unset'})")


def checks(facts: Facts) -> list[Check]:
    cfg = load(facts)
    return [_parse(cfg), _datasource_list(facts, cfg), _pkg_list(facts, cfg),
            _wiring(facts, cfg), _modules(facts, cfg), _settings(cfg), _waagent(facts)]
