"""Engine state snapshots: the file format, atomic writes, and a live engine stopped and restarted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest

from roadpulse.config import load_config
from roadpulse.pipeline import Pipeline
from roadpulse.snapshot import SnapshotError, load_snapshot, restore_snapshot, save_snapshot, stateful_parts
from tests.ingest.live_helpers import LiveEngine, grid_with_detectors, reading, settings_for


class _Part:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.imported: dict[str, Any] | None = None

    def export_state(self) -> dict[str, Any]:
        return self.state

    def import_state(self, state: dict[str, Any]) -> None:
        self.imported = state


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(np.asarray(b), a.astype(str) if a.dtype == object else a, err_msg=where)
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


def test_round_trip_of_arrays_and_json_values(tmp_path: Path) -> None:
    state = {
        "version": 1,
        "f": np.linspace(0, 1, 5, dtype=np.float32),
        "ids": np.array(["a", "b#1"], dtype=object),
        "nested": {"ring": np.arange(6, dtype=np.int16).reshape(2, 3), "items": [{"x": 1.5, "y": None}]},
        "newest": -float("inf"),
        "nan": float("nan"),
    }
    path = tmp_path / "state.npz"
    save_snapshot(path, {"part": _Part(state)})
    loaded = load_snapshot(path)
    _assert_same(state, loaded["parts"]["part"])
    assert not (tmp_path / "state.npz.tmp").exists()


def test_a_failed_write_keeps_the_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "state.npz"
    save_snapshot(path, {"part": _Part({"x": np.ones(3)})})

    class Broken:
        def export_state(self) -> dict[str, Any]:
            return {"bad": object()}

        def import_state(self, state: dict[str, Any]) -> None:
            raise AssertionError

    with pytest.raises(TypeError, match=r"state part\.bad: object is not"):
        save_snapshot(path, {"part": Broken()})
    np.testing.assert_array_equal(load_snapshot(path)["parts"]["part"]["x"], np.ones(3))


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SnapshotError, match=r"bad\.npz: cannot read the snapshot"):
        load_snapshot(bad)
    assert restore_snapshot(tmp_path / "missing.npz", {}) == []


def test_a_part_that_does_not_fit_is_skipped_not_fatal(tmp_path: Path) -> None:
    class Picky(_Part):
        def import_state(self, state: dict[str, Any]) -> None:
            raise ValueError("saved for another network")

    path = tmp_path / "s.npz"
    save_snapshot(path, {"a": _Part({"v": 1}), "b": _Part({"v": 2})})
    good, picky = _Part({}), Picky({})
    assert restore_snapshot(path, {"a": good, "b": picky}) == ["a"]
    assert good.imported == {"v": 1}


def test_pipeline_parts_round_trip(tmp_path: Path) -> None:
    network, detectors = grid_with_detectors(20)
    now = time.time()
    a = Pipeline(network, detectors, load_config())
    for k in range(20):
        a.accept(a.parser.parse_message(f"traffic/detectors/D{k}", reading(f"D{k}", now - 60)))
    a.tick(now - 30)
    parts = stateful_parts(a)
    assert {"engine", "parser"} <= set(parts)
    path = tmp_path / "state.npz"
    save_snapshot(path, parts)
    b = Pipeline(network, detectors, load_config())
    assert set(restore_snapshot(path, stateful_parts(b))) == set(parts)
    for name, part in stateful_parts(b).items():
        before, after = parts[name].export_state(), part.export_state()
        if name == "engine":  # the engine does not take its last tick time back (it ticks anew)
            before.pop("last_tick_ts", None)
            after.pop("last_tick_ts", None)
        _assert_same(before, after, name)


def test_live_engine_snapshots_at_shutdown_and_restores_at_start(mqtt_broker, tmp_path: Path) -> None:
    network, detectors = grid_with_detectors(10)
    path = tmp_path / "state" / "engine.npz"
    settings = settings_for(mqtt_broker.port, tick_s=1, **{"state.path": str(path), "state.interval_s": 3600})
    prefix = settings["mqtt"]["prefix"]
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    now = time.time()
    try:
        first = LiveEngine(network, detectors, settings)
        first.wait_connected()
        first.wait_ticks(1)
        for k in range(10):
            publisher.publish(f"{prefix}detectors/D{k}", reading(f"D{k}", now - 30), qos=1).wait_for_publish(
                5
            )
        deadline = time.monotonic() + 10
        while (
            first.pipeline is None or first.pipeline.counters.accepted < 10
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        a = first.stop()
        assert a.counters.accepted == 10
        assert a.counters.snapshots_written == 1 and path.exists()
        saved = load_snapshot(path)["parts"]
        assert {"engine", "parser"} <= set(saved)

        second = LiveEngine(network, detectors, settings)
        second.wait_connected()
        # The same reading again (a re-delivery after the restart): refused, thanks to the snapshot.
        publisher.publish(f"{prefix}detectors/D3", reading("D3", now - 30), qos=1).wait_for_publish(5)
        publisher.publish(f"{prefix}detectors/D4", reading("D4", now - 1), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            p = second.pipeline
            if p is not None and p.counters.accepted + p.counters.rejected >= 2:
                break
            time.sleep(0.05)
        b = second.stop()
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    assert b.counters.rejected_by_code == {"duplicate": 1}
    assert b.counters.accepted == 1


def test_shutdown_ticks_what_was_accepted_since_the_last_tick(mqtt_broker) -> None:
    network, detectors = grid_with_detectors(10)
    # A tick far away: only the shutdown tick can cover the readings.
    settings = settings_for(mqtt_broker.port, tick_s=3600)
    prefix = settings["mqtt"]["prefix"]
    engine = LiveEngine(network, detectors, settings)
    engine.wait_connected()
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    now = time.time()
    for k in range(10):
        publisher.publish(f"{prefix}detectors/D{k}", reading(f"D{k}", now - 30), qos=1).wait_for_publish(5)
    publisher.loop_stop()
    publisher.disconnect()
    deadline = time.monotonic() + 10
    while engine.pipeline is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    assert engine.ticks == 0
    pipeline = engine.stop()
    assert pipeline.counters.accepted == 10
    assert pipeline.counters.ticks == 1
    assert pipeline.last_result is not None
    assert pipeline.last_result.readings_used == 10
