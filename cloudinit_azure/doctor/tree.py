"""Read-only access to a root tree (a running system's ``/`` or an image).

An image tree's absolute symlinks (``/usr/bin/python3 -> python3.11``,
``/sbin -> usr/sbin``, alternatives) point into the image, not into the
machine that runs the doctor, so every path is resolved inside the root as
``chroot`` would. Nothing here writes, executes or follows a path out of the
tree.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# Where programs live, in the order a root shell's PATH searches them.
PATH_DIRS = ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin")
MAX_LINKS = 40


class RootError(Exception):
    """The path is not a root tree the doctor can read."""


@dataclass(frozen=True)
class Tree:
    root: Path

    @classmethod
    def open(cls, root: os.PathLike | str) -> Tree:
        """Check that ``root`` is a readable root tree (has etc/ and usr/)."""
        path = Path(root)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise RootError(f"{path} does not exist") from None
        except OSError as exc:
            raise RootError(f"{path} cannot be read: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise RootError(f"{path} is not a directory, so not a root tree")
        try:
            names = set(os.listdir(path))
        except OSError as exc:
            raise RootError(f"{path} cannot be read: {exc.strerror}") from None
        missing = [d for d in ("etc", "usr") if d not in names]
        if missing:
            raise RootError(f"{path} is not a root tree (no {' or '.join(missing)}/ in it)")
        tree = cls(path)
        for d in ("etc", "usr"):
            target = tree.resolve(d)
            if target is None or not target.is_dir():
                raise RootError(f"{path} is not a root tree ({d} is not a directory)")
            try:
                os.listdir(target)
            except OSError as exc:
                raise RootError(f"{path}/{d} cannot be read: {exc.strerror}") from None
        return tree

    def resolve(self, rel: str) -> Optional[Path]:
        """The host path of ``rel`` with symlinks followed inside the root.

        None when a component is missing or the links loop.
        """
        parts = [p for p in rel.strip("/").split("/") if p not in ("", ".")]
        done: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            host = self.root.joinpath(*done, part)
            try:
                st = os.lstat(host)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    return None
                try:
                    target = os.readlink(host)
                except OSError:
                    return None
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            done.append(part)
        return self.root.joinpath(*done)

    def real(self, rel: str) -> Optional[str]:
        """``rel`` with every symlink followed, as a path inside the tree."""
        path = self.resolve(rel)
        if path is None:
            return None
        inner = os.path.relpath(path, self.root)
        return "/" if inner == "." else "/" + inner

    def is_file(self, rel: str) -> bool:
        path = self.resolve(rel)
        return path is not None and path.is_file()

    def is_dir(self, rel: str) -> bool:
        path = self.resolve(rel)
        return path is not None and path.is_dir()

    def is_executable(self, rel: str) -> bool:
        path = self.resolve(rel)
        if path is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

    def read_bytes(self, rel: str, limit: Optional[int] = None) -> Optional[bytes]:
        path = self.resolve(rel)
        if path is None or not path.is_file():
            return None
        try:
            with open(path, "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        except OSError:
            return None

    def read_text(self, rel: str) -> Optional[str]:
        data = self.read_bytes(rel)
        return None if data is None else data.decode("utf-8", "replace")

    def listdir(self, rel: str) -> list[str]:
        path = self.resolve(rel)
        if path is None or not path.is_dir():
            return []
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def glob(self, rel_dir: str, pattern: str) -> list[str]:
        """Names in ``rel_dir`` matching a regular expression (full match)."""
        rx = re.compile(pattern)
        return [posixpath.join(rel_dir, n) for n in self.listdir(rel_dir) if rx.fullmatch(n)]

    def which(self, name: str) -> Optional[str]:
        """The first executable ``name`` on a root shell's PATH, as a tree path."""
        for d in PATH_DIRS:
            rel = f"{d}/{name}"
            if self.is_executable(rel):
                return "/" + rel
        return None

    def contains(self, rel: str, pattern: bytes) -> Optional[re.Match[bytes]]:
        """Search a (binary) file for ``pattern``; the first match or None."""
        data = self.read_bytes(rel)
        return None if data is None else re.search(pattern, data)
