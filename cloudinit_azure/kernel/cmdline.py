"""The one editor of the kernel command line that grub is configured with.

NUMA (``numa=off``) and the serial console (``console=ttyS0,...``) both need
kernel arguments. Grub reads them from ``/etc/default/grub`` (and, on Debian
and Ubuntu, ``/etc/default/grub.d/*.cfg``), which are *shell* scripts sourced
by ``grub-mkconfig``. This module edits them without running them:

* The pure part (:func:`add_args`, :func:`cmdline_words`, :func:`has_arg`)
  takes text and returns text. It understands ``KEY="value"``, ``KEY='value'``,
  ``KEY=word``, escaped quotes, ``$KEY`` self-references and a variable set
  more than once (the last assignment wins, as in the shell). Anything it
  cannot edit with certainty (command substitution, backticks, line
  continuations or a multi-line value in the variable's assignment,
  unbalanced quotes, a here-document, an assignment hidden inside a compound
  statement) raises :class:`UnsafeGrubFile`, and the caller leaves the file
  untouched.
* :func:`ensure_args` does the file I/O under a ``root``. When
  ``<root>/etc/default/grub.d`` exists it writes its own drop-in
  (:data:`DROP_IN`) and never edits a distro file; otherwise it edits
  ``/etc/default/grub`` in place. Arguments always go to
  ``GRUB_CMDLINE_LINUX`` so recovery entries get them too.

Argument identity is by key: an argument is "present" when the effective
command line (``GRUB_CMDLINE_LINUX`` and ``GRUB_CMDLINE_LINUX_DEFAULT`` across
the main file and its drop-ins) already has the same key, whatever its value,
so an image author's own ``numa=`` or ``earlyprintk=`` wins. ``console=`` may
legitimately appear several times, so its identity is key plus device:
``console=tty0`` does not satisfy ``console=ttyS0,115200n8``, but
``console=ttyS0,9600`` does (the existing one is kept).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from cloudinit_azure.kernel.shell import (
    _SAFE_ARG,
    UnsafeGrubFile,
    _assignments,
    _statements,
)

LOG = logging.getLogger(__name__)



VAR = "GRUB_CMDLINE_LINUX"


DEFAULT_VAR = "GRUB_CMDLINE_LINUX_DEFAULT"


GRUB_DEFAULT = "etc/default/grub"


GRUB_D = "etc/default/grub.d"


DROP_IN = "etc/default/grub.d/50-cloudinit-azure.cfg"


DROP_IN_HEADER = (
    "# Managed by cloudinit-azure (azure_kernel): kernel arguments for Azure.\n"
    "# Local changes to the arguments it added are kept; removals are re-added.\n"
)


@dataclass(frozen=True)
class EditResult:
    """New text, whether it differs, and which arguments were added."""

    text: str
    changed: bool
    added: tuple[str, ...] = ()


def split_args(value: str) -> list[str]:
    """Split a kernel command line into words; double quotes group, as in the kernel."""
    words, cur, quoted, any_char = [], [], False, False
    for c in value:
        if c == '"':
            quoted = not quoted
            cur.append(c)
            any_char = True
        elif c.isspace() and not quoted:
            if any_char:
                words.append("".join(cur))
            cur, any_char = [], False
        else:
            cur.append(c)
            any_char = True
    if any_char:
        words.append("".join(cur))
    return words


def cmdline_words(text: str, var: str = VAR, initial: Sequence[str] = ()) -> list[str]:
    """The words ``var`` holds after the shell runs ``text``.

    ``initial`` is the value inherited from files sourced earlier.
    ``$var`` expands to the value so far; other variables stay opaque words.
    """
    current = " ".join(initial)
    for assignment in _assignments(text, var):
        parts = []
        for kind, piece in assignment.value.pieces:
            if kind == "lit":
                parts.append(piece)
            elif piece == var:
                parts.append(current)
            else:
                parts.append("$" + piece)
        current = "".join(parts)
    return split_args(current)


def arg_key(arg: str) -> str:
    """Identity of a kernel argument: its key, plus the device for ``console=``."""
    key, _, value = arg.partition("=")
    if key == "console":
        return "console=" + value.split(",", 1)[0]
    return key


def has_arg(words: Sequence[str], arg: str) -> bool:
    """True when ``words`` already has an argument with ``arg``'s identity."""
    want = arg_key(arg)
    return any(arg_key(w) == want for w in words)


def validate_args(args: Sequence[str]) -> None:
    """Refuse arguments that would need quoting: we never emit shell syntax."""
    for arg in args:
        if not _SAFE_ARG.match(arg):
            raise ValueError(f"kernel argument {arg!r} needs quoting; not supported")


def add_args(text: str, var: str, args: Sequence[str],
             present: Sequence[str] = ()) -> EditResult:
    """Add each of ``args`` missing from ``var`` to its last assignment in ``text``.

    ``present`` are words already on the command line from elsewhere (other
    variables or files); an argument whose identity is among them or in
    ``var`` is not added. A missing variable gets a new line at the end.
    Raises :class:`UnsafeGrubFile` (text untouched) for syntax it cannot edit.
    """
    validate_args(args)
    assignments = _assignments(text, var)
    words = list(present) + cmdline_words(text, var)
    added: list[str] = []
    for arg in args:
        if not has_arg(words + added, arg):
            added.append(arg)
    if not added:
        return EditResult(text, False)
    extra = " ".join(added)
    if not assignments:
        statements = _statements(text)
        if statements and statements[-1].open_end:
            raise UnsafeGrubFile("the file ends in a line continuation: a line appended "
                                 "would join the last command")
        sep = "" if not text or text.endswith("\n") else "\n"
        return EditResult(f'{text}{sep}{var}="{extra}"\n', True, tuple(added))
    value = assignments[-1].value
    raw = value.raw
    if value.last_quote:
        # The value ends in a quoted part: insert just before its closing
        # quote (our arguments need no quoting); a separating space unless
        # the value so far is empty or already ends in blank.
        body = raw[:-1]
        empty = not body.replace('"', "").replace("'", "")
        space = "" if empty or body[-1] in " \t" else " "
        new = f"{body}{space}{extra}{value.last_quote}"
    elif raw:
        # It ends unquoted (``quiet``, ``'a b'c``, ``"x;y"ro``): wrapping the
        # raw text in quotes would turn its quoted parts inside out (``;``
        # becomes a command separator), so the value is written anew, double
        # quoted, from what it means.
        new = f'"{_render(value.pieces)} {extra}"'
    else:
        new = f'"{extra}"'
    return EditResult(text[:value.start] + new + text[value.end:], True, tuple(added))


def _render(pieces: Sequence[tuple[str, str]]) -> str:
    """A value's pieces as the inside of a double-quoted shell word."""
    out = []
    for kind, piece in pieces:
        if kind == "var":
            out.append("${" + piece + "}")
        else:
            out.append(re.sub(r'([\\"$`])', r"\\\1", piece))
    return "".join(out)


@dataclass(frozen=True)
class CmdlineOutcome:
    """What :func:`ensure_args` did, for logging and for grub regeneration."""

    path: Optional[str]  # file written or that would be written (relative to root)
    added: tuple[str, ...] = ()
    refused: Optional[str] = None  # why nothing was edited, when a problem

    @property
    def changed(self) -> bool:
        return bool(self.added)


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path: str, text: str) -> None:
    """Replace ``path`` atomically, keeping its mode when it exists."""
    tmp = f"{path}.cloudinit-azure.tmp"
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _drop_ins(root: str) -> list[str]:
    directory = os.path.join(root, GRUB_D)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".cfg"))
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in names]


def current_words(root: str, skip: Optional[str] = None) -> list[str]:
    """Effective words of both command-line variables across all grub files.

    Files are taken in the order grub-mkconfig sources them; ``skip`` leaves
    one file out (the one about to be edited, which the caller parses itself).
    """
    files = [os.path.join(root, GRUB_DEFAULT), *_drop_ins(root)]
    linux: list[str] = []
    default: list[str] = []
    for path in files:
        if skip and os.path.abspath(path) == os.path.abspath(skip):
            continue
        text = _read(path)
        if text is None:
            continue
        linux = cmdline_words(text, VAR, linux)
        default = cmdline_words(text, DEFAULT_VAR, default)
    return linux + default


def ensure_args(root: str, args: Sequence[str],
                log: logging.Logger = LOG) -> CmdlineOutcome:
    """Make grub's kernel command line carry ``args``; idempotent.

    With ``<root>/etc/default/grub.d`` present, edits only our drop-in;
    otherwise ``/etc/default/grub`` in place. A missing file or unsafe
    syntax leaves everything untouched and says why.
    """
    if not args:
        return CmdlineOutcome(None)
    validate_args(args)
    if os.path.isdir(os.path.join(root, GRUB_D)):
        rel = DROP_IN
        path = os.path.join(root, rel)
        text = _read(path)
        if text is None:
            text = f'{DROP_IN_HEADER}{VAR}="${VAR}"\n'
    else:
        rel = GRUB_DEFAULT
        path = os.path.join(root, rel)
        text = _read(path)
        if text is None:
            log.info("no /%s and no /%s: kernel arguments %s not added",
                     GRUB_DEFAULT, GRUB_D, " ".join(args))
            return CmdlineOutcome(None, refused="no grub defaults file")
    try:
        present = current_words(root, skip=path)
        result = add_args(text, VAR, args, present)
    except UnsafeGrubFile as err:
        log.warning("not editing grub configuration, left untouched: %s", err)
        return CmdlineOutcome(rel, refused=str(err))
    if not result.changed:
        log.debug("kernel command line already has %s", " ".join(args))
        return CmdlineOutcome(rel)
    _write(path, result.text)
    log.info("added kernel arguments %s to /%s", " ".join(result.added), rel)
    return CmdlineOutcome(rel, added=result.added)
