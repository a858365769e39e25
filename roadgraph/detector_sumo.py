"""Read a detector registry from a SUMO additional file (``<inductionLoop>`` elements).

``<inductionLoop id="..." lane="EDGE_INDEX" pos="..." [friendlyPos="true"]/>`` (also the older
``<e1Detector>`` and ``<instantInductionLoop>``): the lane id minus its trailing ``_<index>`` is
the edge id, which must be a segment of the network. On networks loaded from SUMO the SUMO lane
index is translated to the segment's car-lane index (SUMO counts sidewalks and other lanes that
roadpulse does not: see ``meta["sumo_lanes"]``); elsewhere it is taken as is. ``pos`` is metres
from the lane's start, or from its end when negative, as in SUMO; a position outside the lane is
an error unless ``friendlyPos`` is true, in which case it is clamped like SUMO does. The position
is rescaled from the lane's length to the segment's ``length_m``. ``kind`` is ``loop``.

A loop on a lane closed to passenger cars (a sidewalk, a bike or bus lane) or on an edge that is not
a segment for that reason (a footway, a railway) is valid SUMO but measures no car traffic: it is
not registered, and ``DetectorRegistry.ignored`` says why, so its readings are refused with that
reason. A lane on an edge the network does not have at all is an error.

Errors name the file, the line of the element and the attribute.
"""

from __future__ import annotations

import gzip
import math
import xml.parsers.expat
from pathlib import Path

import numpy as np

from .detectors import DetectorRegistry
from .errors import NetworkFileError
from .network import RoadNetwork

#: Element names that define an induction loop in SUMO additional files.
LOOP_ELEMENTS: frozenset[str] = frozenset({"inductionLoop", "e1Detector", "instantInductionLoop"})

_TRUE = {"true", "1", "yes", "on", "x"}


def detectors_from_sumo(path: str | Path, network: RoadNetwork) -> DetectorRegistry:
    """Read the induction loops of a SUMO additional file (see the module docstring).

    Raises ``NetworkFileError`` naming file, line and attribute for malformed XML, missing or
    duplicate ids, lanes on internal or unknown edges, lanes without passenger cars, and
    positions outside the lane; and when the file holds no induction loop at all.
    """
    path = Path(path)
    ids: list[str] = []
    segment_index: list[int] = []
    lanes: list[int] = []
    positions: list[float] = []
    first_line: dict[str, int] = {}
    ignored: dict[str, str] = {}
    parser = xml.parsers.expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag not in LOOP_ELEMENTS:
            return
        line = parser.CurrentLineNumber
        detector_id = attrs.get("id", "")
        if not detector_id:
            raise NetworkFileError(str(path), f"<{tag}> attribute 'id': missing or empty", line=line)
        if detector_id in first_line:
            raise NetworkFileError(
                str(path),
                f"<{tag}> attribute 'id': {detector_id!r} is already used on line {first_line[detector_id]}",
                line=line,
            )
        first_line[detector_id] = line
        try:
            seg, lane, pos = _place(path, line, tag, attrs, network)
        except _NoCarTrafficError as why:
            ignored[detector_id] = f"{why} ({path.name}:{line})"
            return
        ids.append(detector_id)
        segment_index.append(seg)
        lanes.append(lane)
        positions.append(pos)

    parser.StartElementHandler = start
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            parser.ParseFile(stream)
    except FileNotFoundError:
        raise NetworkFileError(str(path), "no such file") from None
    except xml.parsers.expat.ExpatError as exc:
        raise NetworkFileError(
            str(path),
            f"not well-formed XML (column {exc.offset}): {xml.parsers.expat.ErrorString(exc.code)}",
            line=exc.lineno,
        ) from None
    except OSError as exc:
        raise NetworkFileError(str(path), f"cannot read file: {exc}") from None
    if not ids:
        detail = f" ({len(ignored)} on lanes closed to passenger cars)" if ignored else ""
        raise NetworkFileError(str(path), f"no usable <inductionLoop> elements found{detail}")
    return DetectorRegistry(
        detector_id=np.array(ids, dtype=object),
        segment_index=np.array(segment_index, dtype=np.int32),
        lane=np.array(lanes, dtype=np.int16),
        pos_m=np.array(positions, dtype=np.float32),
        kind=np.array(["loop"] * len(ids), dtype=object),
        ignored=ignored,
    )


class _NoCarTrafficError(Exception):
    """A loop that is valid SUMO but cannot see passenger cars (the message says why)."""


def _place(
    path: Path, line: int, tag: str, attrs: dict[str, str], network: RoadNetwork
) -> tuple[int, int, float]:
    """Segment index, car-lane index and position (in ``length_m`` terms) of one loop element."""

    def fail(attribute: str, problem: str) -> NetworkFileError:
        return NetworkFileError(str(path), f"<{tag}> attribute {attribute!r}: {problem}", line=line)

    lane_id = attrs.get("lane", "")
    edge_id, sep, index_text = lane_id.rpartition("_")
    if not sep or not edge_id or not index_text.isdigit():
        raise fail("lane", f"expected a SUMO lane id '<edge>_<index>', got {lane_id!r}")
    if edge_id.startswith(":"):
        raise fail(
            "lane", f"{lane_id!r} lies on an internal edge (inside a junction), which is not a segment"
        )
    segments = network.segments
    if edge_id not in segments.index_of:
        skipped = network.meta.get("skipped_edges", {})
        if edge_id in skipped:
            raise _NoCarTrafficError(f"lane {lane_id!r} is on edge {edge_id!r}, {skipped[edge_id]}")
        raise fail("lane", f"edge {edge_id!r} of lane {lane_id!r} is not a segment in {network.source}")
    seg = segments.index_of[edge_id]
    sumo_index = int(index_text)
    lane_table = network.meta.get("sumo_lanes", {}).get(edge_id)
    if lane_table is not None:
        if sumo_index not in lane_table:
            raise fail("lane", f"edge {edge_id!r} has no lane {sumo_index}")
        car_lane, lane_length = lane_table[sumo_index]
        if car_lane < 0:
            raise _NoCarTrafficError(f"lane {lane_id!r} does not admit passenger cars")
    else:
        car_lane, lane_length = sumo_index, float(segments.length_m[seg])
        if car_lane >= segments.lanes[seg]:
            raise fail("lane", f"segment {edge_id!r} has {segments.lanes[seg]} lane(s), no lane {sumo_index}")

    pos_text = attrs.get("pos", "")
    try:
        pos = float(pos_text)
    except ValueError:
        raise fail("pos", f"expected a number, got {pos_text!r}") from None
    if not math.isfinite(pos):
        raise fail("pos", f"expected a finite number, got {pos_text!r}")
    if pos < 0:
        pos += lane_length  # SUMO: negative positions count back from the lane's end
    if not 0.0 <= pos <= lane_length:
        if attrs.get("friendlyPos", "false").strip().lower() not in _TRUE:
            raise fail(
                "pos",
                f"{pos_text} is outside lane {lane_id!r} ({lane_length:.2f} m long; "
                'use -length..length or friendlyPos="true")',
            )
        pos = min(max(pos, 0.0), lane_length)
    scale = float(segments.length_m[seg]) / lane_length if lane_length > 0 else 1.0
    return seg, car_lane, min(pos * scale, float(segments.length_m[seg]))
