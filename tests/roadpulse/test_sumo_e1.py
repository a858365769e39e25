"""SUMO induction-loop output → spec readings."""
# ruff: noqa: E501  (SUMO output lines are quoted verbatim)

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.sumo_e1 import SumoOutputError, convert_e1

E1 = """<?xml version="1.0" encoding="UTF-8"?>
<detector>
    <interval begin="60.00" end="120.00" id="e1_b" nVehContrib="0" flow="0.00" occupancy="0.00" speed="-1.00" length="-1.00"/>
    <interval begin="0.00" end="60.00" id="e1_a" nVehContrib="3" flow="180.00" occupancy="2.51" speed="13.02" length="4.30"/>
</detector>
"""


def test_converts_and_sorts_by_time(tmp_path: Path) -> None:
    path = tmp_path / "e1.xml"
    path.write_text(E1)
    out = io.StringIO()
    assert convert_e1(path, out) == 2
    first, second = (json.loads(x) for x in out.getvalue().splitlines())
    assert first == {
        "detector_id": "e1_a",
        "ts": 60,
        "interval_s": 60,
        "count": 3,
        "occupancy_pct": 2.51,
        "speed_kmh": 46.87,
    }
    assert second["speed_kmh"] is None and second["count"] == 0 and second["ts"] == 120


def test_occupancy_over_100_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "e1.xml"
    path.write_text(
        '<detector><interval begin="0" end="60" id="q" nVehContrib="1" occupancy="129.67" speed="0.4"/></detector>'
    )
    out = io.StringIO()
    convert_e1(path, out)
    assert json.loads(out.getvalue())["occupancy_pct"] == 100.0


def test_epoch_base(tmp_path: Path) -> None:
    path = tmp_path / "e1.xml"
    path.write_text(E1)
    out = io.StringIO()
    convert_e1(path, out, epoch_base=1_776_729_600)
    assert json.loads(out.getvalue().splitlines()[0])["ts"] == 1_776_729_660


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<detector><interval begin='0' end='60' id='a'/></detector>", "without attribute 'nVehContrib'"),
        ("<detector><interval", "not valid XML"),
        (
            "<detector><interval begin='x' end='60' id='a' nVehContrib='1' occupancy='1'/></detector>",
            "id='a'",
        ),
    ],
)
def test_bad_files(tmp_path: Path, xml: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(xml)
    with pytest.raises(SumoOutputError, match=message):
        convert_e1(path, io.StringIO())


def test_cli_bad_file_exits_2_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text("<detector><interval")
    proc = subprocess.run(
        [sys.executable, "-m", "roadpulse.cli", "sumo-readings", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "not valid XML" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_gzipped_output_converts_the_same(tmp_path: Path) -> None:
    import gzip

    plain, packed = tmp_path / "e1.xml", tmp_path / "e1.xml.gz"
    plain.write_text(E1)
    packed.write_bytes(gzip.compress(E1.encode()))
    a, b = io.StringIO(), io.StringIO()
    convert_e1(plain, a)
    convert_e1(packed, b)
    assert a.getvalue() == b.getvalue() != ""
    (tmp_path / "cut.xml.gz").write_bytes(gzip.compress(E1.encode())[:40])
    with pytest.raises(SumoOutputError, match=r"cut\.xml\.gz: not valid XML"):
        convert_e1(tmp_path / "cut.xml.gz", io.StringIO())
