"""Real loop readings for the tests: six hours of WSDOT I-90 data (tests/data/loops), as
ReadingBatches on a three-segment chain, one detector per station lane."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from congestion import ReadingBatch
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

WSDOT = Path(__file__).resolve().parents[1] / "data" / "loops" / "wsdot_i90_2018-05-08_0500-1100.csv"
#: Westbound: traffic meets station 430 first, then 380, then 353.
STATIONS = ("090es00430", "090es00380", "090es00353")


def wsdot_rows() -> tuple[list[str], pd.DataFrame]:
    with open(WSDOT, newline="") as fh:
        rows = list(csv.DictReader(fh))
    frame = pd.DataFrame(rows)
    frame["detector_id"] = frame["station"] + "_" + frame["lane"]
    start = pd.to_datetime(frame["date"] + " " + frame["time_start"]).dt.tz_localize("-07:00")
    frame["ts"] = start.map(lambda t: t.timestamp()) + 300.0
    frame["count"] = frame["volume_veh_per_5min"].astype(float)
    frame["occ"] = frame["occupancy_pct"].astype(float)
    frame["speed"] = frame["speed_mph"].astype(float) * 1.609344
    ids = sorted(frame["detector_id"].unique(), key=lambda d: (STATIONS.index(d[:10]), d))
    return ids, frame


def wsdot_setup(
    make_network: Callable[..., RoadNetwork], ids: list[str]
) -> tuple[RoadNetwork, DetectorRegistry]:
    network = make_network(3, lanes=4, speed_limit_kmh=100.0)
    reg = DetectorRegistry(
        detector_id=np.array(ids, dtype=object),
        segment_index=np.array([STATIONS.index(d[:10]) for d in ids], dtype=np.int32),
        lane=np.array([int(d[-1]) - 1 for d in ids], dtype=np.int16),
        pos_m=np.full(len(ids), np.nan, dtype=np.float32),
        kind=np.full(len(ids), "loop", dtype=object),
    )
    return network, reg


def wsdot_batch(frame: pd.DataFrame, ids: list[str]) -> ReadingBatch:
    pos = {d: k for k, d in enumerate(ids)}
    n = len(frame)
    return ReadingBatch(
        detector_index=np.array([pos[d] for d in frame["detector_id"]], dtype=np.int32),
        ts=frame["ts"].to_numpy(np.float64),
        interval_s=np.full(n, 300.0, dtype=np.float32),
        count=frame["count"].to_numpy(np.float32),
        occupancy_pct=frame["occ"].to_numpy(np.float32),
        speed_kmh=frame["speed"].to_numpy(np.float32),
        lane=np.full(n, -1, dtype=np.int16),
    )
