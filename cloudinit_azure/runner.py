"""The one seam through which the plug-in runs programs.

Core code that must run a program takes a ``Runner`` argument; tests pass a
fake that records the command lines, the adapters pass :func:`run`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Callable, Optional, Sequence


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


Runner = Callable[..., Result]


def run(cmd: Sequence[str], *, input: Optional[str] = None, check: bool = True,
        timeout: Optional[float] = 120.0) -> Result:
    """Run ``cmd`` (never through a shell); raise CommandError when ``check``."""
    proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True,
                          timeout=timeout, check=False)
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(cmd, result)
    return result
