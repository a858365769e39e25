"""Google's encoded polyline algorithm (precision 5 by default), for route geometry."""

from __future__ import annotations

from collections.abc import Iterable


def _encode_value(value: int, out: list[str]) -> None:
    value = ~(value << 1) if value < 0 else value << 1
    while value >= 0x20:
        out.append(chr((0x20 | (value & 0x1F)) + 63))
        value >>= 5
    out.append(chr(value + 63))


def encode_polyline(lonlat: Iterable[tuple[float, float]], *, precision: int = 5) -> str:
    """Encode (lon, lat) points as a polyline string (the format stores lat first, then lon).

    Each coordinate is rounded to ``precision`` decimals and stored as the difference from the
    previous point, as in https://developers.google.com/maps/documentation/utilities/polylinealgorithm.
    """
    factor = 10**precision
    out: list[str] = []
    prev_lat = prev_lon = 0
    for lon, lat in lonlat:
        ilat = round(lat * factor)
        ilon = round(lon * factor)
        _encode_value(ilat - prev_lat, out)
        _encode_value(ilon - prev_lon, out)
        prev_lat, prev_lon = ilat, ilon
    return "".join(out)


def decode_polyline(text: str, *, precision: int = 5) -> list[tuple[float, float]]:
    """Decode a polyline string back to (lon, lat) points (the inverse of ``encode_polyline``)."""
    factor = 10**precision
    values: list[int] = []
    shift = result = 0
    for char in text:
        byte = ord(char) - 63
        if byte < 0 or byte > 0x3F:
            raise ValueError(f"not a polyline character: {char!r}")
        result |= (byte & 0x1F) << shift
        shift += 5
        if byte < 0x20:
            values.append(~(result >> 1) if result & 1 else result >> 1)
            shift = result = 0
    if shift or len(values) % 2:
        raise ValueError("truncated polyline")
    points: list[tuple[float, float]] = []
    lat = lon = 0
    for k in range(0, len(values), 2):
        lat += values[k]
        lon += values[k + 1]
        points.append((lon / factor, lat / factor))
    return points
