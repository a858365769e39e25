"""config.toml: load, validate, override.

Every key is declared once in ``SCHEMA`` with its type, default, allowed range and a one-line
description (the README's configuration reference is written from it, and ``roadpulse config``
prints it). A wrong key, type or value stops start-up with a ``ConfigError`` naming the key and
what is expected.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration problem a person can act on: which file and key, and what was expected."""


@dataclass(frozen=True)
class Key:
    kind: type | tuple[type, ...]
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None


#: section -> key -> declaration. The single source of truth for config.toml.
SCHEMA: dict[str, dict[str, Key]] = {
    "mqtt": {
        "host": Key(str, "127.0.0.1", "MQTT broker host name or address"),
        "port": Key(int, 1883, "MQTT broker TCP port", 1, 65535),
        "prefix": Key(str, "traffic/", "prefix of every topic; must end with '/'"),
        "client_id": Key(str, "roadpulse", "MQTT client id stem (suffixes -in / -out are added)"),
        "keepalive_s": Key(int, 30, "MQTT keepalive in seconds", 5, 3600),
        "username": Key(str, "", "MQTT user name (empty: anonymous)"),
        "password_env": Key(str, "", "name of the environment variable holding the MQTT password"),
    },
    "network": {
        "path": Key(
            str, "", "road network file (.osm, .osm.bz2, .net.xml, .geojson); empty: bundled demo city"
        ),
        "detectors": Key(str, "", "detector registry (CSV or SUMO additional file); empty: none"),
    },
    "engine": {
        "tick_s": Key((int, float), 60, "seconds between ticks (ticks fall on multiples of it)", 1, 3600),
        "stale_after_s": Key(
            (int, float), 300, "a segment without new evidence this long becomes unknown", 0, 86400
        ),
        "effective_vehicle_length_m": Key(
            (int, float), 6.0, "vehicle + loop length used for speed from flow and occupancy", 2, 30
        ),
        "free_flow_fraction_of_limit": Key(
            (int, float), 0.9, "initial free-flow speed as a fraction of the speed limit", 0.3, 1.5
        ),
    },
    "ingest": {
        "max_payload_bytes": Key(int, 4_000_000, "largest accepted MQTT payload", 256, 256_000_000),
        "max_batch_readings": Key(int, 200_000, "most readings in one batch message", 1, 10_000_000),
        "max_interval_s": Key((int, float), 3600, "longest accepted counting interval", 1, 86400),
        "max_speed_kmh": Key((int, float), 250, "fastest plausible speed", 50, 500),
        "max_future_s": Key((int, float), 300, "how far a reading's ts may run ahead of the clock", 0, 86400),
    },
    "publish": {
        "segment_states": Key(bool, True, "publish retained traffic/segments/{id} when a state changes"),
        "snapshot": Key(bool, True, "publish traffic/snapshot (every segment) each tick"),
        "min_speed_change_kmh": Key((int, float), 1.0, "speed change that counts as a state change", 0, 100),
    },
    "api": {
        "listen": Key(str, "127.0.0.1:8080", "HTTP service address HOST:PORT"),
    },
    "demo": {
        "duration_s": Key(
            (int, float), 0, "stop the demo after this many wall seconds (0: until Ctrl-C)", 0, 1e7
        ),
        "speedup": Key((int, float), 120, "simulated seconds per wall second", 1, 10000),
        "detector_share": Key((int, float), 0.6, "share of main-road segments given detectors", 0.01, 1),
        "interval_s": Key(int, 60, "counting interval of the simulated detectors", 10, 900),
        "seed": Key(int, 7, "random seed of the generated day", 0, 2**31 - 1),
    },
}

#: [[districts]] entries: {name = "...", polygon = [[lon, lat], ...]} (at least 3 points).
DISTRICT_KEYS = {"name", "polygon"}


@dataclass(frozen=True)
class District:
    name: str
    polygon: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Settings:
    """Validated configuration: ``section(name)`` gives a section's values as a dict."""

    values: dict[str, dict[str, Any]]
    districts: tuple[District, ...]
    source: str

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]


def defaults() -> Settings:
    return Settings(
        values={section: {k: key.default for k, key in keys.items()} for section, keys in SCHEMA.items()},
        districts=(),
        source="<defaults>",
    )


def load_config(path: str | Path | None = None, *, overrides: dict[str, Any] | None = None) -> Settings:
    """Read ``path`` (None: defaults only), then apply ``overrides`` ({"section.key": value}).

    Raises ConfigError naming the file and key for unknown sections/keys, wrong types and values
    out of range.
    """
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    values = defaults().values
    districts: tuple[District, ...] = ()
    for section, table in raw.items():
        if section == "districts":
            districts = _districts(source, table)
            continue
        if section == "cameras":
            continue  # camera tables are validated by camera/ (see the spec's camera files)
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]; expected one of {_names(SCHEMA)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in table.items():
            values[section][key] = _checked(source, section, key, value)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in SCHEMA:
            raise ConfigError(f"override {dotted}: unknown section {section!r}")
        values[section][key] = _checked("override", section, key, value)
    if not values["mqtt"]["prefix"].endswith("/"):
        raise ConfigError(f"{source}: mqtt.prefix must end with '/', got {values['mqtt']['prefix']!r}")
    parse_host_port(values["api"]["listen"], key=f"{source}: api.listen")
    return Settings(values=values, districts=districts, source=source)


def parse_host_port(text: str, *, key: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); ConfigError naming ``key`` otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT (e.g. 127.0.0.1:1883), got {text!r}")
    return host.strip("[]"), int(port_text)


def _checked(source: str, section: str, key: str, value: Any) -> Any:
    decl = SCHEMA[section].get(key)
    where = f"{source}: {section}.{key}"
    if decl is None:
        raise ConfigError(f"{source}: unknown key {section}.{key}; expected one of {_names(SCHEMA[section])}")
    kinds = decl.kind if isinstance(decl.kind, tuple) else (decl.kind,)
    # bool is an int in Python; a boolean where a number is expected is a mistake in a config.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")
    if isinstance(value, int | float) and (
        (decl.min is not None and value < decl.min) or (decl.max is not None and value > decl.max)
    ):
        raise ConfigError(f"{where}: {value!r} outside {decl.min:g}..{decl.max:g}")
    if decl.choices is not None and value not in decl.choices:
        raise ConfigError(f"{where}: expected one of {', '.join(decl.choices)}, got {value!r}")
    return value


def _districts(source: str, table: Any) -> tuple[District, ...]:
    if not isinstance(table, list):
        raise ConfigError(f"{source}: districts must be an array of tables ([[districts]])")
    out = []
    for k, entry in enumerate(table):
        where = f"{source}: districts[{k}]"
        if not isinstance(entry, dict) or set(entry) - DISTRICT_KEYS or "name" not in entry:
            raise ConfigError(f"{where}: expected keys name and polygon")
        poly = entry.get("polygon")
        if (
            not isinstance(poly, list)
            or len(poly) < 3
            or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(c, int | float) for c in p)
                for p in poly
            )
        ):
            raise ConfigError(f"{where}.polygon: expected at least 3 [lon, lat] pairs")
        out.append(District(str(entry["name"]), tuple((float(x), float(y)) for x, y in poly)))
    return tuple(out)


def _names(mapping: dict[str, Any]) -> str:
    return ", ".join(sorted(mapping))


def reference_markdown() -> str:
    """The configuration reference as a Markdown table (for the README and `roadpulse config`)."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            kinds = key.kind if isinstance(key.kind, tuple) else (key.kind,)
            kind = "/".join(k.__name__ for k in kinds)
            rng = f" ({key.min:g}..{key.max:g})" if key.min is not None and key.max is not None else ""
            lines.append(f"| `{section}.{name}` | {kind} | `{key.default!r}` | {key.help}{rng} |")
    lines.append(
        "| `[[districts]]` | table array | none | `name` and `polygon` ([[lon, lat], ...]): "
        "segments whose midpoint falls inside get a district index |"
    )
    return "\n".join(lines)
