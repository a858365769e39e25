"""The HTTP API and dashboard as an ASGI app (FastAPI): routes only, state lives in ``ServiceState``.

Every handler is ``async`` so that it runs on the engine's event loop, between ticks, and reads a
consistent tick. Inputs are validated by FastAPI (422 with the failing parameter) or here (400/404/
413/422 with a reason); parts built by other components that are not present answer 503 with the
reason.
"""

import asyncio
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from roadgraph.network import ROAD_CLASS_CODE, ROAD_CLASSES
from roadpulse.config import Settings
from roadpulse.pipeline import Pipeline

from .auth import check_bearer
from .history import HistoryStore
from .limits import BodySizeLimit
from .live_view import LiveView
from .metrics import render_metrics
from .network_view import NetworkView, parse_bbox
from .stream import StreamHub

log = logging.getLogger("roadpulse.service")

STATIC_DIR = resources.files("roadpulse.service") / "static"
HISTORY_MAX_POINTS = 5000


@dataclass
class ServiceState:
    """Everything a request may read: the fixed network view, the latest tick, the history store,
    the live stream and the shared objects of other components (closures, cameras, router)."""

    settings: Settings
    net: NetworkView
    view: LiveView
    pipeline: Pipeline
    history: HistoryStore
    hub: StreamHub
    token: str | None
    clock: Callable[[], float]
    shared: dict[str, Any] = field(default_factory=dict)
    network: Any = None

    def closures_changed(self) -> None:
        """Tell stream clients right away (the map shows the closure before the next tick)."""
        book = self.shared.get("closures")
        if book is not None:
            self.hub.publish("closures", {"closures": _jsonable(book.list())})


class ClosureIn(BaseModel):
    """A closure or traffic control (the spec's record; ``source`` is set to ``operator``)."""

    model_config = ConfigDict(extra="forbid")

    closure_id: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    segment_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1, max_length=10000)
    ]
    lanes: Annotated[str, Field(max_length=64)] | list[Annotated[int, Field(ge=0, le=16)]] = "all"
    type: Literal["road_closed", "lane_closed", "control", "accident", "hazard", "event"] = "road_closed"
    reason: Annotated[str, Field(max_length=200)] = ""
    start: (
        Annotated[float, Field(allow_inf_nan=False, ge=0, le=1e11)]
        | Annotated[str, Field(max_length=40)]
        | None
    ) = None
    end: (
        Annotated[float, Field(allow_inf_nan=False, ge=0, le=1e11)]
        | Annotated[str, Field(max_length=40)]
        | None
    ) = None
    description: Annotated[str, Field(max_length=2000)] = ""


def _jsonable(value: Any) -> Any:
    """Records from other components as strict JSON (numpy scalars, NaN → null)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def _unavailable(what: str, reason: str) -> HTTPException:
    return HTTPException(status_code=503, detail=f"{what} is not available: {reason}")


def create_app(state: ServiceState) -> FastAPI:
    api_cfg = state.settings["api"]
    app = FastAPI(
        title="roadpulse",
        version="0.1.0",
        description="Real-time traffic congestion: live segment states, area indices, incidents, "
        "closures, cameras and detectors. Writes need `Authorization: Bearer <token>`.",
        # Swagger UI and ReDoc load their scripts from a CDN; the service must work offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    app.add_middleware(BodySizeLimit, max_bytes=int(api_cfg["max_body_bytes"]))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        reason = "; ".join(f"{e['where']}: {e['problem']}" for e in errors[:5])
        return JSONResponse({"detail": reason, "errors": errors[:20]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    def operator(request: Request) -> None:
        problem = check_bearer(request.headers.get("authorization"), state.token)
        if problem is not None:
            status, reason = problem
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            raise HTTPException(status_code=status, detail=reason, headers=headers)

    def reader(request: Request) -> None:
        if not api_cfg["read_requires_token"]:
            return
        header = request.headers.get("authorization")
        token_param = request.query_params.get("access_token")
        if header is None and token_param is not None:  # EventSource cannot send headers
            header = f"Bearer {token_param}"
        operator_check = check_bearer(header, state.token)
        if operator_check is not None:
            raise HTTPException(status_code=operator_check[0], detail=operator_check[1])

    read = [Depends(reader)]
    write = [Depends(operator)]

    # ---- dashboard -------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.get("/api/config", dependencies=read, tags=["dashboard"])
    async def dashboard_config() -> dict[str, Any]:
        """What the dashboard needs to start: network size, geometry frame, tile URL, writes."""
        return {
            "n_segments": state.net.n_segments,
            "geometry": state.net.geometry_meta,
            "tile_url": api_cfg["tile_url"],
            "writes_enabled": state.token is not None,
            "read_requires_token": bool(api_cfg["read_requires_token"]),
            "tick_s": float(state.settings["engine"]["tick_s"]),
            "has_lonlat": state.net.has_lonlat,
            "levels": {str(k): {"name": v[0], "name_zh": v[1]} for k, v in _levels().items()},
        }

    @app.get(
        "/api/network/geometry.bin",
        dependencies=read,
        tags=["dashboard"],
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def geometry() -> Response:
        """Map geometry: float32 piece end points then uint32 segment rows (see network_view)."""
        return Response(
            state.net.geometry_blob,
            media_type="application/octet-stream",
            headers={"Cache-Control": "max-age=3600"},
        )

    @app.get("/api/network/levels", dependencies=read, tags=["dashboard"])
    async def levels() -> dict[str, Any]:
        """Display code of every segment in network order, as a string of digits (0–5 level, 6 closed)."""
        ts = None if state.view.states is None else state.view.states.ts
        return {"ts": ts, "codes": state.view.codes_text()}

    @app.get(
        "/api/stream",
        dependencies=read,
        tags=["live"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(request: Request) -> StreamingResponse:
        """Server-Sent Events: ``tick`` (changed segments, indices, top roads, incidents, closures)
        once per tick, ``closures`` when an operator changes one, ``resync`` when a client fell
        behind (reload ``/api/network/levels``)."""
        queue = state.hub.subscribe()

        async def frames() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\nevent: hello\ndata: {}\n\n"
                while True:
                    try:
                        frame = await asyncio.wait_for(queue.get(), timeout=15.0)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if frame is None:
                        return
                    yield frame
            finally:
                state.hub.unsubscribe(queue)

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ---- health and metrics -------------------------------------------------------------------
    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        c = state.pipeline.counters
        ts = None if state.view.states is None else state.view.states.ts
        return {
            "status": "ok" if ts is not None else "starting",
            "ticks": c.ticks,
            "last_tick_ts": ts,
            "segments": state.net.n_segments,
        }

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        s = state.view.states
        by_level: dict[int, int] = {}
        city_tpi = None
        if s is not None and state.view.result is not None:
            counts = np.bincount(s.level.astype(np.int64), minlength=6)
            by_level = {k: int(counts[k]) for k in range(6)}
            city_tpi = state.view.result.city.tpi
        text = render_metrics(
            state.pipeline.counters,
            city_tpi=city_tpi,
            segments_by_level=by_level,
            stream_clients=state.hub.clients,
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- segments, indices, top roads ----------------------------------------------------------
    max_page = int(api_cfg["max_page_size"])

    @app.get("/api/segments", dependencies=read, tags=["traffic"])
    async def segments(
        bbox: Annotated[str | None, Query(max_length=200, description="minlon,minlat,maxlon,maxlat")] = None,
        level: Annotated[
            str | None, Query(max_length=40, description="levels, comma-separated (0-6; 6 closed)")
        ] = None,
        road_class: Annotated[
            str | None, Query(max_length=200, description="e.g. arterial,expressway")
        ] = None,
        segment_id: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=max_page)] = 1000,
        offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    ) -> dict[str, Any]:
        """Segments with live state as a GeoJSON FeatureCollection, filtered and paginated."""
        net = state.net
        mask = np.ones(net.n_segments, dtype=bool)
        if bbox is not None:
            try:
                minx, miny, maxx, maxy = parse_bbox(bbox)
            except ValueError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from None
            b = net.bounds
            mask &= (b[:, 2] >= minx) & (b[:, 0] <= maxx) & (b[:, 3] >= miny) & (b[:, 1] <= maxy)
        if level is not None:
            wanted = _int_list(level, "level", 0, 6)
            if 5 in wanted:
                wanted.append(6)  # a closed segment is level 5 (severe) as well
            mask &= np.isin(state.view.codes, wanted)
        if road_class is not None:
            codes = []
            for name in (p.strip() for p in road_class.split(",")):
                if name not in ROAD_CLASS_CODE:
                    raise HTTPException(
                        status_code=400,
                        detail=f"road_class: unknown {name!r}; expected {', '.join(ROAD_CLASSES)}",
                    )
                codes.append(ROAD_CLASS_CODE[name])
            mask &= np.isin(net.road_class, codes)
        if segment_id is not None:
            seg_row = state.network.segments.index_of.get(segment_id) if state.network is not None else None
            only = np.zeros_like(mask)
            if seg_row is not None:
                only[seg_row] = True
            mask &= only
        rows = np.flatnonzero(mask)
        page = rows[offset : offset + limit]
        geoms = state.network.segments.geometry if state.network is not None else None
        features = []
        for i in page.tolist():
            features.append(
                {
                    "type": "Feature",
                    "id": net.segment_id[i],
                    "geometry": net.geojson_geometry(geoms[i]) if geoms is not None else None,
                    "properties": state.view.segment_state(i),
                }
            )
        return {
            "type": "FeatureCollection",
            "features": features,
            "total": len(rows),
            "offset": offset,
            "limit": limit,
            "next_offset": offset + limit if offset + limit < len(rows) else None,
        }

    @app.get("/api/index", dependencies=read, tags=["traffic"])
    async def index_now() -> dict[str, Any]:
        """The city's and every district's traffic performance index at the latest tick."""
        return state.view.index_payload()

    max_range = float(api_cfg["max_history_range_s"])

    @app.get("/api/index/history", dependencies=read, tags=["traffic"])
    async def index_history(
        from_: Annotated[
            float | None,
            Query(
                alias="from", ge=0, le=1e11, allow_inf_nan=False, description="epoch s (default: to − 6 h)"
            ),
        ] = None,
        to: Annotated[
            float | None, Query(ge=0, le=1e11, allow_inf_nan=False, description="epoch s (default: now)")
        ] = None,
        area: Annotated[str, Query(max_length=200, description="'city' or 'district/NAME'")] = "city",
        max_points: Annotated[int, Query(ge=1, le=HISTORY_MAX_POINTS)] = 1000,
    ) -> dict[str, Any]:
        """The index of one area over time (from the embedded history store), oldest first."""
        ts_to = float(to) if to is not None else _now(state)
        ts_from = float(from_) if from_ is not None else ts_to - min(6 * 3600.0, max_range)
        if ts_from > ts_to:
            raise HTTPException(status_code=400, detail="from must not be after to")
        if ts_to - ts_from > max_range:
            raise HTTPException(
                status_code=400,
                detail=f"range {ts_to - ts_from:.0f} s exceeds api.max_history_range_s ({max_range:.0f} s)",
            )
        if area != "city" and not (area.startswith("district/") and area[9:] in _district_names(state)):
            raise HTTPException(
                status_code=404,
                detail=f"unknown area {area!r}; expected 'city' or "
                f"'district/NAME' with NAME one of {sorted(_district_names(state))}",
            )
        rows = state.history.query(area, ts_from, ts_to, limit=max_points)
        return {"area": area, "from": ts_from, "to": ts_to, "points": rows}

    @app.get("/api/top", dependencies=read, tags=["traffic"])
    async def top(limit: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
        """The most congested roads (segments grouped by name), by lane-length-weighted TPI."""
        ts = None if state.view.states is None else state.view.states.ts
        return {"ts": ts, "roads": state.view.top[:limit]}

    # ---- incidents, closures ---------------------------------------------------------------
    @app.get("/api/incidents", dependencies=read, tags=["incidents"])
    async def incidents(include_cleared: bool = False) -> dict[str, Any]:
        """Incidents the engine detected (and operators reported), active ones unless asked."""
        records = getattr(state.pipeline, "incident_records", None)
        if records is None:
            raise _unavailable("incident detection", "this engine has no incident tracker (issue #3)")
        return {"incidents": _jsonable(records(include_cleared=include_cleared))}

    def book() -> Any:
        b = state.shared.get("closures")
        if b is None:
            raise _unavailable("the closure book", "no closures component is running")
        return b

    @app.get("/api/closures", dependencies=read, tags=["closures"])
    async def closures(include_cleared: bool = False) -> dict[str, Any]:
        return {"closures": _jsonable(book().list(include_cleared=include_cleared))}

    @app.get("/api/closures/{closure_id}", dependencies=read, tags=["closures"])
    async def closure(closure_id: Annotated[str, Path(max_length=128)]) -> dict[str, Any]:
        record = book().get(closure_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no closure {closure_id!r}")
        return _jsonable(record)

    def store(record: dict[str, Any]) -> dict[str, Any]:
        b = book()
        unknown = [
            s
            for s in record["segment_ids"]
            if state.network is not None and s not in state.network.segments.index_of
        ]
        if unknown:
            raise HTTPException(
                status_code=422,
                detail=f"segment_ids: unknown segment {unknown[0]!r}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
            )
        try:
            stored = b.set(record, source="operator")
        except ValueError as exc:  # ClosureError is a ValueError naming the field
            raise HTTPException(status_code=422, detail=str(exc)) from None
        state.closures_changed()
        return _jsonable(stored)

    @app.post("/api/closures", dependencies=write, tags=["closures"], status_code=201)
    async def create_closure(body: ClosureIn) -> dict[str, Any]:
        """Create a closure (or update one when ``closure_id`` names an existing one); without a
        ``closure_id`` the service makes one up (``C-YYYYMMDD-xxxxxx``)."""
        record = _record(body)
        if "closure_id" not in record:
            day = time.strftime("%Y%m%d", time.gmtime(state.clock()))
            record["closure_id"] = f"C-{day}-{secrets.token_hex(3)}"
        return store(record)

    @app.put("/api/closures/{closure_id}", dependencies=write, tags=["closures"])
    async def update_closure(
        closure_id: Annotated[str, Path(min_length=1, max_length=128)], body: ClosureIn
    ) -> dict[str, Any]:
        if body.closure_id is not None and body.closure_id != closure_id:
            raise HTTPException(
                status_code=400, detail=f"closure_id {body.closure_id!r} in the body differs from the path"
            )
        return store(_record(body) | {"closure_id": closure_id})

    @app.delete("/api/closures/{closure_id}", dependencies=write, tags=["closures"])
    async def clear_closure(closure_id: Annotated[str, Path(min_length=1, max_length=128)]) -> dict[str, Any]:
        cleared = book().clear(closure_id)
        if cleared is None:
            raise HTTPException(status_code=404, detail=f"no closure {closure_id!r}")
        state.closures_changed()
        return _jsonable(cleared)

    # ---- cameras, detectors -----------------------------------------------------------------
    @app.get("/api/cameras", dependencies=read, tags=["cameras"])
    async def cameras() -> dict[str, Any]:
        """Every camera with its latest stats and health (none when no camera is configured)."""
        cams = state.shared.get("cameras")
        if cams is None:
            return {"cameras": [], "note": "no camera component is running (no [[cameras]] configured)"}
        return {"cameras": _jsonable(cams.records())}

    @app.get(
        "/api/cameras/{camera_id}/snapshot.jpg",
        dependencies=read,
        tags=["cameras"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def snapshot(camera_id: Annotated[str, Path(max_length=128)]) -> Response:
        """The latest annotated frame of a camera."""
        cams = state.shared.get("cameras")
        jpeg = cams.snapshot_jpeg(camera_id) if cams is not None else None
        if jpeg is None:
            raise HTTPException(status_code=404, detail=f"no snapshot for camera {camera_id!r}")
        return Response(bytes(jpeg), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/detectors", dependencies=read, tags=["detectors"])
    async def detectors() -> dict[str, Any]:
        """Every detector's health (the spec's ``traffic/detectors/{id}/health`` payloads)."""
        records = getattr(state.pipeline, "detector_health_records", None)
        if records is None:
            raise _unavailable("detector health", "this engine has no detector health tracker (issue #3)")
        rows = _jsonable(records())
        summary: dict[str, int] = {}
        for r in rows:
            key = str(r.get("status", "unknown")) if isinstance(r, dict) else "unknown"
            summary[key] = summary.get(key, 0) + 1
        return {"detectors": rows, "summary": summary}

    # ---- route and Amap-shaped reads ----------------------------------------------------------
    async def route_impl(request: Request) -> JSONResponse:
        router = state.shared.get("router")
        try:
            from roadpulse.route_api import answer_route
        except ImportError:
            raise _unavailable("routing", "roadpulse.route_api is not installed (issue #8)") from None
        if router is None:
            raise _unavailable("routing", "no live router is running")
        status, body = answer_route(router, dict(request.query_params))
        return JSONResponse(_jsonable(body), status_code=status)

    @app.get("/api/route", dependencies=read, tags=["route"])
    async def route(
        request: Request,
        from_: Annotated[str | None, Query(alias="from", max_length=64, description="LON,LAT")] = None,
        to: Annotated[str | None, Query(max_length=64, description="LON,LAT")] = None,
        from_segment: Annotated[str | None, Query(max_length=256)] = None,
        to_segment: Annotated[str | None, Query(max_length=256)] = None,
        alternatives: Annotated[int, Query(ge=0, le=5)] = 0,
    ) -> JSONResponse:
        """The fastest route on live travel times (the spec's route JSON)."""
        return await route_impl(request)

    @app.get("/route", dependencies=read, include_in_schema=False)
    async def route_alias(request: Request) -> JSONResponse:
        return await route_impl(request)

    @app.get("/v3/traffic/status/{kind}", dependencies=read, tags=["amap"])
    async def amap_status(request: Request, kind: Literal["rectangle", "circle", "road"]) -> JSONResponse:
        """Amap-shaped traffic status reads (rectangle, circle, road), answered from live state."""
        try:
            from publishers.amap_reads import answer
        except ImportError:
            raise _unavailable(
                "Amap-shaped reads", "publishers.amap_reads is not installed (issue #6)"
            ) from None
        query = {k: v for k, v in request.query_params.items()}
        status, body = answer(kind, query, state.network, state.view.states)
        return JSONResponse(_jsonable(body), status_code=status)

    return app


def _levels() -> dict[int, tuple[str, str, int]]:
    from congestion.types import LEVELS

    return LEVELS


def _record(body: ClosureIn) -> dict[str, Any]:
    record = body.model_dump(exclude_none=True)
    record["source"] = "operator"
    return record


def _int_list(text: str, name: str, lo: int, hi: int) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not lo <= int(part) <= hi:
            raise HTTPException(
                status_code=400, detail=f"{name}: expected integers {lo}..{hi}, comma-separated, got {part!r}"
            )
        out.append(int(part))
    return out


def _district_names(state: ServiceState) -> set[str]:
    return {d.name for d in state.settings.districts}


def _now(state: ServiceState) -> float:
    ts = None if state.view.states is None else state.view.states.ts
    return max(float(state.clock()), float(ts) if ts is not None else 0.0)
