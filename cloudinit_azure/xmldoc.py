"""Parse a platform XML document safely: one place for what can go wrong.

ovf-env.xml, the goal state and the certificates file come from the platform
and are read as root, so DTDs and entities are forbidden (defusedxml). The
XML declaration can also name an encoding expat cannot read (``LookupError``)
or a multi-byte one it refuses (``ValueError``): those, like a syntax error,
become the caller's typed error (from the report package), one per problem.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - types only; parsing is defusedxml's
from typing import Any, Callable

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from cloudinit_azure.report import ProvisioningError

NOT_WELL_FORMED = "is not well-formed XML"
FORBIDDEN = "declares a DTD or entity (forbidden)"
BAD_ENCODING = "declares an encoding that cannot be read"


# ``fail(problem, details)`` builds the caller's typed error (cloudinit_azure.report).
Fail = Callable[[str, dict[str, Any]], ProvisioningError]


def parse(data: bytes, fail: Fail) -> ET.Element:
    """The document's root element; any problem raises ``fail(problem, details)``."""
    try:
        return SafeET.fromstring(bytes(data), forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        raise fail(NOT_WELL_FORMED, {"line": line, "column": column,
                                     "error": str(exc)[:120]}) from None
    except DefusedXmlException as exc:
        raise fail(FORBIDDEN, {"error": type(exc).__name__}) from None
    except (LookupError, ValueError) as exc:  # unknown or multi-byte encoding
        raise fail(BAD_ENCODING, {"error": str(exc)[:120]}) from None
