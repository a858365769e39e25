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
        "password_file": Key(
            str, "", "file holding the MQTT password (first line); used if password_env is empty"
        ),
        "tls": Key(bool, False, "connect over TLS (mqtts); port 8883 is usual"),
        "tls_ca_file": Key(str, "", "CA certificate(s) (PEM) to trust for the broker; empty: the system's"),
        "tls_cert_file": Key(str, "", "client certificate (PEM) for brokers that require one"),
        "tls_key_file": Key(str, "", "private key (PEM) of the client certificate"),
        "tls_insecure": Key(bool, False, "skip the broker certificate and host name check (testing only)"),
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
        # Travel-speed model, smoothing, free flow and imputation (congestion.engine
        # ENGINE_CONFIG_FIELDS; README "How segment speed is estimated"). Defaults = the fitted ones.
        "smoothing_tau_s": Key(
            (int, float), 150.0, "time constant of the travel-time smoothing, seconds", 1, 3600
        ),
        "free_flow_min_samples": Key(
            (int, float), 3.0, "interval speeds a segment needs before its free flow is learned", 1, 100000
        ),
        "free_flow_delay_share": Key(
            (int, float), 0.8, "share of the modelled junction delay kept in free-flow samples", 0, 1
        ),
        "free_flow_delay_sd": Key(
            (int, float), 0.5,
            "standard deviations of an interval's mean signal delay taken off free-flow samples", 0, 5
        ),
        "free_flow_interval_s": Key(
            (int, float), 300.0, "interval whose travel speeds free flow is learned from, s", 60, 3600
        ),
        "actuated_max_gap_s": Key(
            (int, float), 6.0, "actuated signals: effective maximum gap of a phase's extension, s", 0.5, 30
        ),
        "actuated_flow_tau_s": Key(
            (int, float), 300.0, "actuated signals: smoothing time constant of approach flows, s", 10, 3600
        ),
        "signal_cycle_s": Key(
            (int, float), 90.0, "signal cycle (Webster delay) where the network states none, s", 10, 300
        ),
        "signal_green_ratio": Key(
            (int, float), 0.45, "green share per approach where the network states none", 0.05, 0.95
        ),
        "saturation_flow_veh_h": Key(
            (int, float), 1800.0, "assumed saturation flow per lane at a signal, veh/h", 300, 4000
        ),
        "signal_delay_factor": Key(
            (int, float), 0.8, "scale of Webster's uniform delay added at a signal (0: none)", 0, 5
        ),
        "stop_loss_factor": Key(
            (int, float), 1.0, "scale of the stop-start loss at a signal (0: none)", 0, 5
        ),
        "stop_accel_ms2": Key(
            (int, float), 2.6, "stop-start loss: acceleration pulling away, m/s2", 0.3, 10
        ),
        "stop_decel_ms2": Key(
            (int, float), 4.5, "stop-start loss: deceleration braking, m/s2", 0.3, 10
        ),
        "priority_delay_s": Key(
            (int, float), 0.0, "delay added at a junction without signal, seconds", 0, 120
        ),
        "queue_occupancy": Key(
            (int, float), 0.15, "loop occupancy (fraction) from which a queue over it is assumed", 0.01, 1
        ),
        "upstream_queue_share": Key(
            (int, float),
            0.25,
            "share of the segment upstream of the loop taken as queued when the queue just reaches"
            " the loop; rises to 1 at a loop covered all the time",
            0,
            1,
        ),
        "queue_vehicle_length_m": Key(
            (int, float), 5.5, "effective vehicle length for the density of a queue, metres", 2, 30
        ),
        "queue_speed_fraction_of_limit": Key(
            (int, float),
            0.3,
            "spot speed (share of the limit) at which a loop sees a queue; empty intervals after it "
            "are that queue standing (0: off)",
            0,
            1,
        ),
        "impute_downstream_weight": Key(
            (int, float), 1.0, "imputation: weight of a measured downstream neighbour", 0, 100
        ),
        "impute_upstream_weight": Key(
            (int, float), 0.6, "imputation: weight of a measured upstream neighbour", 0, 100
        ),
        "impute_second_hop_weight": Key(
            (int, float), 0.5, "imputation: weight of neighbours' imputed values (second hop)", 0, 100
        ),
        "impute_profile_weight": Key(
            (int, float), 0.5, "imputation: weight of the segment's hour-of-day profile", 0, 100
        ),
        "impute_confidence_factor": Key(
            (int, float), 0.5, "imputed confidence = this x the sources' confidence", 0, 1
        ),
        "impute_tti_power": Key(
            (int, float),
            1.0,
            "imputation: exponent of the power mean of the neighbours' TTIs (1: mean)",
            0.1,
            64,
        ),
        "impute_junction_model": Key(
            (int, float),
            1.0,
            "imputation: transfer the neighbours' TTI over their own junction's modelled one (> 0) "
            "or their whole TTI (0)",
            0,
            1,
        ),
        "impute_dead_end_free": Key(
            (int, float),
            1.0,
            "imputation: a segment whose only continuation is its own reverse takes no "
            "congestion from its neighbours (> 0) or pools them as any other (0)",
            0,
            1,
        ),
    },
    "ingest": {
        "max_payload_bytes": Key(int, 4_000_000, "largest accepted MQTT payload", 256, 256_000_000),
        "max_batch_readings": Key(int, 200_000, "most readings in one batch message", 1, 10_000_000),
        "max_interval_s": Key((int, float), 3600, "longest accepted counting interval", 1, 86400),
        "max_speed_kmh": Key((int, float), 250, "fastest plausible speed", 50, 500),
        "max_future_s": Key((int, float), 300, "how far a reading's ts may run ahead of the clock", 0, 86400),
        "lateness_s": Key(
            (int, float), 300, "watermark = newest ts - this; behind it and already ticked: late", 0, 86400
        ),
        "max_skew_s": Key(
            (int, float), 60, "a detector clock off by more than this is reported as skewed", 1, 86400
        ),
        "max_pending_readings": Key(
            int, 50_000, "readings gathered before they are handed to the engine", 100, 10_000_000
        ),
        "shared_group": Key(
            str, "", "MQTT shared-subscription group of worker processes ($share/...); empty: none"
        ),
        "from_workers": Key(
            bool, False, "read only detectors/validated/bin, published by `roadpulse ingest-worker`s"
        ),
    },
    "state": {
        "path": Key(str, "", "engine state snapshot file (restored at start); empty: no snapshots"),
        "interval_s": Key((int, float), 300, "seconds between snapshots (and one at shutdown)", 5, 86400),
    },
    "publish": {
        "segment_states": Key(bool, True, "publish retained traffic/segments/{id} when a state changes"),
        "snapshot": Key(bool, True, "publish traffic/snapshot (every segment) each tick"),
        "min_speed_change_kmh": Key((int, float), 1.0, "speed change that counts as a state change", 0, 100),
    },
    "closures": {
        "enabled": Key(
            bool, True, "run the closure book: MQTT traffic/closures/{id}/set in, closed segments out"
        ),
        "store": Key(str, "", "SQLite file of closures; empty: $XDG_STATE_HOME/roadpulse/closures.sqlite"),
        "dsn": Key(str, "", "PostgreSQL DSN (psycopg 3) to keep closures there instead of SQLite"),
        "check_every_s": Key((int, float), 1.0, "how often start/end times are checked", 0.05, 60),
    },
    "health": {
        "enabled": Key(
            bool, True, "run PeMS-style detector diagnostics; unhealthy detectors stop feeding estimates"
        ),
        "window_s": Key((int, float), 3600, "sliding window the diagnostics look at, seconds", 300, 86400),
        "window_samples": Key(
            int, 60, "most samples kept per detector (the window is cut to these)", 10, 2880
        ),
        "no_data_after_s": Key((int, float), 900, "no reading this long: status no_data", 60, 86400),
        "min_sample_share": Key(
            (int, float), 0.6, "insufficient_data below this share of expected samples (PeMS 60 %)", 0.01, 1
        ),
        "min_samples": Key(int, 15, "samples the share-based tests need in the window", 3, 10000),
        "card_off_share": Key(
            (int, float), 0.9, "card_off: share with count and occupancy 0 (PeMS 1200/2040 a day)", 0.01, 1
        ),
        "card_off_run_samples": Key(int, 20, "card_off: or this many empty readings in a row", 3, 10000),
        "card_off_peer_max_share": Key(
            (int, float), 0.4, "card_off: peers' share of empty samples at most this (busy peers)", 0.01, 1
        ),
        "intermittent_share": Key(
            (int, float),
            0.3,
            "intermittent: share with count 0, occupancy partial (PeMS 50/2040)",
            0.001,
            1,
        ),
        "stopped_occupancy_pct": Key(
            (int, float), 50.0, "occupancy from which a loop counts as covered by a standing queue", 1, 100
        ),
        "high_occupancy_pct": Key(
            (int, float), 35.0, "high_occupancy: occupancy counted as high (PeMS 35 %)", 1, 100
        ),
        "high_occupancy_share": Key(
            (int, float), 0.1, "high_occupancy: share of implausible high samples (PeMS 200/2040)", 0.01, 1
        ),
        "lane_capacity_veh_h": Key(
            (int, float), 2000, "fundamental diagram telling a jam from a faulty loop: capacity", 500, 5000
        ),
        "critical_occupancy_pct": Key((int, float), 20, "fundamental diagram: occupancy at capacity", 5, 60),
        "high_occupancy_flow_margin": Key(
            (int, float), 1.5, "high sample: flow above this x the congested branch at its occupancy", 1, 10
        ),
        "flow_no_occupancy_share": Key(
            (int, float), 0.2, "zero_occupancy_with_flow: share with vehicles, occupancy 0", 0.01, 1
        ),
        "flow_min_count": Key(
            (int, float), 3, "vehicles per interval below which occupancy 0 may be rounding", 1, 1000
        ),
        "constant_run_samples": Key(int, 8, "constant: identical non-empty readings in a row", 3, 10000),
        "constant_standing_run_samples": Key(
            int, 30, "constant: identical standing readings (no vehicle, loop covered) in a row", 3, 10000
        ),
        "peer_margin": Key(
            (int, float),
            0.35,
            "card_off: margin over the peers' share of empty samples",
            0.01,
            1,
        ),
        "recover_factor": Key(
            (int, float), 0.5, "a share-based fault clears below this x its threshold", 0.05, 1
        ),
        "gfactor": Key(bool, True, "calibrate each single loop's effective vehicle length from its history"),
        "gfactor_samples": Key(int, 64, "g-factor estimates kept per detector (g is their median)", 5, 10000),
        "gfactor_min_samples": Key(int, 10, "estimates needed before a detector's own g is used", 1, 10000),
        "gfactor_free_flow_max_occupancy_pct": Key(
            (int, float), 10.0, "occupancy at or below which an interval counts as free flow", 0.5, 50
        ),
    },
    "incidents": {
        "enabled": Key(bool, True, "detect incidents and publish traffic/incidents/{id}"),
        "history_ticks": Key(int, 15, "ticks of recent history per segment (its recent level)", 6, 1000),
        "persistence_ticks": Key(int, 5, "ticks in a row a test must hold before an incident", 1, 100),
        "clear_ticks": Key(int, 5, "ticks in a row back to normal before an incident clears", 1, 1000),
        "fresh_s": Key(
            (int, float), 180, "a reading older than this no longer counts for its station", 10, 3600
        ),
        "occdf_min_pct": Key(
            (int, float), 15.0, "California OCCDF: upstream - downstream occupancy, points", 1, 100
        ),
        "occrdf_min": Key((int, float), 0.5, "California OCCRDF: OCCDF / upstream occupancy", 0.01, 0.99),
        "docctd_min": Key(
            (int, float), 0.5, "California DOCCTD: downstream occupancy drop over 2 ticks", 0.01, 0.99
        ),
        "occ_rise_min_pct": Key(
            (int, float), 25.0, "upstream occupancy rise over its recent level, points", 1, 100
        ),
        "speed_test": Key(bool, True, "also detect sudden travel-speed drops on a segment"),
        "require_both": Key(bool, True, "occupancy and speed tests must agree (False: either suffices)"),
        "speed_drop_min": Key(
            (int, float), 0.4, "speed test: drop below the recent level (share)", 0.05, 0.95
        ),
        "speed_ratio_max": Key((int, float), 0.25, "speed test: speed / free-flow at most this", 0.05, 0.95),
        "downstream_ratio_min": Key(
            (int, float), 0.6, "speed test: downstream speed / free-flow at least this", 0.05, 0.99
        ),
        "recover_speed_share": Key(
            (int, float), 0.75, "cleared when speed is back to this share of the level before", 0.05, 0.99
        ),
        "lane_test": Key(bool, True, "also detect a lane whose flow collapses against the other lanes"),
        "lane_window_ticks": Key(int, 3, "lane test: ticks of counts pooled per lane", 1, 100),
        "lane_alpha": Key(
            (int, float),
            3e-4,
            "lane test: beta-binomial probability of so few vehicles at most this",
            1e-12,
            0.5,
        ),
        "lane_min_expected": Key(
            (int, float), 8, "lane test: expected pooled vehicles at least this", 1, 10000
        ),
        "lane_drop_min": Key(
            (int, float), 0.6, "lane test: the lane's count below (1 - this) x expected", 0.05, 0.99
        ),
        "recover_lane_share": Key(
            (int, float), 0.75, "lane incident cleared when its share is back to this x before", 0.05, 0.99
        ),
        "lane_occ_slack_pct": Key(
            (int, float), 10.0, "lane test: starved lane's occupancy at most its older mean + this", 0.1, 100
        ),
        "lane_max_occ_pct": Key(
            (int, float), 20.0, "lane test: starved lane's occupancy at most this, outright", 0.1, 100
        ),
        "lane_compensation_min": Key(
            (int, float), 0.8, "lane test: other lanes carry at least this x what the lane lost", 0.01, 10
        ),
        "lane_queue_speed_fraction": Key(
            (int, float),
            0.3,
            "lane test: a lane whose last vehicles crawled (<= this x limit) is a queue",
            0.01,
            0.99,
        ),
        "lane_min_speed_ratio": Key(
            (int, float),
            0.4,
            "lane test: only where the segment's recent speed / free flow is above this",
            0.01,
            0.99,
        ),
    },
    "api": {
        "listen": Key(str, "127.0.0.1:8080", "HTTP service address HOST:PORT"),
        "enabled": Key(bool, True, "serve the HTTP API and dashboard from `roadpulse run` and `demo`"),
        "token_env": Key(
            str, "ROADPULSE_API_TOKEN", "environment variable holding the operator bearer token"
        ),
        "token_file": Key(str, "", "file holding the operator bearer token (when the variable is unset)"),
        "read_requires_token": Key(bool, False, "require the bearer token for reads too"),
        "history_path": Key(
            str, "", "SQLite file of the index history; empty: $XDG_STATE_HOME/roadpulse/history.sqlite"
        ),
        "history_retention_days": Key(
            (int, float), 30, "index history older than this is deleted", 0.01, 3650
        ),
        "max_history_range_s": Key(
            (int, float), 7 * 86400, "longest time range one history query may ask for", 60, 366 * 86400
        ),
        "max_body_bytes": Key(int, 65536, "largest accepted HTTP request body", 256, 16_000_000),
        "max_page_size": Key(int, 10000, "most features one /api/segments page may return", 10, 1_000_000),
        "tile_url": Key(
            str, "", "optional map tile URL template for the dashboard ({z}/{x}/{y}); empty: no tiles"
        ),
    },
    "camera": {
        "files": Key(list, [], "camera TOML files (docs/interfaces.md §4), relative to this config file"),
        "enabled": Key(bool, True, "run the cameras of [[cameras]] and camera.files in `roadpulse run`"),
        "processes": Key(int, 0, "worker processes for file/stream cameras (0: one per core)", 0, 256),
        "feed_engine": Key(bool, True, "camera zones feed the congestion engine as detectors of kind camera"),
        "hang_after_s": Key(
            (int, float), 10, "a camera source without a frame this long is killed and restarted", 1, 3600
        ),
        "no_frames_after_s": Key(
            (int, float), 10, "an MQTT camera without a frame this long is reported no_frames", 1, 86400
        ),
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

#: [[push]] endpoint kinds (publishers/push_component.py).
PUSH_KINDS = ("amap", "webhook", "waze_json", "waze_xml", "datex2_situations", "datex2_measured", "geojson",
              "osrm")  # fmt: skip


@dataclass(frozen=True)
class PushEndpoint:
    """One [[push]] table: a map provider or feed receiver with its durable outbox."""

    name: str
    kind: str
    url: str
    key: str = ""  # Amap: the account key sent as `key`
    key_env: str = ""  # environment variable: Amap private key, or a bearer token for other kinds
    attempts: int = 10
    timeout_s: float = 10.0
    base_backoff_s: float = 1.0
    max_backoff_s: float = 30.0  # bounds how long a recovered endpoint waits for the next probe
    every_s: float = 0.0
    outbox: str = ""
    utc_offset_h: float = 0.0


#: key -> (types, min, max) of the optional [[push]] keys.
PUSH_KEYS: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    "key": ((str,), None, None),
    "key_env": ((str,), None, None),
    "attempts": ((int,), 1, 1000),
    "timeout_s": ((int, float), 0.1, 600),
    "base_backoff_s": ((int, float), 0.01, 3600),
    "max_backoff_s": ((int, float), 0.1, 86400),
    "every_s": ((int, float), 0, 86400),
    "outbox": ((str,), None, None),
    "utc_offset_h": ((int, float), -14, 14),
}


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
    push: tuple[PushEndpoint, ...] = ()

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
    push: tuple[PushEndpoint, ...] = ()
    for section, table in raw.items():
        if section == "districts":
            districts = _districts(source, table)
            continue
        if section == "push":
            push = _push_endpoints(source, table)
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
    return Settings(values=values, districts=districts, source=source, push=push)


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


def _push_endpoints(source: str, table: Any) -> tuple[PushEndpoint, ...]:
    if not isinstance(table, list):
        raise ConfigError(f"{source}: push must be an array of tables ([[push]])")
    out: list[PushEndpoint] = []
    for k, entry in enumerate(table):
        where = f"{source}: push[{k}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with name, kind and url")
        for required in ("name", "kind", "url"):
            if not isinstance(entry.get(required), str) or not entry[required]:
                raise ConfigError(f"{where}.{required}: expected a non-empty string")
        name = entry["name"]
        if not all(c.isalnum() or c in "-_" for c in name) or name in {e.name for e in out}:
            raise ConfigError(f"{where}.name: {name!r} must be unique and use letters, digits, - and _")
        if entry["kind"] not in PUSH_KINDS:
            raise ConfigError(f"{where}.kind: expected one of {', '.join(PUSH_KINDS)}, got {entry['kind']!r}")
        if not entry["url"].startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: expected an http:// or https:// URL, got {entry['url']!r}")
        options: dict[str, Any] = {}
        for key, value in entry.items():
            if key in ("name", "kind", "url"):
                continue
            if key not in PUSH_KEYS:
                expected = f"name, kind, url, {', '.join(PUSH_KEYS)}"
                raise ConfigError(f"{where}: unknown key {key!r}; expected {expected}")
            kinds, lo, hi = PUSH_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                expected = " or ".join(t.__name__ for t in kinds)
                raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")
            if lo is not None and hi is not None and isinstance(value, int | float) and not lo <= value <= hi:
                raise ConfigError(f"{where}.{key}: {value!r} outside {lo:g}..{hi:g}")
            options[key] = value
        if entry["kind"] == "amap" and not options.get("key_env"):
            raise ConfigError(
                f"{where}.key_env: an amap endpoint needs the name of the variable holding its private key"
            )
        out.append(PushEndpoint(name=name, kind=entry["kind"], url=entry["url"], **options))
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
    lines.append(
        "| `[[push]]` | table array | none | a feed receiver: `name`, `kind` ("
        + ", ".join(PUSH_KINDS)
        + "), "
        "`url`, and optionally `key`, `key_env`, `attempts` (10), `timeout_s` (10), `base_backoff_s` (1), "
        "`max_backoff_s` (30), `every_s` (0: every tick), `outbox` (SQLite file), `utc_offset_h` (0) |"
    )
    return "\n".join(lines)
