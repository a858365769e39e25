"""``roadpulse ingest-worker``: validation scaled out over processes with an MQTT shared subscription.

Partitioning (README "Scaling ingest with worker processes"): parsing and validating JSON is the
per-message cost; the engine's own work per reading is small (binary batches reach engine state
at over a million readings per second). So the work is split by message, not by region:

- N workers subscribe to ``$share/<group>/{prefix}detectors/+`` (and ``.../batch/bin``): the broker
  hands each message to one worker of the group. Each worker validates what it gets, publishes
  the refusals on ``{prefix}rejected`` and the accepted readings, once per socket read, as one
  binary batch (``ingest.binary_batch``) on ``{prefix}detectors/validated/bin`` at QoS 1.
- The engine (``roadpulse run`` with ``ingest.from_workers = true``) subscribes to that topic only,
  so it sees every reading once, whichever worker took it. It checks the batches again (cheap,
  column-wise) and its duplicate memory catches a re-delivery that went to another worker.

The workers share nothing; adding one is starting one. The segment state stays in one engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import numpy as np

from ingest import MqttReadingSource, ParseResult, encode_binary_batch
from ingest.binary_batch import VALIDATED_TOPIC_SUFFIX
from publishers.tick_messages import rejection_message
from roadgraph.detectors import DetectorRegistry

from .config import Settings
from .mqtt import client_factory, endpoint
from .pipeline import ingest_limits

log = logging.getLogger("roadpulse.ingest_worker")


async def serve_worker(
    detectors: DetectorRegistry, settings: Settings, *, group: str, stop: asyncio.Event, worker_id: str = ""
) -> MqttReadingSource:
    """Validate readings from the shared subscription ``group`` until ``stop`` is set."""
    from ingest import ReadingParser

    prefix = settings["mqtt"]["prefix"]
    parser = ReadingParser(detectors, prefix=prefix, limits=ingest_limits(settings, event_time=False))
    ids = np.asarray([str(d) for d in detectors.detector_id], dtype=object)
    # A stable id per worker: its persistent session at the broker is found again on restart.
    suffix = f"-{worker_id or os.getpid()}"
    outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    validated_topic = f"{prefix}detectors/{VALIDATED_TOPIC_SUFFIX}"

    def on_result(result: ParseResult) -> None:
        b = result.batch
        if len(b):
            payload = encode_binary_batch(
                ids[b.detector_index].tolist(),
                b.ts,
                b.interval_s,
                b.count,
                b.occupancy_pct,
                b.speed_kmh,
                b.lane,
            )
            outbox.put_nowait((validated_topic, payload))
        for rejection in result.rejections:
            message = rejection_message(rejection, prefix=prefix)
            outbox.put_nowait((message.topic, message.payload))

    source = MqttReadingSource(
        endpoint(settings, role="worker", persistent=True, unique_suffix=suffix),
        parser,
        on_result,
        prefix=prefix,
        max_pending_readings=int(settings["ingest"]["max_pending_readings"]),
        shared_group=group,
    )
    make_out = client_factory(settings, role="worker-out", unique_suffix=suffix)
    async with source:
        while not stop.is_set():
            try:
                async with make_out() as out:
                    while not stop.is_set() or not outbox.empty():
                        try:
                            topic, payload = await asyncio.wait_for(outbox.get(), 0.2)
                        except TimeoutError:
                            continue
                        await out.publish(topic, payload, qos=1)
            except Exception as exc:  # the broker went away: keep the outbox, reconnect
                log.warning("ingest worker: output connection failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
    return source


def run_worker(detectors: DetectorRegistry, settings: Settings, *, group: str, worker_id: str = "1") -> int:
    """The ``roadpulse ingest-worker`` command: serve until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mqtt = settings["mqtt"]
    print(
        f"roadpulse ingest-worker: group {group!r}, {len(detectors)} detectors, broker "
        f"{mqtt['host']}:{mqtt['port']}, validated readings to "
        f"{mqtt['prefix']}detectors/{VALIDATED_TOPIC_SUFFIX}",
        file=sys.stderr,
        flush=True,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_worker(detectors, settings, group=group, stop=stop, worker_id=worker_id)

    asyncio.run(main())
    return 0
