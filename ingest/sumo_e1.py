"""SUMO induction-loop (E1) output → the spec's detector readings, one JSON object per line.

SUMO writes, per loop and aggregation interval::

    <interval begin="0.00" end="60.00" id="e1_0" nVehContrib="3" flow="180.00"
              occupancy="2.51" speed="13.02" harmonicMeanSpeed="12.90" length="4.30" .../>

and each becomes ``{"detector_id": "e1_0", "ts": end + epoch_base, "interval_s": end - begin,
"count": nVehContrib, "occupancy_pct": occupancy, "speed_kmh": speed * 3.6 | null}``.
``speed`` is the arithmetic (time-mean) spot speed, what a field loop reports; SUMO writes -1
when no vehicle passed, which becomes ``null``. SUMO's occupancy can exceed 100 % under a standing
queue (a vehicle's whole time on the loop is booked into the interval it leaves in); it is capped
at 100. ``ts`` is the END of the interval, as the spec
says. With the default ``epoch_base = 0`` the readings keep SUMO's simulation seconds, so replay
ticks line up with SUMO's own ``<edgeData>`` intervals.
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class SumoOutputError(ValueError):
    """An E1 output file that cannot be converted (message names file and element)."""


def iter_e1_readings(path: str | Path, *, epoch_base: float = 0.0) -> Iterator[dict[str, Any]]:
    """Yield one spec reading per ``<interval>`` element of a SUMO E1 output file."""
    # SUMO writes gzip itself when the output file name ends in .gz.
    source: Any = gzip.open(path, "rb") if str(path).endswith(".gz") else path  # noqa: SIM115 (closed below)
    try:
        for _event, elem in ET.iterparse(source, events=("end",)):
            if elem.tag != "interval":
                continue
            yield _reading(elem, path, epoch_base)
            elem.clear()
    except (ET.ParseError, EOFError, gzip.BadGzipFile) as exc:
        raise SumoOutputError(f"{path}: not valid XML: {exc}") from None
    finally:
        if source is not path:
            source.close()


def _reading(elem: ET.Element, path: str | Path, epoch_base: float) -> dict[str, Any]:
    try:
        begin = float(elem.attrib["begin"])
        end = float(elem.attrib["end"])
        speed_ms = float(elem.attrib.get("speed", "-1"))
        reading: dict[str, Any] = {
            "detector_id": elem.attrib["id"],
            "ts": _number(end + epoch_base),
            "interval_s": _number(end - begin),
            "count": int(float(elem.attrib["nVehContrib"])),
            # SUMO books a vehicle's whole time on the loop into the interval it leaves in, so
            # a loop under a standing queue can report more than 100 %: it was fully occupied.
            "occupancy_pct": round(min(float(elem.attrib["occupancy"]), 100.0), 3),
            "speed_kmh": round(speed_ms * 3.6, 2) if speed_ms >= 0 else None,
        }
    except KeyError as exc:
        raise SumoOutputError(f"{path}: <interval> without attribute {exc.args[0]!r}") from None
    except ValueError as exc:
        raise SumoOutputError(f"{path}: <interval id={elem.attrib.get('id')!r}>: {exc}") from None
    return reading


def _number(x: float) -> float | int:
    return int(x) if x == int(x) else round(x, 3)


def convert_e1(path: str | Path, out: IO[str], *, epoch_base: float = 0.0) -> int:
    """Write readings sorted by ``ts`` (then detector) to ``out``; return how many."""
    readings = sorted(
        iter_e1_readings(path, epoch_base=epoch_base), key=lambda r: (r["ts"], r["detector_id"])
    )
    for reading in readings:
        out.write(json.dumps(reading, separators=(",", ":")))
        out.write("\n")
    return len(readings)
