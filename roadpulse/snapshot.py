"""Engine state across restarts: one snapshot file, written atomically, read at start.

What is saved is whatever part of the pipeline offers ``export_state() -> dict`` and
``import_state(dict)``: the congestion engine (learned free-flow speeds, held segment estimates),
the detector watch (detector health, g-factors, open incidents) and the reading parser (duplicate
memory and watermark, so a reading the broker re-delivers after the restart is still refused).

File format: a NumPy ``.npz`` archive (a zip; no pickles, loaded with ``allow_pickle=False``).
Entry ``__tree__`` holds the JSON of ``{"version": 1, "saved_ts": ..., "parts": {name: state}}``
with every numpy array replaced by ``{"__array__": "<entry name>"}``; the arrays are the other
entries. Writing goes to ``<path>.tmp`` in the same directory, is fsync'ed, then renamed over
``path``: a crash mid-write leaves the previous snapshot intact.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("roadpulse.snapshot")

FORMAT_VERSION = 1
_TREE = "__tree__"


class SnapshotError(ValueError):
    """A snapshot file that cannot be read (the message names the file and the problem)."""


def stateful_parts(pipeline: Any) -> dict[str, Any]:
    """The parts of a pipeline that can be snapshotted, by name (only those with both methods)."""
    candidates = {
        "engine": getattr(pipeline, "engine", None),
        "watch": getattr(pipeline, "watch", None),
        "parser": getattr(pipeline, "parser", None),
    }
    return {
        name: part
        for name, part in candidates.items()
        if callable(getattr(part, "export_state", None)) and callable(getattr(part, "import_state", None))
    }


def save_snapshot(path: str | Path, parts: dict[str, Any], *, now: float | None = None) -> int:
    """Write every part's ``export_state()`` to ``path`` atomically; returns the file size."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    tree = {
        "version": FORMAT_VERSION,
        "saved_ts": time.time() if now is None else now,
        "parts": {name: _encode(part.export_state(), name, arrays) for name, part in parts.items()},
    }
    buffer = io.BytesIO()
    arrays[_TREE] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types the kwargs as bool
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return buffer.tell()


def load_snapshot(path: str | Path) -> dict[str, Any]:
    """``{"version", "saved_ts", "parts": {name: state}}`` from a snapshot file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if _TREE not in data.files:
                raise SnapshotError(f"{path}: not a roadpulse snapshot (no {_TREE} entry)")
            tree = json.loads(bytes(data[_TREE]).decode())
            arrays = {name: data[name] for name in data.files if name != _TREE}
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{path}: cannot read the snapshot: {exc}") from None
    if tree.get("version") != FORMAT_VERSION:
        raise SnapshotError(f"{path}: snapshot format {tree.get('version')!r}, expected {FORMAT_VERSION}")
    decoded: dict[str, Any] = _decode(tree, arrays)
    return decoded


def restore_snapshot(path: str | Path, parts: dict[str, Any]) -> list[str]:
    """Import each part's saved state; returns the names restored.

    A missing file is a first start (nothing restored). A part whose state does not fit (another
    network or registry) is skipped with a warning naming it, and the others are still restored:
    a stale snapshot must not keep the engine from starting.
    """
    path = Path(path)
    if not path.exists():
        log.info("no state snapshot at %s: starting fresh", path)
        return []
    saved = load_snapshot(path)
    restored = []
    for name, part in parts.items():
        state = saved["parts"].get(name)
        if state is None:
            continue
        try:
            part.import_state(state)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("state snapshot %s: %s not restored: %s", path, name, exc)
            continue
        restored.append(name)
    log.info(
        "restored %s from %s (saved %.0f s ago)",
        ", ".join(restored) or "nothing",
        path,
        time.time() - float(saved.get("saved_ts", time.time())),
    )
    return restored


def _encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:  # strings kept in object arrays: store as unicode
            value = value.astype(str)
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"__array__": name}
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{key}.{k}", arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, f"{key}[{i}]", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        if isinstance(value, float) and not np.isfinite(value):
            return {"__float__": repr(value)}  # JSON has no inf/nan
        return value
    raise TypeError(f"state {key}: {type(value).__name__} is not a numpy array or a JSON value")


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value
