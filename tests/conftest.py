"""Every test session: a ``kill PID`` cleans up as Ctrl-C does.

Without this, SIGTERM ends pytest at once and a boot in progress leaves its
sandbox supervisor or QEMU (in their own sessions) running; with it, the
signal raises ``KeyboardInterrupt`` and each boot's clean-up runs.
"""

from azure_sim import interrupt


def pytest_configure(config):
    interrupt.install()
