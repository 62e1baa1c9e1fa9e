"""Marking and skipping a test tier (integration, vm) by what the machine lacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional


def mark_tier(items: list, here: Path, marker: Any, missing: Callable[[], Optional[str]],
              exempt: Callable[[Any], bool] = lambda item: False) -> None:
    """Give every test under ``here`` ``marker``; skip it with ``missing()``'s reason.

    ``missing`` is asked once, and only if a test of the tier was collected.
    """
    import pytest

    reason = None
    for item in items:
        if here not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(marker)
        if exempt(item):
            continue
        if reason is None:
            reason = missing() or ""
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def skip_or_fail(reason: str) -> None:
    """Skip a test the machine cannot run; in the VM tier under ``CI=true``, fail instead."""
    import os

    import pytest

    if os.environ.get("CI") == "true" and os.environ.get("AZURE_SIM_VM") == "1":
        pytest.fail(f"under CI=true: {reason}")
    pytest.skip(reason)
