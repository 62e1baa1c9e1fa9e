"""Every failure is one class with a fixed reason; raise sites pass only supporting data."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from cloudinit_azure import account, report
from cloudinit_azure.report import (
    ApplyError,
    InvalidKeyPairPathError,
    KeyPairOutsideHomeError,
    ProvisioningError,
    Report,
    ReservedUserNameError,
    UserConfigError,
    decode_report,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import failures_doc  # noqa: E402

CLASSES = failures_doc.error_classes()
NAMES = {c.__name__ for c in CLASSES}


def reason_passing_calls(package: Path, names: set[str]) -> list[str]:
    """``module:line Class`` for every call of an error class that passes a reason
    (a positional argument or ``reason=``)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) else None)
            if name in names and (node.args or any(k.arg == "reason" for k in node.keywords)):
                found.append(f"{path.relative_to(package.parent)}:{node.lineno} {name}")
    return found


def test_no_raise_in_the_plugin_passes_a_reason():
    assert reason_passing_calls(REPO / "cloudinit_azure", NAMES) == []


def test_the_scan_finds_a_passed_reason(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "def f(x):\n"
        "    raise OvfError('ovf-env.xml is not well-formed XML', line=1)\n"
        "def g(x):\n"
        "    raise report.UserConfigError(reason=f'invalid {x} name')\n"
        "def h(x):\n"
        "    raise ValueError('not ours')\n"
        "def k(x):\n"
        "    raise OvfError(element=x)\n")
    assert reason_passing_calls(pkg, {"OvfError", "UserConfigError"}) == [
        "pkg/a.py:2 OvfError", "pkg/a.py:4 UserConfigError"]


def test_the_constructor_refuses_a_reason():
    with pytest.raises(TypeError):
        ReservedUserNameError("some other text")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes no reason"):
        ProvisioningError(reason="free text")
    with pytest.raises(TypeError, match="vm_id is a report field"):
        ProvisioningError(vm_id="v")


def test_every_class_has_its_own_reason_docstring_and_what_to_do():
    assert len(CLASSES) > 40
    for cls in CLASSES:
        assert cls.__module__.startswith(report.__name__ + ".")
        assert getattr(report, cls.__name__) is cls  # one import: cloudinit_azure.report
        for attr in ("reason", "__doc__", "what_to_do"):
            assert cls.__dict__.get(attr), f"{cls.__name__} has no own {attr}"
    reasons = [c.reason for c in CLASSES]
    assert sorted(reasons) == sorted(set(reasons)), "two classes share a reason"


def test_a_reason_is_fixed_and_the_detail_is_supporting_data():
    err = ApplyError(step="host name", exc=OSError("hostnamectl broke"))
    decoded = decode_report(Report.from_error(err).encode())
    assert decoded["reason"] == "error applying provisioning"
    assert (decoded["step"], decoded["exception"], decoded["detail"]) == (
        "host name", "OSError", "hostnamectl broke")


def test_subclasses_are_still_caught_as_their_family():
    with pytest.raises(UserConfigError) as err:
        account.validate_username("root")
    assert type(err.value) is ReservedUserNameError
    assert err.value.reason == "reserved user name"
    assert issubclass(KeyPairOutsideHomeError, InvalidKeyPairPathError)
