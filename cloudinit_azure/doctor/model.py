"""What one check says: a status, one line why, one line how to fix (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

OK = "ok"
WARNING = "warning"
ERROR = "error"
STATUSES = (OK, WARNING, ERROR)
EXIT = {OK: 0, WARNING: 1, ERROR: 2}


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    ``area`` groups the report: ``azure`` (the requirements Azure documents
    for Linux images), ``plugin`` (what this plug-in itself calls or needs)
    and ``config`` (cloud-init configuration and conflicting settings).
    """

    id: str
    area: str
    title: str
    status: str
    why: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.status != OK and not self.fix:
            raise ValueError(f"check {self.id} is {self.status} but says no fix")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Subject:
    """What one check is about; its methods make the outcome."""

    id: str
    area: str
    title: str

    def ok(self, why: str) -> Check:
        return Check(self.id, self.area, self.title, OK, why)

    def warning(self, why: str, fix: str) -> Check:
        return Check(self.id, self.area, self.title, WARNING, why, fix)

    def error(self, why: str, fix: str) -> Check:
        return Check(self.id, self.area, self.title, ERROR, why, fix)


def install(package: str) -> str:
    """The usual fix: the Debian package that provides what is missing."""
    return f"install {package} (Debian: apt-get install {package})"


def exit_code(checks: Iterable[Check]) -> int:
    """0 when all are ok, 1 when the worst is a warning, 2 on any error."""
    return max((EXIT[c.status] for c in checks), default=0)
