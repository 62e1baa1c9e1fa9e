"""House rule: no module over 400 lines (a merge pushed flow.py to 406 unnoticed)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p for base in ("cloudinit_azure", "tools/azure_sim")
                 for p in (REPO / base).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(REPO)) for p in MODULES])
def test_no_module_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400, path
