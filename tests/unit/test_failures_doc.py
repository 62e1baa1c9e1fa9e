"""docs/failures.md is generated from the error classes and must be current."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import failures_doc  # noqa: E402

from cloudinit_azure import report  # noqa: E402


def test_doc_is_current():
    text = failures_doc.render()
    assert failures_doc.DOC.read_text() == text, \
        f"docs/failures.md is out of date: {failures_doc.REGENERATE}"


def test_every_error_class_is_documented_with_its_reason():
    text = failures_doc.DOC.read_text()
    classes = failures_doc.error_classes()
    assert report.OvfError in classes and report.ConfigError in classes
    for cls in classes:
        assert f"### {cls.__name__}\n" in text
        assert f"`reason={cls.reason}`" in text


def test_report_classes_say_what_to_do():
    # the classes of report.py carry their own guidance (others may inherit)
    own = [c for c in failures_doc.error_classes()
           if c.__module__.startswith(report.__name__ + ".")]
    assert own
    for cls in own:
        assert cls.__dict__.get("what_to_do"), f"{cls.__name__} has no what_to_do"
        assert cls.__dict__.get("__doc__"), f"{cls.__name__} has no docstring"


def test_check_mode_names_the_fix(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "failures.md"
    stale.write_text("old\n")
    monkeypatch.setattr(failures_doc, "DOC", stale)
    assert failures_doc.main(["--check"]) == 1
    assert "run 'make docs'" in capsys.readouterr().err
    assert failures_doc.main([]) == 0
    assert failures_doc.main(["--check"]) == 0


def test_every_error_class_lives_in_report():
    """One error hierarchy, in one package: the doc and the report mapping read it there."""
    elsewhere = [f"{c.__module__}.{c.__name__}" for c in failures_doc.error_classes()
                 if not c.__module__.startswith(report.__name__ + ".")]
    assert elsewhere == []
