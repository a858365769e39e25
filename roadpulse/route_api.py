"""Route requests → route JSON, shared by ``roadpulse route`` and the HTTP service.

``answer_route(router, query)`` takes the query string of ``/api/route`` (and ``/route``) as a
``dict[str, str]`` and returns ``(HTTP status, JSON body)``:

==================  ===================================================================
``from``, ``to``    ``LON,LAT`` (WGS84); snapped to the nearest segment within
                    ``max_snap_m`` (default: the router's, 100 m)
``from_segment``,   segment ids, instead of ``from``/``to`` (either end may use either)
``to_segment``
``alternatives``    0..5 alternative routes (default 0)
``max_snap_m``      how far a point may lie from the nearest road (1..5000 m)
==================  ===================================================================

Other parameters are ignored (the service may add its own). 200: the route (docs/interfaces.md
§3) plus ``polyline``, ``legs``, ``from``/``to`` (where each end snapped) and ``weights_ts`` (the
engine tick behind the travel times; null = free flow or a weights file). Errors carry
``{"error": message, "reason": code}``: 400 ``bad_request`` (missing or malformed parameters, bad
coordinates) and ``unknown_segment``; 404 ``off_network`` (no road within the snap distance),
``unreachable`` and ``closed`` (an end on a closed segment); 503 ``not_ready`` when no router is
available yet.
"""

from __future__ import annotations

import math
from typing import Any

from roadgraph.routing import Route, RouteEnd, RouteError, Router

#: The most alternatives one request may ask for (each costs about one more search).
MAX_ALTERNATIVES = 5

_STATUS = {
    "bad_request": 400,
    "unknown_segment": 400,
    "off_network": 404,
    "unreachable": 404,
    "closed": 404,
}


def parse_lonlat(text: str, *, what: str) -> tuple[float, float]:
    """``"LON,LAT"`` → (lon, lat); ``RouteError("bad_request")`` naming ``what`` otherwise."""
    parts = text.split(",")
    try:
        lon, lat = (float(p) for p in parts)
    except ValueError:
        raise RouteError(
            "bad_request", f"{what}: expected LON,LAT (e.g. 121.55,29.87), got {text!r}"
        ) from None
    if not (math.isfinite(lon) and math.isfinite(lat)) or not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise RouteError(
            "bad_request", f"{what}: {text!r} is not a WGS84 LON,LAT (lon in -180..180, lat in -90..90)"
        )
    return lon, lat


def _end(router: Router, query: dict[str, str], name: str, max_snap_m: float | None) -> RouteEnd:
    point, segment = query.get(name), query.get(f"{name}_segment")
    if point and segment:
        raise RouteError("bad_request", f"give either {name} or {name}_segment, not both")
    if segment:
        return RouteEnd(segment=router.segment_row(segment))
    if not point:
        raise RouteError("bad_request", f"missing {name} (LON,LAT) or {name}_segment")
    lon, lat = parse_lonlat(point, what=name)
    return router.snap(lon, lat, max_snap_m=max_snap_m)


def _int_param(query: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    text = query.get(key)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise RouteError("bad_request", f"{key}: expected an integer {low}..{high}, got {text!r}") from None
    if not low <= value <= high:
        raise RouteError("bad_request", f"{key}: {value} outside {low}..{high}")
    return value


def _float_param(query: dict[str, str], key: str, low: float, high: float) -> float | None:
    text = query.get(key)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise RouteError("bad_request", f"{key}: expected a number, got {text!r}") from None
    if not low <= value <= high:
        raise RouteError("bad_request", f"{key}: {value:g} outside {low:g}..{high:g}")
    return value


def _end_json(router: Router, end: RouteEnd, route: Route, *, first: bool) -> dict[str, Any]:
    row = int(route.segments[0] if first else route.segments[-1])
    out: dict[str, Any] = {"segment_id": str(router.network.segments.segment_id[row])}
    if end.lonlat is not None:
        out["lonlat"] = list(end.lonlat)
        out["snap_distance_m"] = round(end.distance_m or 0.0, 1)
        out["pos_m"] = round(router.position_on(end, row), 1)
    return out


def plan_route(router: Router, query: dict[str, str]) -> dict[str, Any]:
    """The route JSON for a request (see the module docstring); raises ``RouteError``."""
    alternatives = _int_param(query, "alternatives", 0, 0, MAX_ALTERNATIVES)
    max_snap_m = _float_param(query, "max_snap_m", 1.0, 5000.0)
    origin = _end(router, query, "from", max_snap_m)
    destination = _end(router, query, "to", max_snap_m)
    route = router.route_points(origin, destination)
    others = router.alternatives(route, alternatives)
    body = router.route_json(route, alternatives=others)
    body["from"] = _end_json(router, origin, route, first=True)
    body["to"] = _end_json(router, destination, route, first=False)
    body["weights_ts"] = router.weights_ts
    return body


def answer_route(router: Router | None, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for ``/api/route`` (see the module docstring)."""
    if router is None:
        return 503, {"error": "the router is not ready yet", "reason": "not_ready"}
    try:
        return 200, plan_route(router, query)
    except RouteError as exc:
        return _STATUS.get(exc.reason, 400), {"error": str(exc), "reason": exc.reason}
