"""Builders for small networks, registries and reading batches, and the slow, obvious numpy/pandas
references that the jitted kernels are compared with.

The references are written from the method as documented (``congestion.engine`` and
``congestion.index`` docstrings), column-at-a-time, without looking at the kernels' loops.
Fixtures hand them out so that test modules need not import this file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from congestion import EngineSettings, ReadingBatch
from congestion._kernels import MAX_LANE_BIT
from congestion.levels import RATIO_UPPER_BOUNDS
from congestion.state import SEGMENT_SCRATCH_RECORD, aligned_records
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork, SegmentTable

# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def build_network(
    n_segments: int,
    *,
    lanes: int | Sequence[int] | np.ndarray = 2,
    speed_limit_kmh: float | Sequence[float] | np.ndarray = 50.0,
    length_m: float | Sequence[float] | np.ndarray = 100.0,
    signalised: bool = False,
) -> RoadNetwork:
    """A chain of ``n_segments`` segments s0, s1, ... (n0 -> n1 -> ...) with no geometry and an
    empty graph."""
    return build_pairs_network(
        [(f"n{i}", f"n{i + 1}") for i in range(n_segments)],
        lanes=lanes,
        speed_limit_kmh=speed_limit_kmh,
        length_m=length_m,
        signalised=signalised,
    )


def build_pairs_network(
    pairs: Sequence[tuple[str, str]],
    *,
    lanes: int | Sequence[int] | np.ndarray = 1,
    speed_limit_kmh: float | Sequence[float] | np.ndarray = 50.0,
    length_m: float | Sequence[float] | np.ndarray = 100.0,
    signalised: bool = True,
) -> RoadNetwork:
    """Segments s0, s1, ... from (from_node, to_node) pairs (one lane, 100 m, 50 km/h unless
    given), a signal at every downstream junction unless ``signalised`` is False."""
    n = len(pairs)
    none = np.full(n, None, dtype=object)
    segments = SegmentTable(
        segment_id=np.array([f"s{i}" for i in range(n)], dtype=object),
        from_node=np.array([a for a, _ in pairs], dtype=object),
        to_node=np.array([b for _, b in pairs], dtype=object),
        length_m=np.broadcast_to(np.asarray(length_m, dtype=np.float64), (n,)).copy(),
        lanes=np.broadcast_to(np.asarray(lanes, dtype=np.int16), (n,)).copy(),
        road_class=np.zeros(n, dtype=np.int8),
        speed_limit_kmh=np.broadcast_to(np.asarray(speed_limit_kmh, dtype=np.float32), (n,)).copy(),
        name=np.full(n, "", dtype=object),
        geometry=none,
        geometry_m=none.copy(),
        junction_signalised=np.full(n, signalised),
    )
    return RoadNetwork(graph=nx.MultiDiGraph(), segments=segments, source="test", has_lonlat=False)


def build_registry(
    segment_index: Sequence[int] | np.ndarray,
    *,
    lane: Sequence[int] | np.ndarray | None = None,
    kind: Sequence[str] | np.ndarray | None = None,
) -> DetectorRegistry:
    """Detectors d0, d1, ... on the given segments; lane -1 and kind "loop" unless given."""
    seg = np.asarray(segment_index, dtype=np.int32)
    n = len(seg)
    return DetectorRegistry(
        detector_id=np.array([f"d{k}" for k in range(n)], dtype=object),
        segment_index=seg,
        lane=np.full(n, -1, dtype=np.int16) if lane is None else np.asarray(lane, dtype=np.int16),
        pos_m=np.full(n, np.nan, dtype=np.float32),
        kind=np.full(n, "loop", dtype=object) if kind is None else np.asarray(kind, dtype=object),
    )


def build_batch(
    detector_index: Sequence[int] | np.ndarray,
    ts: Sequence[float] | np.ndarray | float,
    *,
    count: Sequence[float] | np.ndarray | float = 10.0,
    occupancy_pct: Sequence[float] | np.ndarray | float = 10.0,
    speed_kmh: Sequence[float] | np.ndarray | float = np.nan,
    interval_s: Sequence[float] | np.ndarray | float = 30.0,
    lane: Sequence[int] | np.ndarray | int = -1,
) -> ReadingBatch:
    """A ReadingBatch; scalars are broadcast to every row."""
    det = np.asarray(detector_index, dtype=np.int32)
    n = len(det)

    def col(value: object, dtype: type) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()

    return ReadingBatch(
        detector_index=det, ts=col(ts, np.float64), interval_s=col(interval_s, np.float32),
        count=col(count, np.float32), occupancy_pct=col(occupancy_pct, np.float32),
        speed_kmh=col(speed_kmh, np.float32), lane=col(lane, np.int16),
    )


def random_batch(
    rng: np.random.Generator, n: int, n_detectors: int, ts_range: tuple[float, float]
) -> ReadingBatch:
    """Random readings that hit every branch of the spot-speed rule, boundaries and bad values too."""
    count = rng.choice([0.0, 0.0, 1.0, 5.0, 12.0, 40.0, np.nan, -1.0], size=n).astype(np.float32)
    count = np.where(rng.random(n) < 0.3, rng.integers(1, 60, n), count).astype(np.float32)
    occ = rng.choice([0.0, 0.5, 1.0, 1.5, 30.0, 49.9, 50.0, 80.0, 100.0, 120.0, np.nan], size=n)
    occ = np.where(rng.random(n) < 0.4, rng.uniform(0, 100, n), occ).astype(np.float32)
    speed = rng.choice([np.nan, np.nan, np.nan, 0.0, -5.0, 0.5, 200.0], size=n)
    speed = np.where(rng.random(n) < 0.4, rng.uniform(0, 130, n), speed).astype(np.float32)
    interval = rng.choice([30.0, 60.0, 20.0, 0.0], p=[0.5, 0.3, 0.15, 0.05], size=n).astype(np.float32)
    lane = rng.choice([-1, 0, 1, 2, 3, 70], p=[0.3, 0.2, 0.2, 0.15, 0.1, 0.05], size=n).astype(np.int16)
    return ReadingBatch(
        detector_index=rng.integers(0, max(n_detectors, 1), n).astype(np.int32),
        ts=np.round(rng.uniform(*ts_range, n)),  # rounded: ties in ts are exercised too
        interval_s=interval, count=count, occupancy_pct=occ, speed_kmh=speed, lane=lane,
    )


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


def ref_spot_speeds(
    count: np.ndarray,
    occupancy_pct: np.ndarray,
    speed_kmh: np.ndarray,
    interval_s: np.ndarray,
    speed_limit_kmh: np.ndarray,
    free_flow_kmh: np.ndarray,
    settings: EngineSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spot speed (NaN = none), weight (0 = none) and "empty road" flag of each reading (np.select)."""
    c = count.astype(np.float64)
    occ = occupancy_pct.astype(np.float64)
    spd = speed_kmh.astype(np.float64)
    interval = interval_s.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = (c >= 0) & (occ >= 0) & (occ <= 100)
        measured = valid & (spd >= 0)
        derived = valid & ~measured & (c > 0) & (occ > 0) & (interval > 0)
        empty = valid & ~measured & (c == 0) & (occ <= settings.empty_occupancy_max_pct)
        stopped = valid & ~measured & (c == 0) & (occ >= settings.stopped_occupancy_min_pct)
        derived_kmh = c * 3600.0 / interval * settings.effective_vehicle_length_m / (occ / 100.0) / 1000.0
        v = np.select(
            [measured, derived, empty, stopped],
            [spd, derived_kmh, free_flow_kmh.astype(np.float64), np.full_like(c, settings.stopped_speed_kmh)],
            np.nan,
        )
        w = np.select(
            [measured & (c > 0), measured, derived, empty, stopped],
            [c, np.full_like(c, settings.low_evidence_weight_veh), c,
             np.full_like(c, settings.low_evidence_weight_veh),
             np.full_like(c, settings.stopped_queue_weight_veh)],
            0.0,
        )
    v_max = np.maximum(settings.max_speed_factor_of_limit * speed_limit_kmh.astype(np.float64), 1.0)
    v = np.where(w > 0, np.clip(v, 1.0, v_max), np.nan)
    return v, w, empty


def ref_aggregate(
    batch: ReadingBatch,
    detector_segment: np.ndarray,
    detector_lane: np.ndarray,
    detector_is_camera: np.ndarray,
    speed_limit_kmh: np.ndarray,
    free_flow_kmh: np.ndarray,
    settings: EngineSettings,
) -> tuple[pd.DataFrame, int]:
    """Per-segment sums of the readings with evidence (pandas groupby), and the count without.

    Columns: weight_all and weight_per_speed_all (all evidence: their ratio is the harmonic mean),
    the kernel's split of them (weight, weight_per_speed without empty-road evidence;
    weight_free_flow), newest_ts, n_detectors, n_cameras, lane_mask, n_unknown_lane; indexed
    by segment (only segments with evidence appear).
    """
    det = batch.detector_index.astype(np.int64)
    seg = detector_segment[det]
    v, w, empty = ref_spot_speeds(
        batch.count, batch.occupancy_pct, batch.speed_kmh, batch.interval_s,
        speed_limit_kmh[seg], free_flow_kmh[seg], settings,
    )
    lane = np.where(detector_lane[det] >= 0, detector_lane[det], batch.lane).astype(np.int64)
    df = pd.DataFrame({"det": det, "seg": seg, "ts": batch.ts, "v": v, "w": w, "lane": lane,
                       "camera": detector_is_camera[det], "empty_road": empty})
    n_without = int((df.w <= 0).sum())
    df = df[df.w > 0].copy()
    df["wv"] = df.w / df.v
    g = df.groupby("seg")
    out = pd.DataFrame({"weight_all": g.w.sum(), "weight_per_speed_all": g.wv.sum(), "newest_ts": g.ts.max()})
    # The kernel keeps empty-road evidence (spot speed = free flow) in its own accumulator.
    out["weight_free_flow"] = df[df.empty_road].groupby("seg").w.sum()
    out["weight"] = df[~df.empty_road].groupby("seg").w.sum()
    out["weight_per_speed"] = df[~df.empty_road].groupby("seg").wv.sum()
    out = out.fillna({"weight_free_flow": 0.0, "weight": 0.0, "weight_per_speed": 0.0})
    out["n_detectors"] = df[~df.camera].groupby("seg").det.nunique()
    out["n_cameras"] = df[df.camera].groupby("seg").det.nunique()
    known = df[df.lane >= 0]
    # Lanes above MAX_LANE_BIT fold onto it; OR (not sum) so a lane seen twice counts once.
    bits = np.left_shift(1, np.minimum(known.lane, MAX_LANE_BIT)).astype(np.int64)
    lane_sets = known.assign(bit=bits).groupby("seg").bit.agg(
        lambda s: int(np.bitwise_or.reduce(s.to_numpy()))
    )
    # reindex with a fill value rather than fillna, which would turn the masks into floats.
    out["lane_mask"] = lane_sets.reindex(out.index, fill_value=0).astype(np.int64)
    out["n_unknown_lane"] = df[df.lane < 0].groupby("seg").det.nunique()
    out = out.fillna({"n_detectors": 0, "n_cameras": 0, "n_unknown_lane": 0})
    return out.astype({"n_detectors": int, "n_cameras": int, "n_unknown_lane": int}), n_without


def ref_detector_last(batch: ReadingBatch, prior: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each detector's last reading after ``batch`` given its ``prior`` one (keys as in
    ``DetectorState``): the candidate with the greatest ts, ties going to the later one (the
    prior reading counts as earliest); readings_total grows by the detector's rows."""
    n = len(prior["last_ts"])
    prior_df = pd.DataFrame({
        "det": np.arange(n), "ts": prior["last_ts"], "count": prior["last_count"],
        "occ": prior["last_occupancy_pct"], "speed": prior["last_speed_kmh"], "order": -1,
    }).dropna(subset=["ts"])
    new_df = pd.DataFrame({
        "det": batch.detector_index, "ts": batch.ts, "count": batch.count,
        "occ": batch.occupancy_pct, "speed": batch.speed_kmh, "order": np.arange(len(batch)),
    })
    both = pd.concat([prior_df, new_df]) if len(prior_df) else new_df
    last = both.sort_values(["ts", "order"], kind="stable").groupby("det").tail(1).set_index("det")
    last = last.reindex(range(n))
    added = np.bincount(batch.detector_index, minlength=n)
    return {
        "last_ts": last.ts.to_numpy(np.float64),
        "last_count": last["count"].to_numpy(np.float32),
        "last_occupancy_pct": last.occ.to_numpy(np.float32),
        "last_speed_kmh": last.speed.to_numpy(np.float32),
        "readings_total": prior["readings_total"] + added,
    }


def ref_level_of_ratio(ratio: np.ndarray) -> np.ndarray:
    """GB/T 33171 levels straight from the table, one condition per level."""
    r = np.asarray(ratio, dtype=np.float64)
    b1, b2, b3, b4 = RATIO_UPPER_BOUNDS
    return np.select(
        [np.isnan(r), r > b1, (r > b2) & (r <= b1), (r > b3) & (r <= b2), (r > b4) & (r <= b3), r <= b4],
        [0, 1, 2, 3, 4, 5],
        -1,
    ).astype(np.int8)


def ref_tpi_of_ratio(ratio: np.ndarray) -> np.ndarray:
    """Segment TPI by np.interp through the documented knots (clamped outside [0, 1])."""
    r = np.asarray(ratio, dtype=np.float64)
    return np.where(np.isnan(r), np.nan, np.interp(r, [0.0, 0.3, 0.4, 0.5, 0.7, 1.0], [10, 8, 6, 4, 2, 0]))


def ref_level_of_tpi(tpi: np.ndarray) -> np.ndarray:
    t = np.asarray(tpi, dtype=np.float64)
    return np.select(
        [np.isnan(t), t < 2, t < 4, t < 6, t < 8, t >= 8], [0, 1, 2, 3, 4, 5], -1
    ).astype(np.int8)


def ref_area_indices(
    speed_kmh: np.ndarray,
    free_flow_kmh: np.ndarray,
    tti: np.ndarray,
    level: np.ndarray,
    weight: np.ndarray,
    segment_district: np.ndarray,
    district_names: tuple[str, ...],
) -> dict[str, dict[str, float]]:
    """{"city" | district name: {tpi, level, tti, severe_share, known_share}} with pandas."""
    df = pd.DataFrame({
        "ratio": speed_kmh.astype(np.float64) / free_flow_kmh.astype(np.float64),
        "tti": tti.astype(np.float64), "level": level, "w": weight, "district": segment_district,
    })
    df["known"] = ~np.isnan(speed_kmh)
    df["tpi"] = ref_tpi_of_ratio(df.ratio.to_numpy())

    def one(part: pd.DataFrame) -> dict[str, float]:
        known = part[part.known]
        kw = known.w.sum()
        tpi = float((known.w * known.tpi).sum() / kw) if kw > 0 else np.nan
        return {
            "tpi": tpi,
            "level": int(ref_level_of_tpi(np.array([tpi]))[0]),
            "tti": float((known.w * known.tti).sum() / kw) if kw > 0 else np.nan,
            "severe_share": float(known.w[known.level == 5].sum() / kw) if kw > 0 else np.nan,
            "known_share": float(kw / part.w.sum()) if part.w.sum() > 0 else 0.0,
        }

    out = {"city": one(df)}
    for a, name in enumerate(district_names):
        out[name] = one(df[df.district == a])
    return out


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


def ref_junction_delay(rec: np.ndarray, flow_veh_h: np.ndarray, v0_kmh: np.ndarray, p: Any) -> np.ndarray:
    """The junction delay (s) of the reference travel-speed model (``travel_time_reference``):
    its travel time less the running time, at the running speed ``v0_kmh``; ``rec`` the
    segments' records (``state.SEGMENT_SCRATCH_RECORD``), ``p`` a ``TravelSpeedParams``."""
    from congestion.travel_speed import travel_time_reference

    length = rec["length_m"].astype(np.float64)
    nan = np.full(len(rec), np.nan)
    t = travel_time_reference(
        v_h_kmh=v0_kmh, flow_veh_h=flow_veh_h, occupancy=nan, length_m=length, loop_position=nan + 1,
        signalised=rec["signalised"], speed_limit_kmh=rec["speed_limit_kmh"].astype(np.float64), p=p,
        cycle_s=rec["signal_cycle_s"].astype(np.float64), green_ratio=rec["green_ratio"].astype(np.float64),
    )
    return t - length / (v0_kmh / 3.6)


def random_segment_records(rng: np.random.Generator, n: int) -> np.ndarray:
    """Segment scratch records with random lengths, limits, signals and timings (NaN: the
    model's defaults), for the junction model's kernels."""
    rec = aligned_records(n, SEGMENT_SCRATCH_RECORD)
    rec["length_m"] = rng.uniform(30, 600, n)
    rec["speed_limit_kmh"] = rng.choice([30.0, 50.0, 60.0, 80.0], n)
    rec["signalised"] = rng.random(n) < 0.6
    rec["signal_cycle_s"] = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(40, 140, n))
    rec["green_ratio"] = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0.15, 0.8, n))
    return rec


def ref_base_tti(
    rec: np.ndarray, count: np.ndarray, seconds: np.ndarray, speed: np.ndarray, model_ff: np.ndarray,
    succ: tuple[np.ndarray, np.ndarray], pred: tuple[np.ndarray, np.ndarray], ip: Any, p: Any,
    run_fraction: float,
    floor_kmh: float = 2.0,
) -> np.ndarray:
    """Imputation's junction model (``imputation`` docs): each segment's uncongested model TTI at
    its flow per lane — its own smoothed flow (``count`` / ``seconds``; 0 without one) when it
    has a measured ``speed``, else the weighted mean of its neighbours' that have one — as
    ``impute_segments`` computes it where it reads it (stored as float32)."""
    n = len(rec)
    flow = np.zeros(n)
    for s in range(n):
        if np.isfinite(speed[s]):
            flow[s] = count[s] / seconds[s] if seconds[s] > 0 else 0.0
            continue
        num = den = 0.0
        for (ptr, idx), w in ((succ, ip.downstream_weight), (pred, ip.upstream_weight)):
            for j in idx[ptr[s] : ptr[s + 1]]:
                if j != s and seconds[j] > 0:
                    num, den = num + w * count[j] / seconds[j], den + w
        flow[s] = num / den if den > 0 else 0.0
    v0 = run_fraction * rec["speed_limit_kmh"].astype(np.float64)
    length = rec["length_m"].astype(np.float64)
    t_base = length / (v0 / 3.6) + ref_junction_delay(rec, 3600.0 * flow, v0, p)
    # The model's speed is never below the floor (at most the model free flow).
    floor = np.minimum(floor_kmh, model_ff.astype(np.float64))
    t_base = np.where(3.6 * length < floor * t_base, 3.6 * length / floor, t_base)
    return (model_ff.astype(np.float64) / 3.6 * t_base / length).astype(np.float32)


@pytest.fixture
def make_network() -> Callable[..., RoadNetwork]:
    return build_network


@pytest.fixture
def make_pairs_network() -> Callable[..., RoadNetwork]:
    return build_pairs_network


@pytest.fixture
def make_registry() -> Callable[..., DetectorRegistry]:
    return build_registry


@pytest.fixture
def make_batch() -> Callable[..., ReadingBatch]:
    return build_batch


@pytest.fixture
def reference() -> SimpleNamespace:
    """The reference implementations and the random batch generator, by short name."""
    return SimpleNamespace(
        spot_speeds=ref_spot_speeds,
        aggregate=ref_aggregate,
        detector_last=ref_detector_last,
        level_of_ratio=ref_level_of_ratio,
        tpi_of_ratio=ref_tpi_of_ratio,
        level_of_tpi=ref_level_of_tpi,
        area_indices=ref_area_indices,
        random_batch=random_batch,
        junction_delay=ref_junction_delay,
        base_tti=ref_base_tti,
        segment_records=random_segment_records,
    )
