"""The one seam through which the plug-in runs programs.

Core code that must run a program takes a ``Runner`` argument (it has no
default); tests pass the shared fake (``tests/fakes.py``), which records the
command lines and never runs one; the adapters pass :func:`run`, through
:class:`cloudinit_azure.host.Host`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class CommandError(Exception):
    def __init__(self, cmd: Sequence[str], result: Result) -> None:
        self.cmd = list(cmd)
        self.result = result
        super().__init__(
            f"{' '.join(self.cmd)} exited {result.returncode}: {result.stderr.strip()}"
        )


class Runner(Protocol):
    """What runs a program: :func:`run` on the machine, a fake in the tests."""

    def __call__(self, cmd: Sequence[str], *, input: Optional[str] = None,
                 check: bool = True, timeout: Optional[float] = ...) -> Result: ...


def run(cmd: Sequence[str], *, input: Optional[str] = None, check: bool = True,
        timeout: Optional[float] = 120.0) -> Result:
    """Run ``cmd`` (never through a shell); raise CommandError when ``check``."""
    proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True,
                          timeout=timeout, check=False)
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(cmd, result)
    return result
