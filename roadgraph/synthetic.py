"""A synthetic Manhattan grid network, for benchmarks and tests at any size."""

from __future__ import annotations

import numpy as np
import shapely

from ._build import build_network
from .network import DEFAULT_LANES, DEFAULT_SPEED_LIMIT_KMH, ROAD_CLASS_CODE, RoadNetwork
from .projection import LocalProjection

#: (road class, lanes per direction, speed limit km/h) of the grid's three kinds of line.
_ARTERIAL = ("arterial", 3, 60.0)
_SECONDARY = ("secondary", DEFAULT_LANES["secondary"], DEFAULT_SPEED_LIMIT_KMH["secondary"])
_BRANCH = ("branch", DEFAULT_LANES["branch"], DEFAULT_SPEED_LIMIT_KMH["branch"])


def _line_kinds(count: int, arterial_every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class code, lanes and speed of grid lines 0..count-1 (see ``synthetic_grid``)."""
    j = np.arange(count) % arterial_every
    kinds = [_ARTERIAL if k == 0 else _SECONDARY if k == arterial_every // 2 else _BRANCH for k in j.tolist()]
    return (
        np.array([ROAD_CLASS_CODE[k[0]] for k in kinds], dtype=np.int8),
        np.array([k[1] for k in kinds], dtype=np.int16),
        np.array([k[2] for k in kinds], dtype=np.float32),
    )


def synthetic_grid(
    n_rows: int,
    n_cols: int,
    *,
    spacing_m: float = 200.0,
    arterial_every: int = 5,
    origin_lonlat: tuple[float, float] = (121.55, 29.87),
) -> RoadNetwork:
    """A two-way grid of ``n_rows × n_cols`` junctions, ``spacing_m`` apart.

    Junction ``"r{row}c{col}"`` sits ``col × spacing_m`` east and ``row × spacing_m`` north of
    ``origin_lonlat`` (row 0, column 0); segment ids are ``"{from}-{to}"``, e.g. ``"r0c0-r0c1"``.
    Rows and columns with index ≡ 0 (mod ``arterial_every``) are arterials (3 lanes, 60 km/h); the
    line midway between arterials (index ≡ ``arterial_every // 2``) is secondary (2 lanes, 50 km/h);
    the rest are branch roads (1 lane, 40 km/h). Junctions where two arterials cross are
    signalised. ``geometry_m`` is the grid in metres from the origin (lengths exactly
    ``spacing_m``), and ``projection`` is the ``LocalProjection`` centred on the origin that places
    it on the globe. There are ``2·(n_rows·(n_cols−1) + (n_rows−1)·n_cols)`` segments: 158 × 158
    gives 99,224.
    """
    if n_rows < 1 or n_cols < 1 or n_rows * n_cols < 2:
        raise ValueError(f"a grid needs at least two junctions, got {n_rows} x {n_cols}")
    if spacing_m <= 0:
        raise ValueError(f"spacing_m must be > 0, got {spacing_m}")
    if arterial_every < 1:
        raise ValueError(f"arterial_every must be >= 1, got {arterial_every}")

    row_grid, col_grid = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    rows, cols = row_grid.ravel(), col_grid.ravel()
    node_ids = np.char.add(np.char.add("r", rows.astype(str)), np.char.add("c", cols.astype(str))).astype(
        object
    )
    node_number = (rows * n_cols + cols).reshape(n_rows, n_cols)

    # undirected edges: east-pointing (same row) then north-pointing (same column)
    east_a, east_b = node_number[:, :-1].ravel(), node_number[:, 1:].ravel()
    north_a, north_b = node_number[:-1, :].ravel(), node_number[1:, :].ravel()
    a = np.concatenate((east_a, north_a))
    b = np.concatenate((east_b, north_b))
    row_cls, row_lanes, row_speed = _line_kinds(n_rows, arterial_every)
    col_cls, col_lanes, col_speed = _line_kinds(n_cols, arterial_every)
    is_east = np.arange(len(a)) < len(east_a)
    line_row, line_col = rows[a], cols[a]
    road_class = np.where(is_east, row_cls[line_row], col_cls[line_col])
    lanes = np.where(is_east, row_lanes[line_row], col_lanes[line_col])
    speed = np.where(is_east, row_speed[line_row], col_speed[line_col])
    names = np.where(
        is_east,
        np.char.add("Row ", line_row.astype(str)),
        np.char.add("Column ", line_col.astype(str)),
    ).astype(object)

    # each undirected edge once in each direction, interleaved: a->b at 2k, b->a at 2k+1
    u = np.column_stack((a, b)).ravel()
    v = np.column_stack((b, a)).ravel()

    def twice(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, 2)

    x_m = cols * spacing_m
    y_m = rows * spacing_m
    coords_m = np.stack((np.column_stack((x_m[u], y_m[u])), np.column_stack((x_m[v], y_m[v]))), axis=1)
    projection = LocalProjection(lon0_deg=origin_lonlat[0], lat0_deg=origin_lonlat[1])
    lon, lat = projection.to_lonlat(x_m, y_m)
    coords_ll = np.stack((np.column_stack((lon[u], lat[u])), np.column_stack((lon[v], lat[v]))), axis=1)
    arterial = ROAD_CLASS_CODE["arterial"]
    signal_node = (row_cls[rows] == arterial) & (col_cls[cols] == arterial)
    segment_id = np.char.add(np.char.add(node_ids[u].astype(str), "-"), node_ids[v].astype(str)).astype(
        object
    )
    return build_network(
        segment_id=segment_id,
        from_node=node_ids[u],
        to_node=node_ids[v],
        length_m=np.full(len(u), float(spacing_m)),
        lanes=twice(lanes),
        road_class=twice(road_class),
        speed_limit_kmh=twice(speed),
        name=twice(names),
        geometry=shapely.linestrings(coords_ll),
        geometry_m=shapely.linestrings(coords_m),
        junction_signalised=signal_node[v],
        node_id=node_ids,
        node_x=lon,
        node_y=lat,
        source=f"synthetic_grid({n_rows}x{n_cols}, spacing {spacing_m:g} m)",
        has_lonlat=True,
        projection=projection,
        meta={"format": "synthetic", "n_rows": n_rows, "n_cols": n_cols, "spacing_m": spacing_m},
    )
