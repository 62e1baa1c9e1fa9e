"""The one retrying HTTP client for IMDS and the wireserver.

Both platform endpoints want the same thing: try again about once a second
until a deadline, but give up at once when retrying cannot help (a status
that says "no", or a network that is unreachable). This module is that policy
in one place; :mod:`imds` and :mod:`wireserver` only choose its numbers.

Why an explicit loop rather than ``urllib3.util.Retry``: ``Retry`` counts
attempts, not time, and takes its clock and sleep from the ``time`` module, so
a 300 s deadline cannot be tested with a fake clock without patching globals;
it also resends the *same* headers on every attempt, while IMDS wants a fresh
``x-ms-client-request-id`` per attempt, and it cannot tell ENETUNREACH (give
up) from other connection errors (retry). A dozen lines of loop over
``requests`` say all of that directly.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn, Optional
from urllib.parse import urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from cloudinit_azure.report import ProvisioningError

LOG = logging.getLogger(__name__)

CLIENT_REQUEST_ID = "x-ms-client-request-id"
DEFAULT_RETRY_STATUSES = frozenset({404, 410, 429, 500, 503})
# For endpoints where every failure is worth another try (the wireserver).
ANY_ERROR_STATUS = frozenset(range(300, 600))
_RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again, how often, and for how long.

    ``deadline_s`` bounds the whole request, retries and waits included, as
    measured by the client's clock; ``timeout_s`` bounds one attempt (connect
    and read each).
    """

    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    interval_s: float = 1.0
    deadline_s: float = 300.0
    timeout_s: float = 2.0
    retry_on_connection_errors: bool = True
    give_up_on_unreachable: bool = True
    client_request_id: bool = False
    honour_retry_after: bool = True


@dataclass(frozen=True)
class HttpResponse:
    """A completed response; ``attempts`` counts every try that led to it.

    ``headers`` look up case-insensitively, as HTTP header names do.
    """

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    attempts: int = 1


def _is_unreachable(exc: BaseException) -> bool:
    """Find ENETUNREACH anywhere in the chain requests/urllib3 wrap it in."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno == errno.ENETUNREACH:
            return True
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
        todo.extend(item.args)
    return False


def _retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """The seconds form of Retry-After; the HTTP-date form is ignored."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class HttpClient:
    """Requests against one endpoint, retried per a :class:`RetryPolicy`.

    ``error`` is the :class:`ProvisioningError` subclass raised on give-up, so
    a failure is already the typed error the caller reports. ``clock`` and
    ``sleep`` are injectable so tests run a 300 s deadline in no time.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, shared safely
        error: type[ProvisioningError] = ProvisioningError,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.policy = policy
        self.error = error
        self.clock = clock
        self.sleep = sleep
        if session is None:
            session = requests.Session()
            # Link-local platform endpoints must never go through a proxy
            # from the environment, nor pick up .netrc credentials.
            session.trust_env = False
        self.session = session

    def url(self, path: str) -> str:
        """Join ``path`` onto the base URL; absolute URLs pass unchanged."""
        if urlsplit(path).scheme:
            return path
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def get(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: bytes, **kwargs: Any) -> HttpResponse:
        return self.request("POST", path, data=data, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        data: Optional[bytes] = None,
        return_statuses: Iterable[int] = (),
        deadline_s: Optional[float] = None,
        error: Optional[type[ProvisioningError]] = None,
    ) -> HttpResponse:
        """Send until a 2xx (or a status in ``return_statuses``) comes back.

        Statuses in the policy's ``retry_statuses`` and transport errors are
        retried ``interval_s`` apart (or as ``Retry-After`` asks) until the
        deadline; anything else raises ``error`` (default ``self.error``) at
        once.
        """
        policy = self.policy
        deadline = policy.deadline_s if deadline_s is None else deadline_s
        url = self.url(path)
        log_path = urlsplit(url).path or "/"
        keep = frozenset(return_statuses)
        error_cls = error or self.error
        start = self.clock()
        attempts = 0
        while True:
            attempts += 1
            send_headers = {**self.headers, **(headers or {})}
            if policy.client_request_id:
                send_headers[CLIENT_REQUEST_ID] = str(uuid.uuid4())
            wait = policy.interval_s
            try:
                resp = self.session.request(
                    method, url, headers=send_headers, data=data,
                    timeout=policy.timeout_s, allow_redirects=False,
                )
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                if policy.give_up_on_unreachable and _is_unreachable(exc):
                    self._give_up(error_cls, method, log_path, attempts, start,
                                  error="network unreachable", exception=outcome)
                if not policy.retry_on_connection_errors:
                    self._give_up(error_cls, method, log_path, attempts, start, exception=outcome)
                detail: dict[str, Any] = {"exception": outcome}
            else:
                status = resp.status_code
                if 200 <= status < 300 or status in keep:
                    return HttpResponse(status, CaseInsensitiveDict(resp.headers), resp.content,
                                        attempts)
                if status not in policy.retry_statuses:
                    self._give_up(error_cls, method, log_path, attempts, start, status=status)
                detail = {"status": status}
                if policy.honour_retry_after and status in _RETRY_AFTER_STATUSES:
                    asked = _retry_after(resp.headers)
                    if asked is not None:
                        wait = asked
            remaining = deadline - (self.clock() - start)
            if remaining <= 0:
                self._give_up(error_cls, method, log_path, attempts, start, deadline_s=deadline,
                              **detail)
            wait = min(wait, remaining)
            LOG.debug("%s %s attempt %d failed (%s); retrying in %.1f s",
                      method, log_path, attempts,
                      ", ".join(f"{k}={v}" for k, v in detail.items()), wait)
            self.sleep(wait)

    def _give_up(self, error_cls: type[ProvisioningError], method: str, path: str,
                 attempts: int, start: float, **detail: Any) -> NoReturn:
        elapsed = round(self.clock() - start, 3)
        data = {"url_path": path, **detail, "attempts": attempts, "elapsed_s": elapsed}
        LOG.warning("%s %s failed; giving up (%s)", method, path,
                    ", ".join(f"{k}={v}" for k, v in data.items()))
        raise error_cls(**data)
