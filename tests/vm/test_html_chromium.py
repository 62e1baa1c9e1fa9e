"""A real boot's HTML report, rendered by headless Chromium (Debian's package).

The VM tier's tools (``make vm-tools``) install ``chromium``. The page is
drawn into a PNG screenshot, which must have the window's size and show the
verdict banner, the stage bars and the Ready line in their colours.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib

import pytest

from tests.tiers import skip_or_fail

WINDOW = (1200, 900)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
BANNER_OK = (0xda, 0xfb, 0xe1)
INIT_LOCAL = (0x4e, 0x79, 0xa7)
READY = (0x1a, 0x7f, 0x37)


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    assert len(raw) == height * (stride + 1)
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) *
                                                          (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 255
        rows.append(bytes(line) if bpp == 3 else bytes(
            v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def _colors(rows: list[bytes]) -> set[tuple[int, int, int]]:
    out = set()
    for row in rows:
        out.update(zip(row[0::3], row[1::3], row[2::3]))
    return out


@pytest.fixture(scope="module")
def boot_page(tmp_path_factory):
    """A real sandbox boot of the default scenario (cloud-init 22.4.2), as HTML."""
    from azure_sim import html_report
    from azure_sim.boot import boot
    from azure_sim.scenario import load_scenario

    report = boot(load_scenario(None), cloud_init="22.4.2", datasource="plugin")
    assert report["verdict"]["ok"], report["verdict"]
    page = tmp_path_factory.mktemp("html") / "boot.html"
    page.write_text(html_report.render(report))
    return page, report


def test_chromium_renders_the_boot_report(boot_page, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        skip_or_fail("no chromium: run 'make vm-tools' (it installs Debian's chromium)")
    page, report = boot_page
    shot = tmp_path / "boot.png"
    proc = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    width, height, rows = decode_png(shot.read_bytes())
    assert (width, height) == WINDOW
    colors = _colors(rows)
    assert len(colors) > 50, "the screenshot is (nearly) blank"
    assert BANNER_OK in _colors(rows[:200]), "no green verdict banner at the top"
    assert INIT_LOCAL in colors, "no init-local bar on the timeline"
    assert READY in colors, "no Ready line"
    assert report["ready"]
