"""The encoded provisioning report: always encodable, always complete at its end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudinit_azure import kvp
from cloudinit_azure.report import (
    DOCUMENTATION_URL,
    FIELDS,
    MAX_DESCRIPTION,
    InvalidUserNameError,
    ProvisioningError,
    Report,
    decode_report,
    printable,
)
from tests.fuzz import fuzz

SURROGATE = "x\ud800y"


@pytest.mark.parametrize("field", ["user", "hostname", "vm_id"])
def test_a_lone_surrogate_anywhere_still_encodes_and_sends(field, tmp_path):
    error = InvalidUserNameError(**({} if field == "vm_id" else {field: SURROGATE}))
    report = Report.from_error(error, vm_id=SURROGATE if field == "vm_id" else "v")
    for text in (report.encode(), report.encode(max_len=MAX_DESCRIPTION)):
        text.encode("utf-8")
        assert "x\\ud800y" in text
        assert decode_report(text)["documentation_url"] == DOCUMENTATION_URL
    pool = tmp_path / "pool"
    assert kvp.report_to_kvp(pool, report.encode()) is True
    assert kvp.read(pool, lock=False)[0][1].startswith("result=error|")
    str(error).encode("utf-8")  # the log line too


def test_line_breaks_in_supporting_data_are_quoted():
    text = Report.from_error(ProvisioningError(detail="a\r\nb", other="c\nd")).encode()
    assert "'detail=a\r\nb'" in text and "'other=c\nd'" in text
    assert decode_report(text)["detail"] == "a\r\nb"


def test_control_characters_become_escapes():
    assert printable("a\x00b\x1bc\td") == "a\\x00b\\x1bc\td"


def test_a_600_character_vm_id_leaves_the_documentation_url_whole():
    report = Report.from_error(ProvisioningError(detail="d" * 300), vm_id="v" * 600)
    for limit in (None, MAX_DESCRIPTION, 1024):
        text = report.encode(max_len=limit)
        assert text.endswith(f"|documentation_url={DOCUMENTATION_URL}")
        assert limit is None or len(text) <= limit
        assert len(decode_report(text)["vm_id"]) <= 64


def test_by_default_a_report_fits_what_azure_reads_of_kvp():
    error = ProvisioningError(**{f"k{i}": "v" * 200 for i in range(20)})
    text = Report.from_error(error, vm_id="v" * 36).encode()
    assert len(text) <= 1024 and text.endswith(DOCUMENTATION_URL)
    assert len(Report.from_error(error).encode(max_len=None)) > 1024


def test_even_a_tiny_limit_keeps_the_url():
    text = Report("error", "r" * 150, {}, "v" * 36).encode(max_len=120)
    assert text.endswith(DOCUMENTATION_URL) and len(text) <= 120


def test_an_object_whose_str_fails_is_named_not_raised():
    class Bad:
        def __str__(self):
            raise RuntimeError("no")

    assert "<Bad>" in Report.from_error(ProvisioningError(thing=Bad())).encode()


@fuzz
@given(st.text(), st.dictionaries(st.text(max_size=20).filter(lambda k: k not in FIELDS),
                                   st.text(), max_size=5),
       st.one_of(st.none(), st.text()), st.sampled_from([None, 512, 1024]))
def test_any_text_gives_an_encodable_report_ending_in_the_url(reason, data, vm_id, limit):
    text = Report("error", reason or None, data, vm_id).encode(max_len=limit)
    text.encode("utf-8")
    assert text.endswith(DOCUMENTATION_URL)
    assert limit is None or len(text) <= limit
    assert decode_report(text)["result"] == "error"
