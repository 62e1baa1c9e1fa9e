"""tools/azure-sim runs from a clone by itself: it finds .venv, or says what to run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "azure-sim"
BARE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


@pytest.mark.skipif(not (REPO / ".venv/bin/python").exists(), reason="make deps first")
def test_runs_directly_and_through_a_symlink(tmp_path):
    # PATH has no venv: the shebang's python3 is the machine's, which lacks pycdlib
    link = tmp_path / "azure-sim"
    link.symlink_to(SCRIPT)
    for argv in ([str(SCRIPT), "--help"], [str(link), "boot", "--help"]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=BARE_ENV,
                              cwd=tmp_path, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage: azure-sim")


def test_without_venv_says_in_one_line_what_to_run(tmp_path):
    clone = tmp_path / "clone"
    (clone / "tools").mkdir(parents=True)
    shutil.copy2(SCRIPT, clone / "tools" / "azure-sim")
    # -S: no site-packages, as on a fresh machine without the project's deps
    proc = subprocess.run(["/usr/bin/python3", "-S", str(clone / "tools/azure-sim"), "boot"],
                          capture_output=True, text=True, env=BARE_ENV, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "run 'make deps' in " + str(clone) in lines[0]
    assert "Traceback" not in proc.stderr


def test_make_deps_links_the_command_into_the_venv():
    text = (REPO / "Makefile").read_text()
    assert "ln -sf ../../tools/azure-sim $(VENV)/bin/azure-sim" in text
    if (REPO / ".venv/bin/azure-sim").exists():
        assert os.path.realpath(REPO / ".venv/bin/azure-sim") == str(SCRIPT)
