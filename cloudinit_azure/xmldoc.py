"""Parse a platform XML document safely: one place for what can go wrong.

ovf-env.xml, the goal state and the certificates file come from the platform
and are read as root, so DTDs and entities are forbidden (defusedxml). The
XML declaration can also name an encoding expat cannot read (``LookupError``)
or a multi-byte one it refuses (``ValueError``): those, like a syntax error,
become one :class:`XmlProblem` with a fixed text that each parser turns into
its own typed error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - types only; parsing is defusedxml's
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

NOT_WELL_FORMED = "is not well-formed XML"
FORBIDDEN = "declares a DTD or entity (forbidden)"
BAD_ENCODING = "declares an encoding that cannot be read"


class XmlProblem(ValueError):
    """Why a document did not parse: ``problem`` (fixed text) and ``details``."""

    def __init__(self, problem: str, **details: Any) -> None:
        self.problem = problem
        self.details = details
        super().__init__(problem)


def parse(data: bytes) -> ET.Element:
    """The document's root element, or :class:`XmlProblem`."""
    try:
        return SafeET.fromstring(bytes(data), forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        raise XmlProblem(NOT_WELL_FORMED, line=line, column=column,
                         error=str(exc)[:120]) from None
    except DefusedXmlException as exc:
        raise XmlProblem(FORBIDDEN, error=type(exc).__name__) from None
    except (LookupError, ValueError) as exc:  # unknown or multi-byte encoding
        raise XmlProblem(BAD_ENCODING, error=str(exc)[:120]) from None
