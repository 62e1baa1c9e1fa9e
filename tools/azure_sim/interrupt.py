"""SIGTERM and SIGHUP take the same clean-up path as Ctrl-C.

Python ends a process on SIGTERM without running ``finally`` blocks or
``except BaseException`` handlers, so a ``kill PID`` (CI cancelling a job, a
terminal closing) would leave the loop devices, the sandbox's namespace
supervisor or a QEMU behind. Every process that makes such resources (the
``azure-sim`` command, the test sessions) calls :func:`install` once: the
signal then raises :class:`Terminated`, a ``KeyboardInterrupt``, and each
boot's own clean-up runs as it does for Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Optional

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal other than SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, _frame: Optional[FrameType]) -> None:
    raise Terminated(signum)


def install() -> bool:
    """Route SIGTERM/SIGHUP to :class:`Terminated`; False off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for signum in SIGNALS:
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _raise)
    return True


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128+N for signal N."""
    return exc.exit_code if isinstance(exc, Terminated) else 130
