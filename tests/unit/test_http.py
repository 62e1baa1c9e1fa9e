"""The retrying HTTP client against a real HTTP server on 127.0.0.1.

``ScriptedServer`` and ``FakeClock`` are reused by the IMDS and wireserver
tests: every response is scripted per request and every request recorded.
"""

from __future__ import annotations

import errno
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Union

import pytest
import urllib3.util.connection

from cloudinit_azure.http import HttpClient, RetryPolicy
from cloudinit_azure.report import ImdsError, WireserverError

HANG = "hang"  # scripted response: accept the request, never answer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes


Script = Union[Reply, str, Callable[[Seen], Reply]]


class ScriptedServer:
    """An HTTP server on an ephemeral loopback port answering from a script.

    Each request takes the next scripted item (the last one repeats): a
    :class:`Reply`, ``HANG``, or a callable of the recorded request.
    """

    def __init__(self, script: list[Script]) -> None:
        self.script = list(script)
        self.seen: list[Seen] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length))
                with owner.lock:
                    owner.seen.append(seen)
                    item = owner.script[min(len(owner.seen), len(owner.script)) - 1]
                if item == HANG:
                    owner.release.wait(30)
                    return
                reply = item(seen) if callable(item) else item
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve  # noqa: N815

        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(url: str, clock: FakeClock, error=ImdsError, headers: Optional[dict] = None,
           **policy) -> HttpClient:
    policy.setdefault("timeout_s", 2.0)
    return HttpClient(url, headers=headers, policy=RetryPolicy(**policy), error=error,
                      clock=clock, sleep=clock.sleep)


def test_retries_500_then_succeeds_one_interval_apart():
    clock = FakeClock()
    script = [Reply(500), Reply(500), Reply(500), Reply(200, b"ok")]
    with ScriptedServer(script) as srv:
        resp = client(srv.url, clock).get("/x?y=1")
    assert (resp.status, resp.body, resp.attempts) == (200, b"ok", 4)
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert [s.path for s in srv.seen] == ["/x?y=1"] * 4


@pytest.mark.parametrize("status", [404, 410, 429, 500, 503])
def test_each_retry_status_is_retried(status):
    clock = FakeClock()
    with ScriptedServer([Reply(status), Reply(200)]) as srv:
        assert client(srv.url, clock).get("/").attempts == 2


def test_other_status_fails_at_once_with_typed_error():
    clock = FakeClock()
    with ScriptedServer([Reply(403), Reply(200)]) as srv:
        with pytest.raises(WireserverError) as info:
            client(srv.url, clock, error=WireserverError).get("/machine/?comp=goalstate")
    assert len(srv.seen) == 1 and clock.sleeps == []
    data = info.value.supporting_data
    assert data["status"] == 403 and data["attempts"] == 1
    assert data["url_path"] == "/machine/"
    assert info.value.reason == WireserverError.reason


def test_return_statuses_hand_the_response_back():
    clock = FakeClock()
    with ScriptedServer([Reply(400, b"bad")]) as srv:
        resp = client(srv.url, clock).get("/", return_statuses={400})
    assert (resp.status, resp.body) == (400, b"bad")


def test_retry_after_is_honoured_on_the_fake_clock():
    clock = FakeClock()
    script = [Reply(429, headers={"Retry-After": "7"}), Reply(503, headers={"Retry-After": "3"}),
              Reply(200)]
    with ScriptedServer(script) as srv:
        assert client(srv.url, clock).get("/").attempts == 3
    assert clock.sleeps == [7.0, 3.0]


def test_retry_after_is_capped_to_the_deadline_then_gives_up():
    clock = FakeClock()
    with ScriptedServer([Reply(503, headers={"Retry-After": "100"})]) as srv:
        with pytest.raises(ImdsError) as info:
            client(srv.url, clock, deadline_s=5.0).get("/")
    assert clock.sleeps == [5.0]
    assert len(srv.seen) == 2  # one last try at the deadline
    assert info.value.supporting_data["status"] == 503
    assert info.value.supporting_data["elapsed_s"] == 5.0


def test_http_date_retry_after_falls_back_to_interval():
    clock = FakeClock()
    script = [Reply(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), Reply(200)]
    with ScriptedServer(script) as srv:
        client(srv.url, clock).get("/")
    assert clock.sleeps == [1.0]


def test_server_that_never_answers_hits_the_deadline():
    clock = FakeClock()
    with ScriptedServer([HANG]) as srv:
        with pytest.raises(ImdsError) as info:
            client(srv.url, clock, deadline_s=3.0, timeout_s=0.05).get("/metadata/instance")
    data = info.value.supporting_data
    assert data["exception"] == "ReadTimeout"
    assert data["attempts"] == 4 and data["elapsed_s"] == 3.0
    assert data["deadline_s"] == 3.0
    assert clock.sleeps == [1.0, 1.0, 1.0]


def test_connection_refused_is_retried_then_can_succeed():
    clock = FakeClock()
    with ScriptedServer([Reply(200)]) as srv:
        url = srv.url
    # The server is gone: connection refused until the deadline.
    with pytest.raises(ImdsError) as info:
        client(url, clock, deadline_s=2.0).get("/")
    assert info.value.supporting_data["exception"] == "ConnectionError"
    assert info.value.supporting_data["attempts"] == 3


def test_connection_errors_not_retried_when_policy_says_so():
    clock = FakeClock()
    with ScriptedServer([Reply(200)]) as srv:
        url = srv.url
    with pytest.raises(ImdsError) as info:
        client(url, clock, retry_on_connection_errors=False).get("/")
    assert info.value.supporting_data["attempts"] == 1 and clock.sleeps == []


def test_network_unreachable_gives_up_at_once(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", unreachable)
    clock = FakeClock()
    with ScriptedServer([Reply(200)]) as srv:
        with pytest.raises(WireserverError) as info:
            client(srv.url, clock, error=WireserverError).get("/machine/?comp=goalstate")
        assert srv.seen == []
    data = info.value.supporting_data
    assert data["error"] == "network unreachable" and data["attempts"] == 1
    assert data["exception"] == "ConnectionError"
    assert clock.sleeps == []


def test_unreachable_retried_when_policy_does_not_give_up(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", unreachable)
    clock = FakeClock()
    with pytest.raises(ImdsError) as info:
        client("http://127.0.0.1:9", clock, deadline_s=1.0,
               give_up_on_unreachable=False).get("/")
    assert info.value.supporting_data["attempts"] == 2


def test_fresh_client_request_id_per_attempt_and_fixed_headers():
    clock = FakeClock()
    with ScriptedServer([Reply(500), Reply(500), Reply(200)]) as srv:
        client(srv.url, clock, headers={"Metadata": "true"},
               client_request_id=True).get("/")
    ids = [s.headers["x-ms-client-request-id"] for s in srv.seen]
    assert len(set(ids)) == 3 and all(len(i) == 36 for i in ids)
    assert all(s.headers["metadata"] == "true" for s in srv.seen)


def test_no_request_id_unless_asked():
    clock = FakeClock()
    with ScriptedServer([Reply(200)]) as srv:
        client(srv.url, clock).get("/")
    assert "x-ms-client-request-id" not in srv.seen[0].headers


def test_post_sends_body_and_headers_but_never_logs_the_body(caplog):
    caplog.set_level(logging.DEBUG, logger="cloudinit_azure.http")
    clock = FakeClock()
    secret = b"<Description>s3cret-password</Description>"
    with ScriptedServer([Reply(500), Reply(200)]) as srv:
        client(srv.url, clock).post("/machine?comp=health", secret,
                                    headers={"Content-Type": "text/xml; charset=utf-8"})
    assert srv.seen[-1].body == secret and srv.seen[-1].method == "POST"
    assert srv.seen[-1].headers["content-type"] == "text/xml; charset=utf-8"
    assert "s3cret" not in caplog.text
    assert any(r.levelno == logging.DEBUG and "retrying" in r.getMessage()
               for r in caplog.records)


def test_give_up_is_logged_at_warning(caplog):
    clock = FakeClock()
    with ScriptedServer([Reply(403)]) as srv:
        with pytest.raises(ImdsError):
            client(srv.url, clock).get("/metadata/instance")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "/metadata/instance" in warnings[0].getMessage()


def test_absolute_urls_pass_and_relative_ones_join():
    c = HttpClient("http://127.0.0.1:1/base/")
    assert c.url("/machine/?comp=goalstate") == "http://127.0.0.1:1/base/machine/?comp=goalstate"
    assert c.url("http://127.0.0.1:2/x?y") == "http://127.0.0.1:2/x?y"


def test_own_session_ignores_proxy_environment(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    clock = FakeClock()
    with ScriptedServer([Reply(200, b"direct")]) as srv:
        assert client(srv.url, clock).get("/").body == b"direct"
