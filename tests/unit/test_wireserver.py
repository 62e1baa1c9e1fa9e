"""Wireserver: option 245, goal state, health XML, and the client on loopback."""

from __future__ import annotations

import errno

import pytest
import urllib3.util.connection
from hypothesis import given
from hypothesis import strategies as st

from cloudinit_azure.report import (
    MAX_DESCRIPTION,
    CertificateError,
    GoalStateError,
    Report,
    WireserverError,
    decode_report,
)
from cloudinit_azure.wireserver import (
    DEFAULT_WIRESERVER,
    GOAL_STATE_PATH,
    HEALTH_PATH,
    GoalState,
    WireserverClient,
    parse_goal_state,
    parse_health,
    parse_option_245,
    render_health,
    wireserver_address,
)
from tests.fuzz import fuzz
from tests.unit.test_http import FakeClock, Reply, ScriptedServer

GOAL_STATE = b"""<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
           xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>3</Incarnation>
  <Machine>
    <ExpectedState>Started</ExpectedState>
    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>
  </Machine>
  <Container>
    <ContainerId>9f2c3a0e-6f7b-4c1e-8d8a-1a2b3c4d5e6f</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>5c1d8bc5-0e4e-4b0e-9d2a-2f1f1b0c6a11.vm0</InstanceId>
        <State>Started</State>
        <Configuration>
          <HostingEnvironmentConfig>http://168.63.129.16:80/machine/x?comp=config</HostingEnvironmentConfig>
          <Certificates>http://168.63.129.16:80/machine/9f2c?comp=certificates&amp;incarnation=3</Certificates>
        </Configuration>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>
"""
GS = GoalState("3", "9f2c3a0e-6f7b-4c1e-8d8a-1a2b3c4d5e6f",
               "5c1d8bc5-0e4e-4b0e-9d2a-2f1f1b0c6a11.vm0",
               "http://168.63.129.16:80/machine/9f2c?comp=certificates&incarnation=3")


# --- option 245 ----------------------------------------------------------------

DHCLIENT_LEASES = """\
lease {
  interface "eth0";
  fixed-address 10.0.0.4;
  option unknown-245 a8:3f:81:10;
  renew 2 2024/01/02 03:04:05;
}
lease {
  interface "eth0";
  fixed-address 10.0.0.4;
  option subnet-mask 255.255.255.0;
  option unknown-245 a:b:c:d;
  option dhcp-server-identifier 168.63.129.16;
}
"""


def test_dhclient_last_lease_wins_and_one_digit_parts():
    assert parse_option_245(DHCLIENT_LEASES) == "10.11.12.13"


def test_dhclient_single_lease():
    assert parse_option_245('lease {\n  option unknown-245 a8:3f:81:10;\n}\n') \
        == "168.63.129.16"


def test_dhclient_string_form_with_octal_escapes():
    # dhclient prints an option it deems text as a quoted, C-escaped string.
    text = 'lease {\n  option unknown-245 "\\250?\\201\\020";\n}\n'
    assert parse_option_245(text) == "168.63.129.16"
    assert parse_option_245('option unknown-245 "ABCD";') == "65.66.67.68"


@pytest.mark.parametrize("text", [
    "unknown_245=a8:3f:81:10\n",                           # dhclient exit-hook env
    "new_unknown_245='a8:3f:81:10'\n",
    "interface='eth0'\nunknown_245='a83f8110'\nrouters='10.0.0.1'\n",  # dhcpcd --dumplease
    "option_245=168.63.129.16\n",                          # dhcpcd with a `define`
    "# This is private data. Do not parse.\nADDRESS=10.0.0.4\nOPTION_245=A83F8110\n",
    "opt245=a83f8110\n",                                   # busybox udhcpc env
    "export opt245='a83f8110'\n",
])
def test_other_clients_forms(text):
    assert parse_option_245(text) == "168.63.129.16"


@pytest.mark.parametrize("text", [
    "", "lease {\n  option routers 10.0.0.1;\n}\n",
    "option unknown-2450 a8:3f:81:10;",
    "option unknown-245 zz:3f:81:10;",
    "OPTION_245=A83F81",
    'option unknown-245 "ab\\001;',            # unterminated quote: not four octets
    'option unknown-245 "abc;',
    "unknown_245='a83f8110\n",
    "option unknown-245 0:0:0:0;", "unknown_245=00000000\n", "option_245=0.0.0.0\n",
    "option_245=255.255.255.255\n", "option unknown-245 e0:0:0:1;",
])
def test_no_usable_option_245(text):
    assert parse_option_245(text) is None


def test_garbage_later_lease_does_not_hide_a_good_one():
    assert parse_option_245("unknown_245=a8:3f:81:10\nunknown_245=nonsense\n") \
        == "168.63.129.16"


def test_wireserver_address_takes_first_usable_candidate():
    assert wireserver_address([None, "", "bogus", "10.1.2.3", "10.9.9.9"]) == "10.1.2.3"
    assert wireserver_address(["a8:3f:81:11"]) == "168.63.129.17"
    assert wireserver_address(["0.0.0.0", None]) == DEFAULT_WIRESERVER
    assert wireserver_address([]) == DEFAULT_WIRESERVER
    assert wireserver_address([None], default="127.0.0.1") == "127.0.0.1"


# --- goal state ----------------------------------------------------------------

def test_parse_goal_state():
    assert parse_goal_state(GOAL_STATE) == GS


def test_goal_state_without_certificates():
    xml = GOAL_STATE.replace(b"<Certificates>", b"<!--").replace(b"</Certificates>", b"-->")
    assert parse_goal_state(xml).certificates_url is None
    empty = GOAL_STATE.split(b"<Certificates>")[0] + b"<Certificates/>" + \
        GOAL_STATE.split(b"</Certificates>")[1]
    assert parse_goal_state(empty).certificates_url is None


def test_goal_state_in_a_default_namespace():
    xml = GOAL_STATE.replace(b"<GoalState ", b'<GoalState xmlns="urn:x" ')
    assert parse_goal_state(xml) == GS


@pytest.mark.parametrize("element,path", [
    (b"Incarnation", "Incarnation"),
    (b"ContainerId", "Container/ContainerId"),
    (b"InstanceId", "Container/RoleInstanceList/RoleInstance/InstanceId"),
])
def test_missing_required_element(element, path):
    xml = GOAL_STATE.replace(b"<" + element + b">", b"<X" + element + b">") \
        .replace(b"</" + element + b">", b"</X" + element + b">")
    with pytest.raises(GoalStateError) as info:
        parse_goal_state(xml)
    assert info.value.reason == "error parsing goal state"
    assert info.value.supporting_data["detail"] == f"missing {path}"


def test_empty_required_element_counts_as_missing():
    with pytest.raises(GoalStateError):
        parse_goal_state(GOAL_STATE.replace(b"<Incarnation>3</Incarnation>",
                                            b"<Incarnation> </Incarnation>"))


@pytest.mark.parametrize("xml, detail", [
    (b"", "not well-formed"), (b"<GoalState>", "not well-formed"),
    (b"not xml", "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><GoalState>&a;</GoalState>',
     "declares a DTD or entity"),
    (b'<?xml version="1.0" encoding="nope"?><GoalState/>', "declares an encoding"),
    (b'<?xml version="1.0" encoding="UTF-32"?><GoalState/>', "declares an encoding"),
    (b'<?xml version="1.0" encoding="utf-7"?><GoalState/>', "declares an encoding"),
])
def test_bad_goal_state_xml(xml, detail):
    with pytest.raises(GoalStateError) as info:
        parse_goal_state(xml)
    assert info.value.reason == "error parsing goal state"
    assert detail in info.value.supporting_data["detail"]


def test_wrong_root():
    with pytest.raises(GoalStateError):
        parse_goal_state(b"<Health/>")


# --- health --------------------------------------------------------------------

READY = b"""<?xml version="1.0" encoding="utf-8"?>
<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <GoalStateIncarnation>3</GoalStateIncarnation>
  <Container>
    <ContainerId>9f2c3a0e-6f7b-4c1e-8d8a-1a2b3c4d5e6f</ContainerId>
    <RoleInstanceList>
      <Role>
        <InstanceId>5c1d8bc5-0e4e-4b0e-9d2a-2f1f1b0c6a11.vm0</InstanceId>
        <Health>
          <State>Ready</State>
        </Health>
      </Role>
    </RoleInstanceList>
  </Container>
</Health>
"""


def test_render_ready_exactly():
    assert render_health(GS, "Ready") == READY


def test_ready_round_trips():
    assert parse_health(render_health(GS, "Ready")) == {
        "incarnation": "3", "container_id": GS.container_id, "instance_id": GS.instance_id,
        "state": "Ready", "substatus": None, "description": None,
    }


def test_failure_carries_details_and_escapes_everything():
    gs = GoalState("1<", "c&d", "i\"'>")
    report = Report("error", "error parsing ovf-env.xml", {"detail": "<bad> & 'odd'|x"},
                    vm_id="v", timestamp="2024-01-01T00:00:00.000000Z").encode()
    body = render_health(gs, "NotReady", "ProvisioningFailed", report)
    assert b"<SubStatus>ProvisioningFailed</SubStatus>" in body
    assert b"&lt;bad&gt; &amp; &apos;&apos;odd&apos;&apos;" in body  # CSV-quoted, escaped
    assert b"<bad>" not in body and b"c&d" not in body
    got = parse_health(body)
    assert got["incarnation"] == "1<" and got["container_id"] == "c&d"
    assert got["instance_id"] == "i\"'>"
    assert got["state"] == "NotReady" and got["substatus"] == "ProvisioningFailed"
    assert decode_report(got["description"])["detail"] == "<bad> & 'odd'|x"


def test_description_is_capped_and_control_characters_dropped():
    body = render_health(GS, "NotReady", "ProvisioningFailed", "\x01" + "é" * 2000)
    desc = parse_health(body)["description"]
    assert desc == "é" * (MAX_DESCRIPTION - 1)


@pytest.mark.parametrize("text", ["x\ud800y", "\udfff", "a\x00b", "\ufffe"])
def test_a_description_from_a_hostile_document_still_renders(text):
    gs = GoalState("1", "c\ud800", "i")
    body = render_health(gs, "NotReady", "ProvisioningFailed", f"reason={text}")
    found = parse_health(body)
    assert found["state"] == "NotReady" and found["description"].startswith("reason=")
    assert found["container_id"] == "c\\ud800"


def test_invalid_state_rejected():
    with pytest.raises(ValueError):
        render_health(GS, "Fine")


@pytest.mark.parametrize("xml", [b"<nope", b"<GoalState/>", b"<Health><Container/></Health>"])
def test_parse_health_errors(xml):
    with pytest.raises(WireserverError) as info:
        parse_health(xml)
    assert not isinstance(info.value, GoalStateError)


# --- client --------------------------------------------------------------------

def ws(url, clock, **kw):
    return WireserverClient(url, clock=clock, sleep=clock.sleep, **kw)


def test_goal_state_request_and_headers():
    clock = FakeClock()
    with ScriptedServer([Reply(200, GOAL_STATE)]) as srv:
        assert ws(srv.url, clock).goal_state() == GS
    (seen,) = srv.seen
    assert (seen.method, seen.path) == ("GET", GOAL_STATE_PATH)
    assert seen.path.startswith("/machine/?")
    assert seen.headers["x-ms-agent-name"] == "WALinuxAgent"
    assert seen.headers["x-ms-version"] == "2012-11-30"


def test_any_failure_retried_one_second_apart():
    clock = FakeClock()
    script = [Reply(500), Reply(403), Reply(400), Reply(410), Reply(200, GOAL_STATE)]
    with ScriptedServer(script) as srv:
        assert ws(srv.url, clock).goal_state() == GS
    assert clock.sleeps == [1.0] * 4 and len(srv.seen) == 5


def test_budget_is_a_parameter_and_ends_in_wireserver_error():
    clock = FakeClock()
    with ScriptedServer([Reply(503)]) as srv:
        with pytest.raises(WireserverError) as info:
            ws(srv.url, clock, budget_s=30.0).goal_state()
    assert info.value.supporting_data["elapsed_s"] == 30.0
    assert len(srv.seen) == 31


def test_default_budget_is_twenty_minutes_on_the_fake_clock():
    clock = FakeClock()
    with ScriptedServer([Reply(500)]) as srv:
        with pytest.raises(WireserverError):
            ws(srv.url, clock, interval_s=60.0).goal_state()
    assert sum(clock.sleeps) == 1200.0 and len(srv.seen) == 21


def test_network_unreachable_gives_up_at_once(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", unreachable)
    clock = FakeClock()
    with pytest.raises(WireserverError) as info:
        ws("http://127.0.0.1:9", clock).report_ready(GS)
    assert info.value.supporting_data["error"] == "network unreachable"
    assert clock.sleeps == []


def test_report_ready_posts_health():
    clock = FakeClock()
    with ScriptedServer([Reply(500), Reply(200)]) as srv:
        ws(srv.url, clock).report_ready(GS)
    seen = srv.seen[-1]
    assert (seen.method, seen.path) == ("POST", HEALTH_PATH)
    assert seen.headers["content-type"] == "text/xml; charset=utf-8"
    assert seen.headers["x-ms-agent-name"] == "WALinuxAgent"
    assert seen.headers["x-ms-version"] == "2012-11-30"
    assert seen.body == READY


def test_report_failure_posts_not_ready_with_description():
    clock = FakeClock()
    with ScriptedServer([Reply(200)]) as srv:
        ws(srv.url, clock).report_failure(GS, "result=error|reason=boom")
    got = parse_health(srv.seen[0].body)
    assert got["state"] == "NotReady" and got["substatus"] == "ProvisioningFailed"
    assert got["description"] == "result=error|reason=boom"


def test_certificates_request_goes_to_our_endpoint_with_cipher_headers():
    clock = FakeClock()
    with ScriptedServer([Reply(200, b"<CertificateFile/>")]) as srv:
        body = ws(srv.url, clock).certificates(GS, "MIIBASE64")
    assert body == b"<CertificateFile/>"
    (seen,) = srv.seen
    assert seen.path == "/machine/9f2c?comp=certificates&incarnation=3"
    assert seen.headers["x-ms-cipher-name"] == "DES_EDE3_CBC"
    assert seen.headers["x-ms-guest-agent-public-x509-cert"] == "MIIBASE64"
    assert seen.headers["x-ms-agent-name"] == "WALinuxAgent"


def test_certificates_without_url_or_on_failure_is_certificate_error():
    clock = FakeClock()
    with pytest.raises(CertificateError):
        ws("http://127.0.0.1:9", clock).certificates(
            GoalState("1", "c", "i"), "x")
    with ScriptedServer([Reply(500)]) as srv:
        with pytest.raises(CertificateError) as info:
            ws(srv.url, clock, budget_s=2.0).certificates(GS, "x")
    assert info.value.supporting_data["status"] == 500


@fuzz
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8",
                                                                             "replace")))
def test_any_goal_state_body_parses_or_is_a_goal_state_error(body):
    try:
        parse_goal_state(body)
    except GoalStateError as err:
        str(err).encode("utf-8")


@fuzz
@given(st.text(max_size=200))
def test_any_lease_text_gives_a_usable_address_or_none(text):
    found = parse_option_245("option unknown-245 " + text)
    assert found is None or found.count(".") == 3
    assert found not in ("0.0.0.0", "255.255.255.255")
