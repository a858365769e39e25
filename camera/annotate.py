"""The annotated snapshot: the latest frame at full size with zones (filled by how occupied they
are), counting lines, the last interval's counts and the camera's health written on it.

Drawn only at the snapshot rate, so the full-colour decode it needs costs nothing per frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from .analyzer import CameraAnalyzer

_OK = (60, 200, 60)
_BAD = (40, 40, 230)
_LINE = (230, 160, 30)


def annotated_jpeg(analyzer: CameraAnalyzer, *, quality: int = 80) -> bytes | None:
    """JPEG bytes of the latest frame with annotations; None before the first frame."""
    picture = _latest_picture(analyzer)
    if picture is None:
        return None
    cfg = analyzer.config
    w = picture.shape[1]
    scale = max(w / 640.0, 0.5)
    overlay = picture.copy()
    stats_by_zone = {z["zone_id"]: z for z in (analyzer.last_stats or {}).get("zones", [])}
    for meter in analyzer.zones:
        zone = meter.geom.zone
        poly = np.round(np.asarray(zone.polygon)).astype(np.int32)
        occupied = meter.fraction >= meter.occupied_fraction
        cv2.fillPoly(overlay, [poly], _BAD if occupied else _OK)
    picture = cv2.addWeighted(overlay, 0.3, picture, 0.7, 0)
    for meter in analyzer.zones:
        zone = meter.geom.zone
        poly = np.round(np.asarray(zone.polygon)).astype(np.int32)
        cv2.polylines(picture, [poly], True, _OK, max(1, int(scale)), cv2.LINE_AA)
        z = stats_by_zone.get(zone.id)
        label = zone.id if z is None else f"{zone.id} n={z['count']} occ={z['occupancy_pct']}%"
        if z is not None and z.get("speed_kmh") is not None:
            label += f" {z['speed_kmh']:.0f}km/h"
        x, y = poly.min(axis=0)
        _text(picture, label, (int(x), int(max(y - 4, 12))), scale)
    lines = {ln["line_id"]: ln["count"] for ln in (analyzer.last_stats or {}).get("lines", [])}
    for ln in cfg.lines:
        a = (round(ln.points[0][0]), round(ln.points[0][1]))
        b = (round(ln.points[1][0]), round(ln.points[1][1]))
        cv2.line(picture, a, b, _LINE, max(1, int(2 * scale)), cv2.LINE_AA)
        _text(picture, f"{ln.id}: {lines.get(ln.id, 0)}", (a[0], a[1] - 4), scale)
    health = analyzer.health
    status = health.status
    headline = f"{cfg.id}  {status}" + (f" ({', '.join(health.reasons)})" if health.reasons else "")
    _text(picture, headline, (4, int(16 * scale)), scale, colour=_OK if status == "ok" else _BAD)
    ok, buf = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


def _latest_picture(analyzer: CameraAnalyzer) -> np.ndarray | None:
    if analyzer.last_data is not None:
        picture = cv2.imdecode(np.frombuffer(analyzer.last_data, np.uint8), cv2.IMREAD_COLOR)
        if picture is not None:
            return picture
    if analyzer.last_picture is not None:
        p = analyzer.last_picture
        return cv2.cvtColor(p, cv2.COLOR_GRAY2BGR) if p.ndim == 2 else p.copy()
    if analyzer.last_frame is not None and analyzer.frame_shape is not None:
        fh, fw = analyzer.frame_shape
        return cv2.cvtColor(cv2.resize(analyzer.last_frame, (fw, fh)), cv2.COLOR_GRAY2BGR)
    return None


def _text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    colour: tuple[int, int, int] = (255, 255, 255),
) -> None:
    size = 0.4 * scale
    cv2.putText(
        img, text, org, cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), max(2, int(3 * scale)), cv2.LINE_AA
    )
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, size, colour, max(1, int(scale)), cv2.LINE_AA)
