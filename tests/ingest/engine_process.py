"""The live engine as a child process that can be SIGKILLed, logging every reading it takes.

    python tests/ingest/engine_process.py PORT PREFIX CLIENT_ID LOG [STATE_PATH]

Every payload the source hands to the parser is appended to LOG (one line, flushed) *before*
the parser returns, so before its PUBACK can leave (PUBACKs go out at the end of the event-loop
turn that read the message): whatever the broker counts as delivered to this engine is in LOG,
even if the process is killed the next instant. On SIGTERM it shuts down gracefully and prints
its counters as one JSON line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

N_DETECTORS = 40


def main(port: int, prefix: str, client_id: str, log_path: str, state_path: str) -> None:
    from ingest.parse import ReadingParser
    from roadpulse.config import load_config
    from roadpulse.live import serve

    # Loaded by path: gmqtt's wheel installs a top-level ``tests`` package that would shadow ours.
    spec = importlib.util.spec_from_file_location("live_helpers", Path(__file__).with_name("live_helpers.py"))
    assert spec is not None and spec.loader is not None
    helpers = importlib.util.module_from_spec(spec)
    sys.modules["live_helpers"] = helpers  # dataclasses look their module up there
    spec.loader.exec_module(helpers)
    grid_with_detectors = helpers.grid_with_detectors

    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - open for the process's life
    parse_into = ReadingParser.parse_into

    def logged(self: ReadingParser, topic: str, payload: bytes, rows: Any, rejections: Any) -> Any:
        log.write(payload + b"\n")
        return parse_into(self, topic, payload, rows, rejections)

    ReadingParser.parse_into = logged  # type: ignore[method-assign]
    network, detectors = grid_with_detectors(N_DETECTORS)
    settings = load_config(
        overrides={
            "mqtt.port": port,
            "mqtt.prefix": prefix,
            "mqtt.client_id": client_id,
            "engine.tick_s": 1,
            "publish.snapshot": False,
            "ingest.lateness_s": 20,
            "state.path": state_path,
        }
    )

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

        def on_status(status: str) -> None:
            if status == "connected":  # the reading source is subscribed
                print("ready", flush=True)

        pipeline = await serve(network, detectors, settings, stop=stop, tick_delay_s=0.2, on_status=on_status)
        c = pipeline.counters
        print(json.dumps({"accepted": c.accepted, "rejected_by_code": c.rejected_by_code}), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]), a[1], a[2], a[3], a[4] if len(a) > 4 else "")
