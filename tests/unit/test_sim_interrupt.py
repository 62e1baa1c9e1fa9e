"""azure_sim.interrupt: SIGTERM/SIGHUP take Ctrl-C's clean-up path."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from azure_sim import interrupt

REPO = Path(__file__).resolve().parents[2]


def test_exit_codes():
    assert interrupt.exit_code(KeyboardInterrupt()) == 130
    assert interrupt.exit_code(interrupt.Terminated(signal.SIGTERM)) == 143
    assert isinstance(interrupt.Terminated(signal.SIGHUP), KeyboardInterrupt)


def test_sigterm_runs_finally_blocks(tmp_path):
    """The point of it: a finally block (a boot's clean-up) runs on kill PID."""
    marker = tmp_path / "cleaned"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from azure_sim import interrupt
        assert interrupt.install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt as exc:
            sys.exit(interrupt.exit_code(exc))
        finally:
            open({str(marker)!r}, "w").close()
    """)
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'tools'}")
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=30)
    assert proc.returncode == 143
    assert marker.exists()


def test_a_handler_someone_installed_is_kept(monkeypatch):
    calls = []
    monkeypatch.setattr(interrupt.signal, "getsignal", lambda s: calls.append(s) or print)
    monkeypatch.setattr(interrupt.signal, "signal",
                        lambda *a: pytest.fail("replaced a handler"))
    assert interrupt.install()
    assert calls == list(interrupt.SIGNALS)
