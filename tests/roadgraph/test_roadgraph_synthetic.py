"""The synthetic grid generator, detector placement and the network validator."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import shapely

from roadgraph import (
    ROAD_CLASS_CODE,
    RoadNetwork,
    geodesic_distance_m,
    network_problems,
    place_detectors,
    synthetic_grid,
    validate_network,
)


@pytest.mark.parametrize(("rows", "cols"), [(1, 2), (2, 2), (3, 7), (12, 11)])
def test_grid_counts_and_invariants(rows: int, cols: int) -> None:
    network = synthetic_grid(rows, cols)
    validate_network(network)
    assert len(network) == 2 * (rows * (cols - 1) + (rows - 1) * cols)
    assert network.graph.number_of_nodes() == rows * cols
    assert (network.segments.length_m == 200.0).all()
    assert shapely.length(network.segments.geometry_m) == pytest.approx(np.full(len(network), 200.0))


def test_grid_classes_lanes_and_signals() -> None:
    network = synthetic_grid(11, 11, arterial_every=5)
    seg = network.segments
    idx = seg.index_of
    # row 0 and row 5 arterial, row 2 and 7 secondary (midway), others branch
    expected = {
        0: ("arterial", 3, 60.0),
        2: ("secondary", 2, 50.0),
        5: ("arterial", 3, 60.0),
        3: ("branch", 1, 40.0),
    }
    for row, (cls, lanes, speed) in expected.items():
        i = idx[f"r{row}c3-r{row}c4"]
        assert (seg.road_class_name(i), int(seg.lanes[i]), float(seg.speed_limit_kmh[i])) == (
            cls,
            lanes,
            speed,
        )
        j = idx[f"r3c{row}-r4c{row}"]  # the column with the same index
        assert seg.road_class_name(j) == cls
    # signals where two arterials cross: r5c5 and r0c10, etc.; every approach is signalised
    signalised_nodes = {str(v) for v, s in zip(seg.to_node, seg.junction_signalised, strict=True) if s}
    assert signalised_nodes == {f"r{r}c{c}" for r in (0, 5, 10) for c in (0, 5, 10)}
    assert seg.junction_signalised[idx["r5c4-r5c5"]] and not seg.junction_signalised[idx["r5c5-r5c6"]]
    assert Counter(seg.name[idx[f"r{r}c0-r{r}c1"]] for r in range(3)) == Counter(
        {"Row 0": 1, "Row 1": 1, "Row 2": 1}
    )


def test_grid_is_two_way_and_placed_at_origin() -> None:
    network = synthetic_grid(2, 3, spacing_m=150.0, origin_lonlat=(-102.27, 21.87))
    seg = network.segments
    for sid in seg.segment_id:
        u, v = str(sid).split("-")
        assert f"{v}-{u}" in seg.index_of
    assert network.graph.nodes["r0c0"]["x"] == pytest.approx(-102.27)
    assert network.graph.nodes["r0c0"]["y"] == pytest.approx(21.87)
    lon, lat = seg.geometry[seg.index_of["r0c0-r0c1"]].coords[1]
    assert float(geodesic_distance_m(-102.27, 21.87, lon, lat)) == pytest.approx(150.0, rel=1e-6)


def test_grid_arguments_are_checked() -> None:
    for args, kwargs in (((1, 1), {}), ((2, 2), {"spacing_m": 0.0}), ((2, 2), {"arterial_every": 0})):
        with pytest.raises(ValueError):
            synthetic_grid(*args, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# place_detectors
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid() -> RoadNetwork:
    return synthetic_grid(12, 12)


def test_place_detectors_one_per_lane(grid: RoadNetwork) -> None:
    registry = place_detectors(grid, share=0.5, seed=1, rel_pos=0.7)
    seg = grid.segments
    chosen = np.unique(registry.segment_index)
    assert len(chosen) == round(0.5 * len(grid))
    for s in chosen[:50]:
        lanes = registry.lane[registry.segment_index == s]
        assert sorted(lanes.tolist()) == list(range(int(seg.lanes[s])))
    assert registry.pos_m == pytest.approx(0.7 * seg.length_m[registry.segment_index])
    assert set(registry.kind) == {"loop"}
    assert not any(set(str(d)) & {"/", "+", "#"} for d in registry.detector_id)


def test_place_detectors_is_seeded(grid: RoadNetwork) -> None:
    a = place_detectors(grid, seed=4)
    b = place_detectors(grid, seed=4)
    c = place_detectors(grid, seed=5)
    assert list(a.detector_id) == list(b.detector_id)
    assert list(a.detector_id) != list(c.detector_id)


@pytest.mark.parametrize("min_class", ["arterial", ROAD_CLASS_CODE["arterial"]])
def test_place_detectors_min_class(grid: RoadNetwork, min_class: str | int) -> None:
    registry = place_detectors(grid, share=1.0, min_class=min_class)
    classes = {grid.segments.road_class_name(i) for i in registry.segment_index}
    assert classes == {"arterial"}
    assert len(np.unique(registry.segment_index)) == int((grid.segments.road_class <= 1).sum())


def test_place_detectors_edges(grid: RoadNetwork) -> None:
    assert len(place_detectors(grid, share=0.0)) == 0
    for kwargs in ({"share": 1.5}, {"rel_pos": -0.1}, {"min_class": "motorway"}, {"min_class": 9}):
        with pytest.raises(ValueError):
            place_detectors(grid, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The validator
# --------------------------------------------------------------------------------------------


def test_validator_reports_broken_tables() -> None:
    network = synthetic_grid(2, 2)
    assert network_problems(network) == []
    network.segments.length_m[0] = 0.0  # frozen dataclass, mutable arrays: corrupt on purpose
    network.segments.lanes[1] = 0
    network.graph.remove_node("r1c1")
    problems = network_problems(network)
    assert any("length_m not > 0" in p and "'r0c0-r0c1'" in p for p in problems)
    assert any("lanes < 1" in p for p in problems)
    assert any("missing from the graph" in p for p in problems)
    with pytest.raises(ValueError, match="invalid RoadNetwork"):
        validate_network(network)


def test_adjacency_without_the_reverse_leaves_out_u_turns_only() -> None:
    """``successors_csr(reverse=False)`` / ``predecessors_csr(reverse=False)``: the same lists
    less each segment's own reverse (same nodes, swapped), which a grid has at every segment."""
    net = synthetic_grid(3, 4)
    segs = net.segments
    for full, bare in (
        (net.successors_csr(), net.successors_csr(reverse=False)),
        (net.predecessors_csr(), net.predecessors_csr(reverse=False)),
    ):
        for i in range(len(segs)):
            all_n = set(full[1][full[0][i] : full[0][i + 1]].tolist())
            kept = bare[1][bare[0][i] : bare[0][i + 1]].tolist()
            reverse = {
                j for j in all_n
                if segs.from_node[j] == segs.to_node[i] and segs.to_node[j] == segs.from_node[i]
            }
            assert len(reverse) == 1  # every grid street runs both ways
            assert len(kept) == len(set(kept)) and set(kept) == all_n - reverse


def test_adjacency_is_built_once_and_shared_read_only() -> None:
    net = synthetic_grid(3, 3)
    for get in (net.successors_csr, net.predecessors_csr):
        for reverse in (True, False):
            first = get(reverse=reverse)
            again = get(reverse=reverse)
            assert all(a is b for a, b in zip(first, again, strict=True))
            for arr in first:
                with pytest.raises(ValueError, match="read-only"):
                    arr[0] = 0
