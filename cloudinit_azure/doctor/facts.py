"""What an image holds, read from its files: packages, Python, versions (pure reads).

Versions come from the package database where there is one (dpkg's
``status``), else from the files themselves (the interpreter's name, the
library's soname, the version string compiled into a binary). Nothing in the
tree is executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

from cloudinit_azure.doctor.tree import Tree

Version = tuple[int, ...]

LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/lib64", "usr/lib",
            "lib/x86_64-linux-gnu", "lib64", "lib")


def parse_version(text: Optional[str]) -> Optional[Version]:
    """The leading dotted numbers of a version (``1:9.2p1-2`` -> (9, 2))."""
    if not text:
        return None
    text = text.split(":", 1)[1] if re.match(r"^\d+:", text) else text
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def show(version: Optional[Version]) -> str:
    return ".".join(str(p) for p in version) if version else "unknown"


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed packages of a dpkg ``status`` file: name -> version."""
    out: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            out[fields["Package"]] = fields.get("Version", "")
    return out


@dataclass
class Facts:
    """Lazily computed facts about one tree."""

    tree: Tree

    @cached_property
    def packages(self) -> Optional[dict[str, str]]:
        """dpkg's installed packages, or None when the tree has no dpkg database."""
        text = self.tree.read_text("var/lib/dpkg/status")
        return None if text is None else parse_dpkg_status(text)

    def package_version(self, name: str) -> Optional[Version]:
        return parse_version((self.packages or {}).get(name))

    @cached_property
    def os_name(self) -> str:
        text = self.tree.read_text("etc/os-release") or self.tree.read_text(
            "usr/lib/os-release") or ""
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
        return m.group(1) if m else "unknown OS"

    @cached_property
    def python(self) -> Optional[tuple[str, Version]]:
        """The tree's python3 (tree path) and its version, from its real name."""
        exe = self.tree.which("python3")
        if exe is None:
            return None
        real = self.tree.real(exe) or exe
        m = re.search(r"python(\d+)\.(\d+)$", real)
        if m:
            return exe, (int(m.group(1)), int(m.group(2)))
        libs = [n for n in self.tree.listdir("usr/lib") if re.fullmatch(r"python3\.\d+", n)
                and self.tree.is_file(f"usr/lib/{n}/os.py")]
        if libs:
            newest = max(libs, key=lambda n: int(n.split(".")[1]))
            return exe, (3, int(newest.split(".")[1]))
        return exe, ()

    @cached_property
    def python_dirs(self) -> list[str]:
        """Where the tree's python3 finds modules (Debian's and upstream's layouts)."""
        dirs = ["usr/lib/python3/dist-packages", "usr/local/lib/python3/dist-packages"]
        for base in ("usr/lib", "usr/lib64", "usr/local/lib"):
            for name in self.tree.listdir(base):
                if re.fullmatch(r"python3\.\d+", name):
                    dirs += [f"{base}/{name}", f"{base}/{name}/site-packages",
                             f"{base}/{name}/dist-packages"]
        return [d for d in dirs if self.tree.is_dir(d)]

    def module_path(self, name: str) -> Optional[str]:
        """Where the tree's Python would import top-level ``name`` from, if anywhere."""
        for d in self.python_dirs:
            for rel in (f"{d}/{name}/__init__.py", f"{d}/{name}.py"):
                if self.tree.is_file(rel):
                    return "/" + rel
            for entry in self.tree.listdir(d):
                if entry.startswith(name + ".") and entry.endswith(".so"):
                    return f"/{d}/{entry}"
        return None

    @cached_property
    def cloud_init_version(self) -> Optional[str]:
        """``cloudinit/version.py``'s ``__VERSION__``; dpkg's version as a fallback."""
        path = self.module_path("cloudinit")
        if path:
            text = self.tree.read_text(path.rsplit("/", 1)[0] + "/version.py") or ""
            m = re.search(r'__VERSION__\s*=\s*["\']([^"\']+)', text)
            if m:
                return m.group(1)
        dpkg = (self.packages or {}).get("cloud-init")
        return dpkg.split("-")[0] if dpkg else None

    def library(self, pattern: str) -> Optional[str]:
        """The first shared library whose file name fully matches ``pattern``."""
        for d in LIB_DIRS:
            hits = self.tree.glob(d, pattern)
            if hits:
                return "/" + sorted(hits)[-1]
        return None

    def binary_version(self, rel: Optional[str], pattern: bytes) -> Optional[Version]:
        """A version string compiled into a binary (``OpenSSH_9.2``)."""
        if rel is None:
            return None
        m = self.tree.contains(rel, pattern)
        return parse_version(m.group(1).decode()) if m else None
