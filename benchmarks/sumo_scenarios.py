"""SUMO scenarios for ground truth: a network, demand, induction loops and edge truth.

``build_grid_scenario`` makes a signalised grid with ``netgenerate``, a quiet first third and a
peak with ``randomTrips.py``, induction loops on about half the edges (every lane, at 70 % of the
lane length, 60 s intervals) and ``<edgeData>`` every 300 s and 60 s, runs ``sumo`` and converts
the loop output to the spec's readings JSONL. Everything it writes goes to ``workdir``.

Used by the integration tests (a small grid) and by the accuracy benchmarks (larger ones).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scenario:
    workdir: Path
    net: Path
    detectors: Path  # SUMO additional file with <inductionLoop> elements
    e1_output: Path
    readings: Path  # spec JSONL converted from e1_output
    edgedata_300: Path
    edgedata_60: Path
    duration_s: int
    loop_edges: frozenset[str]


def sumo_home() -> Path | None:
    """SUMO_HOME of the pip-installed eclipse-sumo, or of the environment."""
    try:
        import sumo  # type: ignore[import-not-found]

        return Path(sumo.SUMO_HOME)
    except ImportError:
        home = os.environ.get("SUMO_HOME")
        return Path(home) if home else None


def sumo_binary(name: str) -> str | None:
    """A SUMO binary next to this Python (the venv) or on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def sumo_available() -> bool:
    return all(sumo_binary(b) for b in ("sumo", "netgenerate", "netconvert")) and sumo_home() is not None


def _workdir(workdir: str | Path) -> Path:
    """The scenario's folder, created; fails early, and plainly, where SUMO is missing."""
    if not sumo_available():
        raise RuntimeError("SUMO is not installed (pip install eclipse-sumo sumolib)")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    return work


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def build_grid_scenario(
    workdir: str | Path,
    *,
    grid_n: int = 4,
    length_m: float = 200.0,
    lanes: int = 2,
    duration_s: int = 3600,
    quiet_period_s: float = 4.0,
    peak_period_s: float = 0.9,
    loop_share: float = 0.5,
    seed: int = 1,
) -> Scenario:
    """Build and run a signalised-grid scenario; see the module docstring."""
    work = _workdir(workdir)
    net = work / "grid.net.xml"
    _run(
        [
            str(sumo_binary("netgenerate")),
            "--grid",
            f"--grid.number={grid_n}",
            f"--grid.length={length_m}",
            f"--default.lanenumber={lanes}",
            "--default-junction-type=traffic_light",
            "--no-turnarounds",
            "--output-file",
            str(net),
            f"--seed={seed}",
        ],
        work,
    )
    return build_scenario_on(
        net,
        work,
        duration_s=duration_s,
        quiet_period_s=quiet_period_s,
        peak_period_s=peak_period_s,
        loop_share=loop_share,
        min_trip_m=2 * length_m,
        seed=seed,
    )


def build_city_scenario(
    osm_file: str | Path,
    workdir: str | Path,
    *,
    duration_s: int = 1800,
    quiet_period_s: float = 3.0,
    peak_period_s: float = 0.8,
    loop_share: float = 0.5,
    seed: int = 1,
) -> Scenario:
    """A real-city scenario: ``netconvert`` of an OSM extract (cars only, signals guessed, UTM
    projection kept so the network has lon/lat), then the same demand, loops and truth."""
    work = _workdir(workdir)
    osm = Path(osm_file)
    if osm.suffix == ".bz2":  # netconvert reads plain or gzipped XML only
        import bz2

        plain = work / osm.with_suffix("").name
        plain.write_bytes(bz2.decompress(osm.read_bytes()))
        osm = plain
    net = work / "city.net.xml"
    _run(
        [
            str(sumo_binary("netconvert")),
            "--osm-files",
            str(osm),
            "--output-file",
            str(net),
            "--geometry.remove",
            "--roundabouts.guess",
            "--ramps.guess",
            "--junctions.join",
            "--tls.guess-signals",
            "--tls.discard-simple",
            "--tls.join",
            "--no-turnarounds",
            "--keep-edges.by-vclass",
            "passenger",
            "--remove-edges.isolated",
            f"--seed={seed}",
        ],
        work,
    )
    return build_scenario_on(
        net,
        work,
        duration_s=duration_s,
        quiet_period_s=quiet_period_s,
        peak_period_s=peak_period_s,
        loop_share=loop_share,
        min_trip_m=300.0,
        seed=seed,
    )


def build_scenario_on(
    net: Path,
    work: Path,
    *,
    duration_s: int,
    quiet_period_s: float,
    peak_period_s: float,
    loop_share: float,
    min_trip_m: float,
    seed: int,
) -> Scenario:
    """Demand (quiet first third, then a peak), loops, truth and a SUMO run on an existing net."""
    random_trips = Path(str(sumo_home())) / "tools" / "randomTrips.py"
    third = duration_s // 3
    routes = []
    for name, begin, end, period in (
        ("quiet", 0, third, quiet_period_s),
        ("peak", third, duration_s, peak_period_s),
    ):
        out = work / f"{name}.rou.xml"
        _run(
            [
                sys.executable,
                str(random_trips),
                "-n",
                str(net),
                "-b",
                str(begin),
                "-e",
                str(end),
                "-p",
                str(period),
                "--fringe-factor",
                "5",
                "--min-distance",
                str(min_trip_m),
                "--seed",
                str(seed + begin),
                "--prefix",
                name,
                "--validate",
                "-r",
                str(out),
                "-o",
                str(work / f"{name}.trips.xml"),
            ],
            work,
        )
        routes.append(out)
    detectors, loop_edges = write_loops(net, work / "loops.add.xml", share=loop_share, seed=seed)
    e1 = work / "e1.xml"
    truth_add = work / "truth.add.xml"
    truth_add.write_text(
        "<additional>\n"
        '  <edgeData id="truth300" period="300" file="edgedata300.xml" excludeEmpty="true"/>\n'
        '  <edgeData id="truth60" period="60" file="edgedata60.xml" excludeEmpty="true"/>\n'
        "</additional>\n"
    )
    _run(
        [
            str(sumo_binary("sumo")),
            "-n",
            str(net),
            "-r",
            ",".join(str(r) for r in routes),
            "-a",
            f"{detectors},{truth_add}",
            "--begin",
            "0",
            "--end",
            str(duration_s),
            "--no-step-log",
            "--no-warnings",
            "--time-to-teleport",
            "300",
            "--seed",
            str(seed),
        ],
        work,
    )
    from ingest.sumo_e1 import convert_e1

    readings = work / "readings.jsonl"
    with open(readings, "w", encoding="utf-8") as fh:
        convert_e1(e1, fh)
    return Scenario(
        workdir=work,
        net=net,
        detectors=detectors,
        e1_output=e1,
        readings=readings,
        edgedata_300=work / "edgedata300.xml",
        edgedata_60=work / "edgedata60.xml",
        duration_s=duration_s,
        loop_edges=frozenset(loop_edges),
    )


def write_loops(
    net: Path, out: Path, *, share: float, seed: int, rel_pos: float = 0.7, period_s: int = 60
) -> tuple[Path, list[str]]:
    """Induction loops on every lane of a random ``share`` of the normal edges, at ``rel_pos``."""
    rng = random.Random(seed)
    edges = []
    for edge in ET.parse(net).getroot().iter("edge"):
        if edge.get("function") in {"internal", "walkingarea", "crossing"}:
            continue
        edges.append(edge)
    chosen = [e for e in edges if rng.random() < share]
    lines = ["<additional>"]
    for edge in chosen:
        for lane in edge.iter("lane"):
            pos = float(lane.get("length", "0")) * rel_pos
            lid = lane.get("id")
            lines.append(
                f'  <inductionLoop id="e1_{lid}" lane="{lid}" pos="{pos:.2f}" '
                f'period="{period_s}" file="e1.xml"/>'
            )
    lines.append("</additional>")
    out.write_text("\n".join(lines) + "\n")
    return out, [str(e.get("id")) for e in chosen]


def read_edgedata(path: Path) -> dict[tuple[float, str], float]:
    """{(interval end, edge id): mean speed km/h} from an ``<edgeData>`` output file."""
    truth: dict[tuple[float, str], float] = {}
    for interval in ET.parse(path).getroot().iter("interval"):
        end = float(interval.get("end", "0"))
        for edge in interval.iter("edge"):
            speed = edge.get("speed")
            if speed is not None and float(edge.get("sampledSeconds", "0")) > 0:
                truth[(end, str(edge.get("id")))] = float(speed) * 3.6
    return truth
