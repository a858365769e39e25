"""``roadpulse route``: the fastest route on a network, on free-flow or given travel times.

Prints the route JSON (docs/interfaces.md §3; see ``roadpulse.route_api``) on one line. With
``--weights W.csv`` (header ``segment_id,travel_time_s``; ``inf`` = closed) the listed segments
take those travel times and the rest stay at free flow; ``levels`` then follow from each listed
segment's speed against its free-flow speed (GB/T 33171), 0 (unknown) for the others.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from congestion.levels import level_from_ratio
from roadgraph import NetworkFileError, load_network
from roadgraph.routing import RouteError, Router

from .inputs import UsageError
from .route_api import plan_route

WEIGHTS_HEADER = ("segment_id", "travel_time_s")


def read_weights(path: Path, router: Router) -> tuple[np.ndarray, np.ndarray]:
    """Travel times (s) from a weights CSV over the router's free flow, and a mask of the rows
    listed. ``UsageError`` naming the file, line and problem for anything unusable."""
    travel_time = router.free_flow_s.copy()
    listed = np.zeros(len(travel_time), dtype=bool)
    index_of = router.network.segments.index_of
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if header is None or tuple(h.strip() for h in header) != WEIGHTS_HEADER:
                raise UsageError(f"{path}:1: expected the header {','.join(WEIGHTS_HEADER)}, got {header!r}")
            for row in rows:
                line = rows.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != 2:
                    raise UsageError(
                        f"{path}:{line}: expected 2 fields (segment_id,travel_time_s), got {len(row)}"
                    )
                sid, text = row[0].strip(), row[1].strip()
                i = index_of.get(sid)
                if i is None:
                    raise UsageError(f"{path}:{line}: unknown segment id {sid!r}")
                try:
                    value = float(text)
                except ValueError:
                    raise UsageError(f"{path}:{line}: travel_time_s {text!r} is not a number") from None
                if math.isnan(value) or value <= 0:
                    raise UsageError(f"{path}:{line}: travel_time_s must be > 0 (inf = closed), got {text!r}")
                travel_time[i] = value
                listed[i] = True
    except FileNotFoundError:
        raise UsageError(f"{path}: weights file not found") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise UsageError(f"{path}: not valid CSV: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    return travel_time, listed


def run_route(args: argparse.Namespace) -> int:
    """Handler of ``roadpulse route``."""
    try:
        network = load_network(args.network)
    except NetworkFileError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{exc.filename or args.network}: {exc.strerror or exc}") from None
    # one query: rebuilding landmark tables on the weights would cost more than it saves
    router = Router(network, u_turns=not args.no_u_turns, max_snap_m=args.max_snap_m, live_landmarks=False)
    if args.weights:
        travel_time, listed = read_weights(Path(args.weights), router)
        router.set_travel_times(travel_time)
        levels = np.zeros(len(network), dtype=np.int8)
        ratio = router.free_flow_s[listed] / travel_time[listed]
        levels[listed] = level_from_ratio(ratio)
        router.levels[:] = levels
    query = {
        key: value
        for key, value in (
            ("from", args.from_),
            ("to", args.to),
            ("from_segment", args.from_segment),
            ("to_segment", args.to_segment),
            ("alternatives", str(args.alternatives)),
            ("max_snap_m", str(args.max_snap_m)),
        )
        if value is not None
    }
    try:
        body = plan_route(router, query)
    except RouteError as exc:
        raise UsageError(str(exc)) from None
    json.dump(body, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
