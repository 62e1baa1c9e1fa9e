from __future__ import annotations

import pytest

from cloudinit_azure import identity
from cloudinit_azure.runner import Result
from tests.fakes import FakeRunner

A = "aabbccdd-eeff-0011-2233-445566778899"
A_SWAPPED = "ddccbbaa-ffee-1100-2233-445566778899"


@pytest.mark.parametrize(
    "uuid, swapped",
    [
        (A, A_SWAPPED),
        (A_SWAPPED, A),
        (A.upper(), A_SWAPPED),
        ("12345678-9abc-def0-1234-56789abcdef0", "78563412-bc9a-f0de-1234-56789abcdef0"),
        ("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"),
    ],
)
def test_byte_swap(uuid, swapped):
    assert identity.byte_swap(uuid) == swapped
    assert identity.byte_swap(identity.byte_swap(uuid)) == uuid.lower()


@pytest.mark.parametrize("bad", ["", "not-a-uuid", A[:-1], A + "0", A.replace("-", ""),
                                 "gabbccdd-eeff-0011-2233-445566778899", " " + A, A + "\n"])
def test_byte_swap_rejects_invalid(bad):
    with pytest.raises(ValueError):
        identity.byte_swap(bad)


@pytest.mark.parametrize(
    "system_uuid, previous, expected",
    [
        (A, None, A),
        (A.upper(), None, A),
        (A, "", A),
        (A, A, A),
        (A, A.upper(), A.upper()),             # case only: keep previous verbatim
        (A.upper(), A, A),
        (A, A_SWAPPED, A_SWAPPED),             # Gen1 <-> Gen2: keep previous
        (A_SWAPPED.upper(), A, A),
        (A, A_SWAPPED.upper(), A_SWAPPED.upper()),
        (A, "11111111-2222-3333-4444-555555555555", A),   # really a new VM
        (A, "ddccbbaa-ffee-1100-2233-445566778890", A),   # last fields differ
        (A, "iid-datasource-none", A),         # previous from another datasource
    ],
)
def test_instance_id(system_uuid, previous, expected):
    assert identity.instance_id(system_uuid, previous) == expected


def test_instance_id_rejects_invalid_system_uuid():
    with pytest.raises(ValueError):
        identity.instance_id("Not Settable", None)


def _dmi(tmp_path, text):
    d = tmp_path / "class" / "dmi" / "id"
    d.mkdir(parents=True)
    (d / "product_uuid").write_text(text)
    return tmp_path


def test_read_system_uuid_from_sysfs(tmp_path):
    assert identity.read_system_uuid(_dmi(tmp_path, A.upper() + "\n")) == A


@pytest.mark.parametrize("text", ["", "garbage\n",
                                  "00000000-0000-0000-0000-000000000000\n",
                                  "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF\n"])
def test_read_system_uuid_invalid_is_none(tmp_path, text):
    calls = []
    assert identity.read_system_uuid(_dmi(tmp_path, text),
                                     runner=lambda *a, **k: calls.append(a)) is None
    assert calls == []  # sysfs answered; dmidecode is only for a missing file


def test_read_system_uuid_falls_back_to_dmidecode(tmp_path):
    out = f"# SMBIOS entry point at 0x000f0000\n{A.upper()}\n"
    runner = FakeRunner(default=Result(0, out, ""))
    assert identity.read_system_uuid(tmp_path, runner) == A
    assert runner.calls == [["dmidecode", "-s", "system-uuid"]]


def test_read_system_uuid_without_runner(tmp_path):
    assert identity.read_system_uuid(tmp_path) is None


@pytest.mark.parametrize("runner", [
    FakeRunner(default=Result(1, "", "/dev/mem: Permission denied")),
    FakeRunner(default=Result(0, "Not Settable\n", "")),
    FakeRunner(default=Result(0, "", "")),
    FakeRunner(default=FileNotFoundError("dmidecode")),
])
def test_read_system_uuid_dmidecode_failures(tmp_path, runner):
    assert identity.read_system_uuid(tmp_path, runner) is None
