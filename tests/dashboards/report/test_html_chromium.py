"""The HTML report opened in a real headless Chromium (Debian's ``chromium``): the screenshot
shows both charts, found by their colours (the PNG decoded here with zlib, no imaging library).

Without chromium this skips; with CI=true it fails (``scripts/setup`` installs it)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from openbranch.dashboards.report import (
    ReportOptions,
    StoreSource,
    build_report,
    load_branches,
    load_factor_table,
    write_html,
)
from openbranch.dashboards.report.htmlpage import CARRIER_COLOURS, RANKING_COLOUR
from openbranch.edge.core import schema
from openbranch.edge.telemetry.outbox import Outbox
from tests.conftest import unavailable
from tests.dashboards.report import handmade
from tests.dashboards.report.handmade import DH, EL


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB(A) rows of an 8-bit truecolour PNG (filters undone)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line) if channels == 3 else bytes(
            v for i in range(0, stride, 4) for v in line[i : i + 3]
        ))  # fmt: skip
        prev = line
    return width, height, rows


def colour_counts(rows: list[bytes]) -> Counter[tuple[int, int, int]]:
    counts: Counter[tuple[int, int, int]] = Counter()
    for row in rows:
        counts.update(zip(row[0::3], row[1::3], row[2::3], strict=True))
    return counts


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def near(counts: Counter[tuple[int, int, int]], target: tuple[int, int, int]) -> int:
    """Pixels within 3 of ``target`` on every channel (colour management may shift one)."""
    return sum(
        n for c, n in counts.items() if all(abs(a - b) <= 3 for a, b in zip(c, target, strict=True))
    )


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        unavailable("chromium is not installed (scripts/setup installs it)")
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def page(tmp_path: Path) -> Path:
    inputs = handmade.write_inputs(tmp_path)
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.append_lines(handmade.march_lines())
    with StoreSource(tmp_path / "o.db") as source:
        report = build_report(
            source,
            ReportOptions(
                first=date(2026, 3, 1),
                last=date(2026, 3, 31),
                factors=load_factor_table(inputs["factors"]),
                branches=load_branches([inputs["branches"]]),
            ),
        )
    (path,) = write_html(report, tmp_path / "report.html")
    return path


def test_charts_render_in_headless_chromium(tmp_path: Path, page: Path) -> None:
    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    width, height, rows = read_png(shot.read_bytes())
    assert (width, height) == (1200, 2000)
    counts = colour_counts(rows)
    # March: electricity 4818.5 kWh and heat 3830 kWh, on an axis to 5000 over 250 px: bars of
    # ~240 and ~190 px by ~48 px wide; the legend swatches add 14 x 14. Ask for a good part.
    assert near(counts, rgb(CARRIER_COLOURS[EL])) > 3000
    assert near(counts, rgb(CARRIER_COLOURS[DH])) > 3000
    # ranking: aby 134.11 and kbh 34.91 kWh/m² a year, bars 20 px high
    assert near(counts, rgb(RANKING_COLOUR)) > 3000
    # and water, absent from the data, is absent from the picture
    assert near(counts, rgb(CARRIER_COLOURS[schema.Carrier.WATER.value])) < 50


def test_prints_on_a4_with_wide_tables_landscape(tmp_path: Path, page: Path) -> None:
    pdf = tmp_path / "report.pdf"
    done = chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri())
    assert pdf.exists(), done.stderr.decode(errors="replace")[-2000:]
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf.read_bytes())
    sizes = {(round(float(w)), round(float(h))) for w, h in boxes}
    # A4 is 595 x 842 points: summary, charts, factors and method portrait; the wide tables
    # (branches, monthly, data quality) landscape
    assert sizes == {(595, 842), (842, 595)}, sizes
