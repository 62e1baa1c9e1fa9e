"""Reading grub's defaults files as the shell would, without running them:
statements, compound commands, one assignment's value. Anything it cannot
read with certainty raises :class:`UnsafeGrubFile`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

LOG = logging.getLogger(__name__)



# Characters an argument we add may use: nothing the shell or the kernel's
# own quoting would reinterpret inside a double-quoted value.
_SAFE_ARG = re.compile(r"^[A-Za-z0-9_.,:=/+@%~^-]+$")


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class UnsafeGrubFile(ValueError):
    """The file uses shell syntax this editor will not rewrite."""


@dataclass(frozen=True)
class _Statement:
    start: int  # offset of the first character
    end: int  # offset just past the last character (before the newline)
    multiline: bool
    open_end: bool = False  # ends the file with a line continuation (``\\``)


def _statements(text: str) -> list[_Statement]:
    """Split ``text`` into top-level statements (one per logical line).

    A statement ends at a newline outside quotes, ``$(...)`` and backticks;
    a backslash-newline continues it. Comments end at the newline.
    """
    out: list[_Statement] = []
    stack: list[str] = []  # '"', "'", '`', '$(' or '('
    start = 0
    multiline = False
    open_end = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        top = stack[-1] if stack else ""
        if top == "'":
            if c == "'":
                stack.pop()
            elif c == "\n":
                multiline = True
            i += 1
            continue
        if c == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                multiline = True
            if i + 2 >= n and (i + 1 == n or text[i + 1] == "\n"):
                open_end = True  # a line appended here would join this statement
            i += 2
            continue
        if c == "\n":
            if stack:
                multiline = True
            else:
                out.append(_Statement(start, i, multiline))
                start, multiline = i + 1, False
            i += 1
            continue
        if top == '"':
            if c == '"':
                stack.pop()
            elif c == "`":
                stack.append("`")
            elif text.startswith("$(", i):
                stack.append("$(")
                i += 1
            i += 1
            continue
        # top level, inside $( ), ( ) or backticks
        if c == "#" and (i == start or text[i - 1] in " \t;") and top in ("", "$(", "("):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if top == "`" and c == "`":
            stack.pop()
        elif c in "'\"`":
            stack.append(c)
        elif text.startswith("$(", i):
            stack.append("$(")
            i += 1
        elif c == "(" and top in ("$(", "("):
            stack.append("(")
        elif c == ")" and top in ("$(", "("):
            stack.pop()
        elif not stack and text.startswith("<<", i):
            raise UnsafeGrubFile(f"here-document at line {text.count(chr(10), 0, i) + 1}")
        i += 1
    if stack:
        raise UnsafeGrubFile(f"unbalanced quoting (open {stack[-1]!r} at end of file)")
    if start < n:
        out.append(_Statement(start, n, multiline, open_end))
    return out


# Reserved words that open and close compound commands, as the first word of a
# command (after ``;``, ``&``, ``|`` or a newline).
_OPENERS = frozenset({"if", "while", "until", "for", "select", "case", "{", "("})


_CLOSERS = frozenset({"fi", "done", "esac", "}", ")"})


_PREFIXES = frozenset({"then", "do", "else", "elif", "!", "time", "function"})


_QUOTED = re.compile(r"'[^']*'|\"(?:\\.|[^\"\\])*\"", re.DOTALL)


def _depth_change(body: str) -> tuple[int, int]:
    """(lowest depth reached, final depth) of the compound commands in ``body``.

    Only command-position words count, with quoted text and comments removed,
    which is all a conservative refusal needs: an assignment of our variable
    at depth > 0 lies inside ``if``/``for``/``case``/``{ }``/a function.
    """
    code = _QUOTED.sub("Q", body)
    code = re.sub(r"(^|[ \t;])#[^\n]*", r"\1", code)
    depth = low = 0
    for command in re.split(r"[;&|\n]+", code):
        words = command.split()
        while words and (words[0] in _PREFIXES or words[0].endswith("()")):
            words = words[1:]
        if not words:
            continue
        if words[0] in _OPENERS:
            depth += 1
        elif words[0] in _CLOSERS:
            depth -= 1
            low = min(low, depth)
        if words[-1] in _CLOSERS and len(words) > 1:
            depth -= 1
            low = min(low, depth)
    return low, depth


@dataclass(frozen=True)
class _Value:
    """The value token of ``VAR=...``: where it is and what it means."""

    start: int  # offset of the token in the text
    end: int
    pieces: tuple[tuple[str, str], ...]  # ("lit", text) or ("var", name)
    last_quote: str  # '"', "'" or "" (unquoted or empty)
    raw: str


def _parse_value(text: str, pos: int, end: int, line_no: int) -> _Value:
    """Parse the word starting at ``pos``; refuse substitutions and trailers."""
    pieces: list[tuple[str, str]] = []
    lit: list[str] = []
    i = pos
    last_quote = ""

    def flush() -> None:
        if lit:
            pieces.append(("lit", "".join(lit)))
            lit.clear()

    def dollar(j: int) -> int:
        """Handle ``$`` at ``j``; return the next offset."""
        if text.startswith("$(", j) or text.startswith("$((", j):
            raise UnsafeGrubFile(f"command substitution at line {line_no}")
        m = re.match(r"\$(?:\{(" + _NAME + r")\}|(" + _NAME + r"))", text[j:end])
        if m:
            flush()
            pieces.append(("var", m.group(1) or m.group(2)))
            return j + m.end()
        lit.append("$")
        return j + 1

    while i < end and text[i] not in " \t;":
        c = text[i]
        if c == "`":
            raise UnsafeGrubFile(f"backtick substitution at line {line_no}")
        if c == '"':
            last_quote = '"'
            i += 1
            while True:
                if i >= end:
                    raise UnsafeGrubFile(f"unbalanced quotes at line {line_no}")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "`":
                    raise UnsafeGrubFile(f"backtick substitution at line {line_no}")
                if c == "\\" and i + 1 < end and text[i + 1] in '"\\$`':
                    lit.append(text[i + 1])
                    i += 2
                elif c == "$":
                    i = dollar(i)
                else:
                    lit.append(c)
                    i += 1
        elif c == "'":
            last_quote = "'"
            close = text.find("'", i + 1, end)
            if close < 0:
                raise UnsafeGrubFile(f"unbalanced quotes at line {line_no}")
            lit.append(text[i + 1:close])
            i = close + 1
        elif c == "\\":
            raise UnsafeGrubFile(f"backslash escape in an unquoted value at line {line_no}")
        elif c == "$":
            last_quote = ""
            i = dollar(i)
        else:
            last_quote = ""
            lit.append(c)
            i += 1
    flush()
    rest = text[i:end].strip()
    if rest and not rest.startswith("#"):
        raise UnsafeGrubFile(f"more than one command at line {line_no}")
    return _Value(pos, i, tuple(pieces), last_quote, text[pos:i])


@dataclass(frozen=True)
class _Assignment:
    value: _Value


def _assignments(text: str, var: str) -> list[_Assignment]:
    """Every assignment of ``var`` in order; raise if one is not simple."""
    simple = re.compile(r"[ \t]*(?:export[ \t]+)?" + re.escape(var) + "=")
    mention = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(var) + r"\+?=")
    found = []
    depth = 0
    for st in _statements(text):
        body = text[st.start:st.end]
        line_no = text.count("\n", 0, st.start) + 1
        if body.lstrip().startswith("#"):
            continue
        m = simple.match(body)
        if m:
            if st.multiline:
                raise UnsafeGrubFile(f"{var} spans several lines at line {line_no}")
            if depth > 0:
                raise UnsafeGrubFile(f"{var} is set inside a compound statement "
                                     f"(if/for/case/function) at line {line_no}")
            found.append(_Assignment(_parse_value(text, st.start + m.end(), st.end, line_no)))
        elif mention.search(body.split(" #", 1)[0]):
            raise UnsafeGrubFile(f"{var} is set inside a compound statement at line {line_no}")
        low, change = _depth_change(body)
        if depth + low < 0:
            raise UnsafeGrubFile(f"unbalanced compound statement at line {line_no}")
        depth += change
    return found
