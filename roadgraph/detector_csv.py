"""Read a detector registry from CSV.

The first line is the header (column names are matched case-insensitively; unknown columns are
ignored so registries can carry their own notes). Columns:

``detector_id`` (required, unique)
    Non-empty text.
``segment_id``
    Places the detector on that segment.
``lon``, ``lat`` (WGS84) — or ``x``, ``y`` in the network's metric frame
    Used when ``segment_id`` is absent or empty on a row: the detector is snapped to the nearest
    segment within ``max_distance_m`` (default 50 m) whose direction at the snapped point is within
    ``max_heading_diff_deg`` (default 60°) of ``heading_deg`` when that is given.
``heading_deg``
    Compass degrees clockwise from north, the direction of the traffic the detector measures.
``lane``
    0 = the rightmost lane; must be below the segment's lane count. Empty = unknown (-1).
``pos_m``
    Distance from the segment's start, 0..length_m. When empty and the row was snapped from
    coordinates, the snapped position; otherwise unknown (NaN).
``kind``
    ``loop`` (default), ``radar`` or ``camera``.

Every error names the file, the line (the header is line 1) and the column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detectors import DETECTOR_KINDS, DetectorRegistry
from .errors import NetworkFileError
from .network import RoadNetwork
from .snapping import SegmentIndex

KNOWN_COLUMNS: tuple[str, ...] = (
    "detector_id",
    "segment_id",
    "lon",
    "lat",
    "x",
    "y",
    "heading_deg",
    "lane",
    "pos_m",
    "kind",
)


@dataclass
class _Row:
    line: int
    detector_id: str
    segment_index: int  # -1 until snapped
    point: tuple[float, float] | None  # lon/lat or x/y still to be snapped
    point_is_lonlat: bool
    heading_deg: float
    lane: int
    pos_m: float
    kind: str


class _Line:
    """One CSV data line: typed access to its cells with errors naming file, line and column."""

    def __init__(self, path: Path, line: int, cells: dict[str, str]) -> None:
        self.path = path
        self.line = line
        self.cells = cells

    def fail(self, column: str, problem: str) -> NetworkFileError:
        return NetworkFileError(str(self.path), f"column {column!r}: {problem}", line=self.line)

    def text(self, column: str) -> str:
        return self.cells.get(column, "").strip()

    def number(self, column: str, *, low: float | None = None, high: float | None = None) -> float | None:
        raw = self.text(column)
        if raw == "":
            return None
        try:
            value = float(raw)
        except ValueError:
            raise self.fail(column, f"expected a number, got {raw!r}") from None
        if (
            not math.isfinite(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            bounds = (
                f" in {low}..{high}"
                if low is not None and high is not None
                else (f" >= {low}" if low is not None else "")
            )
            raise self.fail(column, f"expected a finite number{bounds}, got {raw!r}")
        return value

    def integer(self, column: str) -> int | None:
        raw = self.text(column)
        if raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise self.fail(column, f"expected an integer >= 0, got {raw!r}") from None
        if value < 0:
            raise self.fail(column, f"expected an integer >= 0, got {raw!r}")
        return value


def _read_header(path: Path, header: list[str] | None) -> list[str]:
    """The header's column names, normalised (stripped, lower case) and checked."""
    if header is None:
        raise NetworkFileError(str(path), "empty file; expected a CSV header with detector_id", line=1)
    columns = [name.strip().lower() for name in header]
    duplicates = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicates:
        raise NetworkFileError(str(path), f"header repeats column(s) {', '.join(duplicates)}", line=1)
    if "detector_id" not in columns:
        raise NetworkFileError(
            str(path),
            f"header has no 'detector_id' column (found: {', '.join(columns) or 'nothing'})",
            line=1,
        )
    for a, b in (("lon", "lat"), ("x", "y")):
        if (a in columns) != (b in columns):
            missing = b if a in columns else a
            raise NetworkFileError(
                str(path), f"header has {a if a in columns else b!r} but no {missing!r}", line=1
            )
    if "segment_id" not in columns and "lon" not in columns and "x" not in columns:
        raise NetworkFileError(
            str(path), "header needs a 'segment_id' column or 'lon','lat' columns to place detectors", line=1
        )
    return columns


def detectors_from_csv(
    path: str | Path,
    network: RoadNetwork,
    *,
    max_distance_m: float = 50.0,
    max_heading_diff_deg: float = 60.0,
) -> DetectorRegistry:
    """Read a detector CSV (see the module docstring) against ``network``.

    Rows given by coordinates are snapped in one vectorised pass. Raises ``NetworkFileError``
    naming the file, line and column for any unusable value, unknown segment, lane out of range,
    duplicate detector id, or a point with no segment in range.
    """
    path = Path(path)
    segments = network.segments
    rows: list[_Row] = []
    first_line: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.reader(stream)
            columns = _read_header(path, next(reader, None))
            for cells in reader:
                line = reader.line_num
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(columns):
                    raise NetworkFileError(
                        str(path),
                        f"expected {len(columns)} fields as in the header, got {len(cells)}",
                        line=line,
                    )
                rows.append(
                    _read_row(_Line(path, line, dict(zip(columns, cells, strict=True))), network, first_line)
                )
    except FileNotFoundError:
        raise NetworkFileError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NetworkFileError(str(path), f"cannot read file as UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise NetworkFileError(str(path), f"malformed CSV: {exc}") from None

    _snap_rows(path, rows, network, max_distance_m=max_distance_m, max_heading_diff_deg=max_heading_diff_deg)
    for row in rows:
        where = _Line(path, row.line, {})
        if row.lane >= 0 and row.lane >= segments.lanes[row.segment_index]:
            raise where.fail(
                "lane",
                f"lane {row.lane} does not exist on segment {segments.segment_id[row.segment_index]!r}, "
                f"which has {segments.lanes[row.segment_index]} lane(s) (0 = rightmost)",
            )
        length = float(segments.length_m[row.segment_index])
        if not np.isnan(row.pos_m) and row.pos_m > length:
            raise where.fail(
                "pos_m",
                f"{row.pos_m} is beyond the end of segment {segments.segment_id[row.segment_index]!r} "
                f"({length:.1f} m long)",
            )
    return DetectorRegistry(
        detector_id=np.array([r.detector_id for r in rows], dtype=object),
        segment_index=np.array([r.segment_index for r in rows], dtype=np.int32),
        lane=np.array([r.lane for r in rows], dtype=np.int16),
        pos_m=np.array([r.pos_m for r in rows], dtype=np.float32),
        kind=np.array([r.kind for r in rows], dtype=object),
    )


def _read_row(line: _Line, network: RoadNetwork, first_line: dict[str, int]) -> _Row:
    detector_id = line.text("detector_id")
    if not detector_id:
        raise line.fail("detector_id", "empty; every detector needs an id")
    if detector_id in first_line:
        raise line.fail("detector_id", f"{detector_id!r} is already used on line {first_line[detector_id]}")
    first_line[detector_id] = line.line

    segment_index = -1
    point: tuple[float, float] | None = None
    segment_id = line.text("segment_id")
    if segment_id:
        if segment_id not in network.segments.index_of:
            raise line.fail("segment_id", f"unknown segment {segment_id!r} (not in {network.source})")
        segment_index = network.segments.index_of[segment_id]
    elif line.text("lon") or line.text("lat"):
        if network.projection is None:
            raise line.fail(
                "lon",
                f"the network {network.source} has no lon/lat; give segment_id, or x,y in its coordinates",
            )
        lon = line.number("lon", low=-180.0, high=180.0)
        lat = line.number("lat", low=-90.0, high=90.0)
        if lon is None or lat is None:
            raise line.fail("lat" if lon is not None else "lon", "empty while the other coordinate is given")
        point = (lon, lat)
    elif line.text("x") or line.text("y"):
        x = line.number("x")
        y = line.number("y")
        if x is None or y is None:
            raise line.fail("y" if x is not None else "x", "empty while the other coordinate is given")
        point = (x, y)
    else:
        raise line.fail("segment_id", "no location: give segment_id, or lon and lat")

    heading = line.number("heading_deg")
    kind = line.text("kind").lower() or "loop"
    if kind not in DETECTOR_KINDS:
        raise line.fail("kind", f"expected one of {', '.join(DETECTOR_KINDS)}, got {line.text('kind')!r}")
    lane = line.integer("lane")
    pos = line.number("pos_m", low=0.0)
    return _Row(
        line=line.line,
        detector_id=detector_id,
        segment_index=segment_index,
        point=point,
        point_is_lonlat=bool(line.text("lon")),
        heading_deg=math.nan if heading is None else heading % 360.0,
        lane=-1 if lane is None else lane,
        pos_m=math.nan if pos is None else pos,
        kind=kind,
    )


def _snap_rows(
    path: Path, rows: list[_Row], network: RoadNetwork, *, max_distance_m: float, max_heading_diff_deg: float
) -> None:
    """Give every row that has a point a segment (and a position when it has none), in bulk."""
    pending = [r for r in rows if r.point is not None]
    if not pending:
        return
    index = SegmentIndex(network)
    for lonlat in (True, False):
        group = [r for r in pending if r.point_is_lonlat == lonlat]
        if not group:
            continue
        coords = np.array([r.point for r in group], dtype=np.float64)
        headings = np.array([r.heading_deg for r in group], dtype=np.float64)
        snap = index.snap_lonlat if lonlat else index.snap_xy
        result = snap(
            coords[:, 0],
            coords[:, 1],
            heading_deg=headings,
            max_distance_m=max_distance_m,
            max_heading_diff_deg=max_heading_diff_deg,
        )
        missed = np.flatnonzero(~result.found)
        if missed.size:
            row = group[int(missed[0])]
            x, y = row.point or (math.nan, math.nan)
            heading_note = (
                f" heading {row.heading_deg:g}° ± {max_heading_diff_deg:g}°"
                if not math.isnan(row.heading_deg)
                else ""
            )
            others = f" ({missed.size - 1} more such rows)" if missed.size > 1 else ""
            raise NetworkFileError(
                str(path),
                f"column {'lon' if lonlat else 'x'!r}: no segment{heading_note} "
                f"within {max_distance_m:g} m of ({x:g}, {y:g}){others}",
                line=row.line,
            )
        for k, row in enumerate(group):
            row.segment_index = int(result.segment_index[k])
            if math.isnan(row.pos_m):
                row.pos_m = float(result.pos_m[k])
