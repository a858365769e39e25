"""Camera files: one TOML file per camera (``[camera]``) or ``[[cameras]]`` tables in config.toml.

The format is docs/interfaces.md §4. Pixel coordinates are in the frame as delivered (origin top
left). Every problem raises ``CameraConfigError`` naming the file and the key (``camera.zones[1].
polygon``) and what was expected, so the CLI can print it as one line and exit 2.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Point = tuple[float, float]


class CameraConfigError(ValueError):
    """A camera file problem a person can act on: file, key, and what was expected."""


@dataclass(frozen=True)
class Zone:
    """A virtual detector over one lane, measured like a loop."""

    id: str
    segment_id: str
    lane: int
    polygon: tuple[Point, ...]
    #: Image-space direction of travel; None: learned from the vehicles seen.
    direction: Point | None = None


@dataclass(frozen=True)
class CountingLine:
    id: str
    points: tuple[Point, Point]
    #: Image-space vector: only crossings along it count.
    direction: Point


@dataclass(frozen=True)
class Homography:
    image: tuple[Point, ...]
    ground: tuple[Point, ...]


@dataclass(frozen=True)
class CameraConfig:
    id: str
    source: str = "mqtt"
    fps: float = 25.0
    interval_s: float = 10.0
    homography: Homography | None = None
    zones: tuple[Zone, ...] = ()
    lines: tuple[CountingLine, ...] = ()
    #: A picture of the camera's correct view (path); None: the first healthy seconds are used.
    reference: str | None = None
    lon: float | None = None
    lat: float | None = None
    #: Seconds between annotated snapshots (live service).
    snapshot_interval_s: float = 10.0
    #: Share of a zone's pixels that must be foreground for the zone to count as occupied.
    occupied_fraction: float = 0.2
    #: Where it was read from (for messages).
    origin: str = "<memory>"
    #: Whether the file set ``fps`` (else a video's own frame rate is preferred to the default).
    fps_given: bool = False


_CAMERA_KEYS = {
    "id", "source", "fps", "interval_s", "homography", "zones", "lines", "reference", "lon", "lat",
    "snapshot_interval_s", "occupied_fraction",
}  # fmt: skip
_ZONE_KEYS = {"id", "segment_id", "lane", "polygon", "direction"}
_LINE_KEYS = {"id", "points", "direction"}


def load_camera_file(path: str | Path) -> CameraConfig:
    """Read one camera TOML file (a ``[camera]`` table)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise CameraConfigError(f"{path}: camera file not found") from None
    except IsADirectoryError:
        raise CameraConfigError(f"{path}: is a directory, expected a camera TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CameraConfigError(f"{path}: not valid TOML: {exc}") from None
    extra = set(raw) - {"camera"}
    if extra:
        raise CameraConfigError(f"{path}: unknown section [{sorted(extra)[0]}]; expected only [camera]")
    if "camera" not in raw:
        raise CameraConfigError(f"{path}: missing the [camera] table")
    return camera_from_table(raw["camera"], origin=str(path), key="camera", base_dir=path.parent)


def cameras_from_tables(tables: Any, *, origin: str, base_dir: Path) -> list[CameraConfig]:
    """``[[cameras]]`` tables of config.toml."""
    if not isinstance(tables, list):
        raise CameraConfigError(f"{origin}: cameras must be an array of tables ([[cameras]])")
    return [
        camera_from_table(t, origin=origin, key=f"cameras[{k}]", base_dir=base_dir)
        for k, t in enumerate(tables)
    ]


def check_unique_ids(cameras: list[CameraConfig]) -> None:
    seen: dict[str, str] = {}
    for cam in cameras:
        if cam.id in seen:
            raise CameraConfigError(f"{cam.origin}: camera id {cam.id!r} is also used in {seen[cam.id]}")
        seen[cam.id] = cam.origin


def camera_from_table(table: Any, *, origin: str, key: str, base_dir: Path) -> CameraConfig:
    where = f"{origin}: {key}"
    if not isinstance(table, dict):
        raise CameraConfigError(f"{where}: expected a table")
    _no_unknown(table, _CAMERA_KEYS, where)
    cam_id = _string(table, "id", where, required=True)
    if "/" in cam_id or "+" in cam_id or "#" in cam_id:
        raise CameraConfigError(
            f"{where}.id: {cam_id!r} may not contain '/', '+' or '#' (it is a topic level)"
        )
    source = _string(table, "source", where) or "mqtt"
    if source != "mqtt" and "://" not in source and not Path(source).is_absolute():
        source = str(base_dir / source)
    fps = _number(table, "fps", where, 25.0, lo=0.1, hi=1000)
    interval_s = _number(table, "interval_s", where, 10.0, lo=0.5, hi=3600)
    homography = _homography(table.get("homography"), f"{where}.homography")
    zones = _zones(table.get("zones", []), f"{where}.zones")
    lines = _lines(table.get("lines", []), f"{where}.lines")
    reference = _string(table, "reference", where) or None
    if reference is not None and not Path(reference).is_absolute():
        reference = str(base_dir / reference)
    lon = _optional_number(table, "lon", where, -180, 180)
    lat = _optional_number(table, "lat", where, -90, 90)
    snapshot_s = _number(table, "snapshot_interval_s", where, 10.0, lo=0.1, hi=3600)
    occupied = _number(table, "occupied_fraction", where, 0.2, lo=0.01, hi=1.0)
    return CameraConfig(
        id=cam_id, source=source, fps=fps, interval_s=interval_s, homography=homography, zones=zones,
        lines=lines, reference=reference, lon=lon, lat=lat, snapshot_interval_s=snapshot_s,
        occupied_fraction=occupied, origin=origin, fps_given="fps" in table,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------- parts


def _homography(table: Any, where: str) -> Homography | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise CameraConfigError(f"{where}: expected a table with image and ground")
    _no_unknown(table, {"image", "ground"}, where)
    image = _points(table.get("image"), f"{where}.image", minimum=4)
    ground = _points(table.get("ground"), f"{where}.ground", minimum=4)
    if len(image) != len(ground):
        raise CameraConfigError(
            f"{where}: image has {len(image)} points but ground has {len(ground)}; they must pair up"
        )
    for name, pts in (("image", image), ("ground", ground)):
        if _spread_area(pts) < 1e-6:
            raise CameraConfigError(
                f"{where}.{name}: the points lie on one line; a homography needs them spread over the plane"
            )
    return Homography(image, ground)


def _spread_area(points: tuple[Point, ...]) -> float:
    """Area of the convex hull of ``points`` (0 when they are collinear)."""
    import numpy as np

    pts = np.asarray(points, dtype=np.float64)
    pts = pts - pts.mean(axis=0)
    # The smaller singular value measures the spread across the best-fitting line.
    sv = np.linalg.svd(pts, compute_uv=False)
    return float(sv[0] * sv[-1]) if len(sv) == 2 else 0.0


def _zones(items: Any, where: str) -> tuple[Zone, ...]:
    if not isinstance(items, list):
        raise CameraConfigError(f"{where}: expected an array of tables ([[camera.zones]])")
    out: list[Zone] = []
    for k, z in enumerate(items):
        w = f"{where}[{k}]"
        if not isinstance(z, dict):
            raise CameraConfigError(f"{w}: expected a table")
        _no_unknown(z, _ZONE_KEYS, w)
        lane = z.get("lane", 0)
        if type(lane) is not int or lane < 0:
            raise CameraConfigError(f"{w}.lane: expected a whole number ≥ 0 (0 = rightmost), got {lane!r}")
        direction = z.get("direction")
        out.append(
            Zone(
                id=_string(z, "id", w, required=True),
                segment_id=_string(z, "segment_id", w, required=True),
                lane=lane,
                polygon=_points(z.get("polygon"), f"{w}.polygon", minimum=3),
                direction=None if direction is None else _vector(direction, f"{w}.direction"),
            )
        )
    _unique([z.id for z in out], where)
    return tuple(out)


def _lines(items: Any, where: str) -> tuple[CountingLine, ...]:
    if not isinstance(items, list):
        raise CameraConfigError(f"{where}: expected an array of tables ([[camera.lines]])")
    out: list[CountingLine] = []
    for k, ln in enumerate(items):
        w = f"{where}[{k}]"
        if not isinstance(ln, dict):
            raise CameraConfigError(f"{w}: expected a table")
        _no_unknown(ln, _LINE_KEYS, w)
        pts = _points(ln.get("points"), f"{w}.points", minimum=2)
        if len(pts) != 2 or pts[0] == pts[1]:
            raise CameraConfigError(f"{w}.points: expected exactly 2 distinct [x, y] points")
        if "direction" not in ln:
            raise CameraConfigError(f"{w}: missing required key direction ([dx, dy], image space)")
        out.append(
            CountingLine(
                _string(ln, "id", w, required=True),
                (pts[0], pts[1]),
                _vector(ln["direction"], f"{w}.direction"),
            )
        )
    _unique([ln.id for ln in out], where)
    return tuple(out)


# ---------------------------------------------------------------------------------------- values


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise CameraConfigError(
            f"{where}: unknown key {extra[0]!r}; expected one of {', '.join(sorted(allowed))}"
        )


def _string(table: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = table.get(key)
    if value is None:
        if required:
            raise CameraConfigError(f"{where}: missing required key {key}")
        return ""
    if not isinstance(value, str) or (required and not value):
        raise CameraConfigError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _number(table: dict[str, Any], key: str, where: str, default: float, *, lo: float, hi: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise CameraConfigError(f"{where}.{key}: expected a number in {lo:g}..{hi:g}, got {value!r}")
    return float(value)


def _optional_number(table: dict[str, Any], key: str, where: str, lo: float, hi: float) -> float | None:
    if key not in table:
        return None
    return _number(table, key, where, 0.0, lo=lo, hi=hi)


def _points(value: Any, where: str, *, minimum: int) -> tuple[Point, ...]:
    ok = isinstance(value, list) and all(
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in p)
        for p in value
    )
    if not ok or len(value) < minimum:
        raise CameraConfigError(f"{where}: expected at least {minimum} [x, y] number pairs, got {value!r}")
    return tuple((float(p[0]), float(p[1])) for p in value)


def _vector(value: Any, where: str) -> Point:
    pts = _points([value], where, minimum=1) if isinstance(value, list) else None
    if pts is None or pts[0] == (0.0, 0.0):
        raise CameraConfigError(f"{where}: expected a non-zero [dx, dy] vector, got {value!r}")
    return pts[0]


def _unique(ids: list[str], where: str) -> None:
    seen = set()
    for i in ids:
        if i in seen:
            raise CameraConfigError(f"{where}: id {i!r} is used twice")
        seen.add(i)


def cameras_from_config(config_path: str | None, files: list[Any]) -> list[CameraConfig]:
    """Every camera a configuration names: ``[[cameras]]`` tables in the config file itself and
    the files listed in ``camera.files`` (relative to the config file's folder)."""
    cameras: list[CameraConfig] = []
    base = Path(config_path).parent if config_path else Path.cwd()
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                raw = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CameraConfigError(f"{config_path}: {exc}") from None
        if "cameras" in raw:
            cameras.extend(cameras_from_tables(raw["cameras"], origin=str(config_path), base_dir=base))
    for k, item in enumerate(files):
        if not isinstance(item, str) or not item:
            raise CameraConfigError(f"{config_path}: camera.files[{k}]: expected a file path, got {item!r}")
        path = Path(item)
        cameras.append(load_camera_file(path if path.is_absolute() else base / path))
    check_unique_ids(cameras)
    return cameras
