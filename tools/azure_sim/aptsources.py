"""The Debian mirrors of this machine's own apt sources (deb822 ``.sources`` or one-line).

The image builders take their archive from here, so a VM image comes from the
same archive as the machine's own packages.
"""

from __future__ import annotations

from pathlib import Path


def mirrors(etc: Path = Path("/etc/apt")) -> dict[str, str]:
    """suite -> URI of every 'main' source in this machine's apt configuration."""
    out: dict[str, str] = {}
    srcdir = etc / "sources.list.d"
    candidates = sorted(srcdir.glob("*.sources")) + sorted(srcdir.glob("*.list"))
    candidates.append(etc / "sources.list")
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, _, value = line.partition(":")
                    if value and not line.startswith((" ", "#")):
                        fields[key.strip()] = value.strip()
                if "main" in fields.get("Components", "").split() and fields.get("URIs"):
                    for suite in fields.get("Suites", "").split():
                        out.setdefault(suite, fields["URIs"].split()[0])
        else:
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                words = [w for w in words if not w.startswith("[")]
                if len(words) >= 4 and words[0] == "deb" and "main" in words[3:]:
                    out.setdefault(words[2], words[1])
    return out
