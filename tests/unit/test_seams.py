"""The core never defaults to the real machine: the adapters pass the seam in."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil
import subprocess
from pathlib import Path

import cloudinit_azure
from cloudinit_azure import runner

# Adapters (they import cloud-init or are command lines) build the real Host.
ADAPTERS = ("cloudinit_azure.sources", "cloudinit_azure.modules", "cloudinit_azure.doctor",
            "cloudinit_azure.__main__", "cloudinit_azure.network.__main__",
            "cloudinit_azure.host")
REAL = {id(runner.run): "runner.run", id(os.kill): "os.kill",
        id(subprocess.run): "subprocess.run", id(os.mknod): "os.mknod",
        id(os.statvfs): "os.statvfs"}


def _core_modules():
    for info in pkgutil.walk_packages(cloudinit_azure.__path__, "cloudinit_azure."):
        if not info.name.startswith(ADAPTERS):
            yield importlib.import_module(info.name)


def _real(name: str, value: object) -> str:
    if id(value) in REAL:
        return REAL[id(value)]
    if name == "root" and str(value) == "/" and isinstance(value, (str, Path)):
        return "root /"
    return ""


def _defaults(obj: object):
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield f.name, f.default
    functions = [obj] if inspect.isfunction(obj) else [
        v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) else []
    for fn in functions:
        for p in inspect.signature(fn).parameters.values():
            yield p.name, p.default


def test_no_core_signature_defaults_to_the_real_machine():
    found = []
    for mod in _core_modules():
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found += [f"{mod.__name__}.{name}({param}={what})"
                          for param, default in _defaults(obj)
                          if (what := _real(param, default))]
    assert found == []


def test_the_check_sees_a_real_default():
    def bad(cmd, runner=runner.run, root="/"):
        return cmd

    assert [w for p, d in _defaults(bad) if (w := _real(p, d))] == ["runner.run", "root /"]
