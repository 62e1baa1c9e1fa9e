"""The tests' one fake machine: a Runner that never runs a program, and a Host over a root.

Every unit test that hands the core a :class:`~cloudinit_azure.runner.Runner`
uses :class:`FakeRunner` (or a subclass that plays one program's part, such
as dhclient or sfdisk, by overriding :meth:`FakeRunner.answer`).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from cloudinit_azure.host import Host
from cloudinit_azure.runner import CommandError, Result

OK = Result(0, "", "")
Answer = Union[Result, BaseException, Callable[[list, dict], Result]]


class FakeRunner:
    """Records every command line (``calls``) and its keywords (``kwargs``); runs nothing.

    ``answers`` maps an argv prefix (a tuple, or a program name) to a
    :class:`Result`, an exception to raise, or a callable ``(cmd, kwargs)``
    returning a Result; the longest matching prefix wins, else ``default``.
    A program in ``missing`` raises FileNotFoundError, as an absent binary
    does. ``strict``: a non-zero exit with ``check`` (the default) raises
    :class:`CommandError`, as :func:`cloudinit_azure.runner.run` does.
    """

    def __init__(self, answers: Optional[Mapping[Any, Answer]] = None, *,
                 default: Answer = OK, missing: Iterable[str] = (),
                 strict: bool = False) -> None:
        self.answers = {k if isinstance(k, tuple) else (k,): v
                        for k, v in (answers or {}).items()}
        self.default = default
        self.missing = set(missing)
        self.strict = strict
        self.calls: list[list[str]] = []
        self.kwargs: list[dict[str, Any]] = []

    @property
    def invocations(self) -> list[tuple[list[str], dict[str, Any]]]:
        return list(zip(self.calls, self.kwargs))

    def commands(self) -> list[str]:
        """The program of each call, in order."""
        return [c[0] for c in self.calls]

    def __call__(self, cmd: Any, **kwargs: Any) -> Result:
        argv = list(cmd)
        self.calls.append(argv)
        self.kwargs.append(dict(kwargs))
        if argv and (argv[0] in self.missing or os.path.basename(argv[0]) in self.missing):
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        result = self.answer(argv, kwargs)
        if self.strict and kwargs.get("check", True) and result.returncode != 0:
            raise CommandError(argv, result)
        return result

    def answer(self, cmd: list[str], kwargs: dict[str, Any]) -> Result:
        """The table's answer for ``cmd`` (subclasses play programs here)."""
        for n in range(len(cmd), 0, -1):
            if tuple(cmd[:n]) in self.answers:
                return resolve(self.answers[tuple(cmd[:n])], cmd, kwargs)
        return resolve(self.default, cmd, kwargs)


def resolve(answer: Answer, cmd: list[str], kwargs: dict[str, Any]) -> Result:
    if isinstance(answer, BaseException):
        raise answer
    if callable(answer):
        return answer(cmd, kwargs)
    return answer


class Kills:
    """A fake ``os.kill``: records ``(pid, signal)``, signals nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, pid: int, sig: int) -> None:
        self.calls.append((pid, sig))


def fake_host(root: Path, runner: Optional[FakeRunner] = None, **overrides: Any) -> Host:
    """A :class:`Host` over the test's ``root``: the fake runner, no sleeping, no signals."""
    parts: dict[str, Any] = dict(root=Path(root), runner=runner or FakeRunner(),
                                 clock=time.monotonic, sleep=lambda _s: None,
                                 kill=Kills())
    parts.update(overrides)
    return Host(**parts)


# --- openssl passwd -6, played in Python --------------------------------------------

_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ORDER = ((0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
          (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
          (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16),
          (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41))


def _b64(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = ""
    for _ in range(n):
        out += _B64[w & 0x3F]
        w >>= 6
    return out


def sha512_crypt(password: str, salt: str) -> str:
    """SHA-512 crypt (``$6$``, 5,000 rounds), as glibc and ``openssl passwd -6`` make it."""
    p, s = password.encode(), salt.encode()[:16]
    b = hashlib.sha512(p + s + p).digest()
    a = hashlib.sha512(p + s)
    n = len(p)
    while n > 64:
        a.update(b)
        n -= 64
    a.update(b[:n])
    n = len(p)
    while n:
        a.update(b if n & 1 else p)
        n >>= 1
    c = a.digest()
    dp = hashlib.sha512(p * len(p)).digest()
    pp = (dp * (len(p) // 64 + 1))[:len(p)]
    ds = hashlib.sha512(s * (16 + c[0])).digest()
    ss = (ds * (len(s) // 64 + 1))[:len(s)]
    for i in range(5000):
        h = hashlib.sha512(pp if i & 1 else c)
        if i % 3:
            h.update(ss)
        if i % 7:
            h.update(pp)
        h.update(c if i & 1 else pp)
        c = h.digest()
    text = "".join(_b64(c[x], c[y], c[z], 4) for x, y, z in _ORDER) + _b64(0, 0, c[63], 2)
    return f"$6${s.decode()}${text}"


def openssl_passwd(cmd: list[str], kwargs: dict[str, Any]) -> Result:
    """Answer ``openssl passwd -6 -salt S -stdin`` (password on stdin) as openssl does."""
    salt = cmd[cmd.index("-salt") + 1]
    password = (kwargs.get("input") or "").split("\n", 1)[0]
    return Result(0, sha512_crypt(password, salt) + "\n", "")


def openssl_runner() -> FakeRunner:
    """A fake runner that plays ``openssl passwd`` (and answers anything else with exit 0)."""
    return FakeRunner({("openssl", "passwd"): openssl_passwd})
