"""Throughput of the reading parser and the JSONL source, against bare ``json`` decoding.

    .venv/bin/python benchmarks/bench_ingest.py                  # ~20 s
    .venv/bin/python benchmarks/bench_ingest.py --fuzz 100000    # plus a mutation fuzz run

Measured in one run, each as readings/s (best of ``--repeat``, a fresh parser each time so no
reading is a duplicate):

- ``single``: one reading per MQTT message (``parse_message`` on ``traffic/detectors/{id}``);
- ``batch``: JSON arrays of ``--batch-size`` readings on ``traffic/detectors/batch``;
- ``json[N] ...``: JSON arrays of N readings (``--json-batch-sizes``), every way at once: ``json.loads``
  and ``orjson.loads`` alone, the old per-reading path and the columnar one (ingest/json_batch.py),
  parser alone and into engine state (``Pipeline.accept``), and the columnar path fed by the byte
  scanner (ingest/_json_scan.py) instead of orjson (``scanner ...``); medians of round-robin rounds;
- ``jsonl`` and ``jsonl.gz``: ``iter_jsonl_readings`` over a recorded file, one reading per line.

With ``--mqtt`` (needs a ``mosquitto`` binary), also end to end through a local broker into
`MqttReadingSource`: single-reading messages and batch arrays are queued at the broker for the
source's persistent session, then the time the source takes to drain them is measured (so the
consumer, not the publishers, is what is timed).

The baseline for each is the least the job needs: decoding the same bytes with the standard
library's ``json`` (and, for files, reading the lines). The ratio says what validation,
deduplication and building the columns cost on top. ``--fuzz N`` feeds N mutated payloads to the
parser and fails if it ever raises. Prints a table and writes JSON to benchmarks/out/. Not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ingest import MqttReadingSource, ParseResult, ReadingParser, iter_jsonl_readings, json_batch
from ingest._json_scan import scan_array
from roadgraph.detectors import DetectorRegistry

OUT_DIR = Path(__file__).resolve().parent / "out"
TS0 = 1_776_729_630  # 2026-04-21T00:00:30Z
PREFIX = "traffic/"


def make_registry(n: int) -> DetectorRegistry:
    rng = np.random.default_rng(1)
    return DetectorRegistry(
        detector_id=np.array([f"D{i:06d}" for i in range(n)], dtype=object),
        segment_index=rng.integers(0, max(1, n // 2), n).astype(np.int32),
        lane=np.where(rng.random(n) < 0.5, rng.integers(0, 3, n), -1).astype(np.int16),
        pos_m=np.full(n, np.nan, dtype=np.float32),
        kind=np.array(["loop"] * n, dtype=object),
    )


def make_readings(registry: DetectorRegistry, n: int, seed: int = 2) -> list[dict[str, Any]]:
    """``n`` plausible readings: every detector every 30 s, in time order, like a live feed."""
    rng = random.Random(seed)
    ids = [str(d) for d in registry.detector_id]
    lanes = registry.lane.tolist()
    out: list[dict[str, Any]] = []
    for i in range(n):
        k = i % len(ids)
        count = rng.randint(0, 25)
        reading: dict[str, Any] = {
            "detector_id": ids[k],
            "ts": TS0 + 30 * (i // len(ids)),
            "interval_s": 30,
            "count": count,
            "occupancy_pct": round(rng.uniform(0, 60), 1),
            "speed_kmh": round(rng.uniform(5, 90), 1) if count else None,
        }
        if lanes[k] >= 0:
            reading["lane"] = lanes[k]
        out.append(reading)
    return out


def best_of(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs, and the readings the last run returned."""
    best, n = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        n = run()
        best = min(best, time.perf_counter() - started)
    return best, n


def bench_single(registry: DetectorRegistry, readings: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    messages = [(f"{PREFIX}detectors/{r['detector_id']}", json.dumps(r).encode()) for r in readings]
    clock = lambda: TS0 + 1e9  # noqa: E731 - all readings are in the past

    def parse() -> int:
        parser = ReadingParser(registry, prefix=PREFIX, clock=clock)
        for topic, payload in messages:
            parser.parse_message(topic, payload)
        return parser.accepted_total

    def baseline() -> int:
        loads = json.loads
        for _topic, payload in messages:
            loads(payload)
        return len(messages)

    return _case("single", "one reading per message", repeat, parse, baseline, len(messages))


def bench_batch(
    registry: DetectorRegistry, readings: list[dict[str, Any]], batch_size: int, repeat: int
) -> dict[str, Any]:
    topic = f"{PREFIX}detectors/batch"
    starts = range(0, len(readings), batch_size)
    payloads = [json.dumps(readings[i : i + batch_size]).encode() for i in starts]
    clock = lambda: TS0 + 1e9  # noqa: E731

    def parse() -> int:
        parser = ReadingParser(registry, prefix=PREFIX, clock=clock)
        for payload in payloads:
            parser.parse_message(topic, payload)
        return parser.accepted_total

    def baseline() -> int:
        loads = json.loads
        return sum(len(loads(payload)) for payload in payloads)

    return _case("batch", f"arrays of {batch_size} readings", repeat, parse, baseline, len(readings))


def bench_binary(
    registry: DetectorRegistry, readings: list[dict[str, Any]], batch_size: int, repeat: int, *, engine: bool
) -> dict[str, Any]:
    """Binary batches (``ingest.binary_batch``) on ``detectors/batch/bin``; with ``engine``, each
    parsed batch also goes through ``Pipeline.accept`` (detector watch + engine buffer), i.e.
    readings into engine state, as the live service does."""
    from ingest import encode_binary_batch
    from ingest.binary_batch import RECORD_DTYPE

    topic = f"{PREFIX}detectors/batch/bin"
    payloads = []
    for i in range(0, len(readings), batch_size):
        chunk = readings[i : i + batch_size]
        payloads.append(
            encode_binary_batch(
                [r["detector_id"] for r in chunk],
                np.array([r["ts"] for r in chunk], dtype=np.float64),
                np.array([r["interval_s"] for r in chunk], dtype=np.float32),
                np.array([r["count"] for r in chunk], dtype=np.float32),
                np.array([r["occupancy_pct"] for r in chunk], dtype=np.float32),
                np.array(
                    [np.nan if r["speed_kmh"] is None else r["speed_kmh"] for r in chunk], dtype=np.float32
                ),
                np.array([r.get("lane", -1) for r in chunk], dtype=np.int16),
            )
        )
    clock = lambda: TS0 + 1e9  # noqa: E731
    # Pipelines are built before the clock starts (one per run: state must start empty).
    pipelines = [_pipeline_factory(registry)() for _ in range(repeat)] if engine else []

    def parse() -> int:
        accept = None
        if pipelines:
            pipeline = pipelines.pop()
            parser = pipeline.parser
            accept = pipeline.accept
        else:
            parser = ReadingParser(registry, prefix=PREFIX, clock=clock)
        for payload in payloads:
            result = parser.parse_message(topic, payload)
            if accept is not None:
                accept(result)
        return parser.accepted_total

    def baseline() -> int:
        # The least the job needs: view the records and copy the columns out.
        total = 0
        for payload in payloads:
            n, _ids, ids_bytes = np.frombuffer(payload[4:16], dtype="<u4")
            rec = np.frombuffer(payload, dtype=RECORD_DTYPE, count=int(n), offset=16 + int(ids_bytes))
            cols = [rec[name].copy() for name in ("ts", "interval_s", "count", "occupancy_pct", "speed_kmh")]
            total += len(cols[0])
        return total

    name = "binary→engine" if engine else "binary"
    note = f"{batch_size}-record binary batches" + (", into engine state" if engine else "")
    return _case(
        name, note, repeat, parse, baseline, len(readings), baseline_name="frombuffer + column copies"
    )


def bench_json_arrays(
    registry: DetectorRegistry, readings: list[dict[str, Any]], batch_size: int, repeat: int
) -> list[dict[str, Any]]:
    """JSON arrays on ``detectors/batch``: every way of handling the same payloads, in one run.

    Variants, timed round-robin (one round runs each once, so load changes hit all alike):
    ``json.loads`` and ``orjson.loads`` alone (the decode floor); the old per-reading path
    (``json`` decode, then ``_validate`` per element: what arrays took before ingest/json_batch.py)
    and the columnar path, each as parser alone and into engine state (``Pipeline.accept``, as the
    binary row). Each figure is the median of ``repeat`` rounds, with the best beside it.
    """
    import orjson

    from ingest.parse import _batch_of_rows

    topic = f"{PREFIX}detectors/batch"
    starts = range(0, len(readings), batch_size)
    payloads = [json.dumps(readings[i : i + batch_size]).encode() for i in starts]
    n = len(readings)
    clock = lambda: TS0 + 1e9  # noqa: E731
    make_pipeline = _pipeline_factory(registry)
    # A fresh parser or pipeline per run, built before the clock starts (no reading a duplicate).
    fresh: dict[str, list[Any]] = {
        name: [make_pipeline() for _ in range(repeat)]
        for name in ("old per-reading → engine", "columnar → engine", "scanner → engine")
    }
    fresh.update(
        {
            name: [ReadingParser(registry, prefix=PREFIX, clock=clock) for _ in range(repeat)]
            for name in ("old per-reading, parser", "columnar, parser", "scanner, parser")
        }
    )

    def old_path(parser: ReadingParser, payload: bytes) -> ParseResult:
        rejections: list[Any] = []
        now = parser._clock()
        items = parser._decode(payload)
        assert isinstance(items, list)
        rows = parser._collect(items, topic, "", now + parser.limits.max_future_s, rejections, now=now)
        return ParseResult(_batch_of_rows(rows), rejections)

    def decode_only(loads: Callable[[bytes], Any]) -> Callable[[], int]:
        return lambda: sum(len(loads(payload)) for payload in payloads)

    def run_parser(name: str, columnar: bool, scanner: bool = False) -> Callable[[], int]:
        def run() -> int:
            parser = fresh[name].pop()
            json_batch.SCANNER = scanner
            for payload in payloads:
                parser.parse_message(topic, payload) if columnar else old_path(parser, payload)
            return int(parser.accepted_total)

        return run

    def run_engine(name: str, columnar: bool, scanner: bool = False) -> Callable[[], int]:
        def run() -> int:
            pipeline = fresh[name].pop()
            parser, accept = pipeline.parser, pipeline.accept
            json_batch.SCANNER = scanner
            for payload in payloads:
                accept(parser.parse_message(topic, payload) if columnar else old_path(parser, payload))
            return int(pipeline.counters.accepted)

        return run

    # The scanner (ingest/_json_scan.py) takes every payload here; compile it before the clock starts.
    if scan_array(payloads[0]) is None:
        raise SystemExit("json arrays: the byte scanner gave up on the benchmark payloads")

    variants: dict[str, Callable[[], int]] = {
        "json.loads": decode_only(json.loads),
        "orjson.loads": decode_only(orjson.loads),
        "old per-reading, parser": run_parser("old per-reading, parser", False),
        "columnar, parser": run_parser("columnar, parser", True),
        "old per-reading → engine": run_engine("old per-reading → engine", False),
        "columnar → engine": run_engine("columnar → engine", True),
        # The columnar path above with the byte scanner instead of orjson + dicts (json_batch.SCANNER).
        "scanner, parser": run_parser("scanner, parser", True, scanner=True),
        "scanner → engine": run_engine("scanner → engine", True, scanner=True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, run in variants.items():
            started = time.perf_counter()
            got = run()
            times[name].append(time.perf_counter() - started)
            if got != n:
                raise SystemExit(f"json arrays {name}: {got} of {n} readings; the benchmark data is wrong")
    json_batch.SCANNER = True
    json_s = float(np.median(times["json.loads"]))
    cases = []
    for name, seconds in times.items():
        median = float(np.median(seconds))
        cases.append(
            {
                "case": f"json[{batch_size}] {name}",
                "note": f"arrays of {batch_size} readings, median of {repeat} rounds",
                "readings": n,
                "seconds": median,
                "readings_per_s": n / median,
                "best_readings_per_s": n / min(seconds),
                "baseline": "json.loads of the same bytes (same rounds)",
                "baseline_readings_per_s": n / json_s,
                "time_vs_baseline": median / json_s,
            }
        )
        if name.startswith("scanner"):  # against the orjson columnar path of the same rounds
            columnar = float(np.median(times[name.replace("scanner", "columnar")]))
            cases[-1]["note"] = f"{cases[-1]['note']}; ×{columnar / median:.2f} the orjson columnar path"
    return cases


def _pipeline_factory(registry: DetectorRegistry) -> Callable[[], Any]:
    """A `Pipeline` over a synthetic grid big enough for the registry's segments."""
    from roadgraph.synthetic import synthetic_grid
    from roadpulse.config import load_config
    from roadpulse.pipeline import Pipeline

    n_segments = int(registry.segment_index.max()) + 1
    side = int((n_segments / 4) ** 0.5) + 2
    network = synthetic_grid(side, side)
    settings = load_config()
    return lambda: Pipeline(network, registry, settings, clock=lambda: TS0 + 1e9)


def bench_jsonl(
    registry: DetectorRegistry, readings: list[dict[str, Any]], workdir: Path, compressed: bool, repeat: int
) -> dict[str, Any]:
    data = "".join(json.dumps(r) + "\n" for r in readings).encode()
    path = workdir / ("readings.jsonl.gz" if compressed else "readings.jsonl")
    path.write_bytes(gzip.compress(data, compresslevel=6) if compressed else data)
    clock = lambda: TS0 + 1e9  # noqa: E731

    def parse() -> int:
        parser = ReadingParser(registry, prefix=PREFIX, clock=clock)
        for _result in iter_jsonl_readings(path, parser):
            pass
        return parser.accepted_total

    def baseline() -> int:
        loads = json.loads
        with gzip.open(path, "rb") if compressed else path.open("rb") as lines:
            return sum(1 for line in lines if loads(line) is not None)

    name = "jsonl.gz" if compressed else "jsonl"
    note = f"{path.stat().st_size / 1e6:.1f} MB file"
    return _case(name, note, repeat, parse, baseline, len(readings))


def _case(
    name: str,
    note: str,
    repeat: int,
    parse: Callable[[], int],
    baseline: Callable[[], int],
    expected: int,
    *,
    baseline_name: str = "json.loads of the same bytes",
) -> dict[str, Any]:
    seconds, accepted = best_of(repeat, parse)
    if accepted != expected:
        raise SystemExit(f"{name}: accepted {accepted} of {expected} readings; the benchmark data is wrong")
    baseline_s, _ = best_of(repeat, baseline)
    return {
        "case": name,
        "note": note,
        "readings": expected,
        "seconds": seconds,
        "readings_per_s": expected / seconds,
        "baseline": baseline_name,
        "baseline_readings_per_s": expected / baseline_s,
        "time_vs_baseline": seconds / baseline_s,
    }


def fuzz(registry: DetectorRegistry, readings: list[dict[str, Any]], n: int, seed: int = 3) -> dict[str, Any]:
    """Mutate valid payloads (byte flips, cuts, splices, type swaps) and check the parser never raises."""
    rng = random.Random(seed)
    parser = ReadingParser(registry, prefix=PREFIX, clock=lambda: TS0 + 600)
    seeds = [json.dumps(readings[0]).encode()] * 100 + [json.dumps(r).encode() for r in readings[:100]]
    seeds += [json.dumps(readings[i : i + 5]).encode() for i in range(0, 200, 5)]
    odd_values: list[Any] = [None, True, -1, 0, 0.5, 1e308, -1e308, 10**30, "x", "2026-04-21T00:00:30Z"]
    odd_values += [[], {}]
    # Mostly the topics the payloads belong to, so mutations reach validation, not just routing.
    topics = [f"{PREFIX}detectors/{readings[0]['detector_id']}", f"{PREFIX}detectors/batch"] * 4
    topics += [f"{PREFIX}detectors/", f"{PREFIX}detectors/a/b", "x/y", ""]
    started = time.perf_counter()
    for _ in range(n):
        payload = bytearray(rng.choice(seeds))
        mutation = rng.randrange(5)
        if mutation == 0 and payload:
            for _ in range(rng.randint(1, 4)):
                payload[rng.randrange(len(payload))] = rng.randrange(256)
        elif mutation == 1:
            payload = payload[: rng.randrange(len(payload) + 1)]
        elif mutation == 2:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            payload = payload[: rng.randrange(len(payload) + 1)] + other[cut:]
        elif mutation == 3:
            obj = json.loads(bytes(payload))
            target = obj[0] if isinstance(obj, list) and obj else obj
            if isinstance(target, dict):
                target[rng.choice([*target.keys(), "lane", "speed_kmh"])] = rng.choice(odd_values)
            payload = bytearray(json.dumps(obj).encode())
        else:
            payload = bytearray(rng.randbytes(rng.randrange(64)))
        topic = rng.choice(topics)
        try:
            result = parser.parse_message(topic, bytes(payload))
        except Exception as exc:  # the whole point: report the input that broke the parser
            raise SystemExit(f"parser raised {exc!r} on topic {topic!r} payload {bytes(payload)!r}") from exc
        for rejection in result.rejections:
            if "\n" in rejection.reason:
                raise SystemExit(f"multi-line reason {rejection.reason!r}")
    return {
        "examples": n,
        "seconds": time.perf_counter() - started,
        "accepted": parser.accepted_total,
        "rejected_by_code": dict(parser.rejected_total.most_common()),
    }


def bench_mqtt(
    registry: DetectorRegistry, readings: list[dict[str, Any]], batch_size: int, publishers: int
) -> list[dict[str, Any]]:
    """End to end: publisher processes -> mosquitto -> aiomqtt -> MqttReadingSource -> parser."""
    import aiomqtt  # only this case needs it

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="bench_ingest-mqtt-") as tmp:
        config = Path(tmp) / "mosquitto.conf"
        # max_queued_messages 0: mosquitto's default (1000) silently drops QoS 1 messages for a
        # subscriber that falls behind, which would make the count below never complete.
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
        broker = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("mosquitto did not start") from None
                    time.sleep(0.05)
            single = asyncio.run(_mqtt_case(aiomqtt, registry, port, len(readings), 1, publishers))
            batch = asyncio.run(_mqtt_case(aiomqtt, registry, port, len(readings), batch_size, publishers))
        finally:
            broker.kill()
            broker.wait()
    return [
        {"case": "mqtt", "note": "one reading per message, drained from the broker queue", **single},
        {"case": "mqtt batch", "note": f"arrays of {batch_size}, drained from the broker queue", **batch},
    ]


async def _mqtt_case(
    aiomqtt: Any, registry: DetectorRegistry, port: int, n: int, batch_size: int, publishers: int
) -> dict[str, Any]:
    """Queue every message at the broker first, then time the source draining them.

    The source's session is persistent (fixed identifier, ``clean_session=False``), so the broker
    holds the QoS 1 messages published while it is away; timing only the drain measures the
    consumer, not the publishers.
    """
    identifier = f"bench-ingest-{batch_size}"
    parser = ReadingParser(registry, prefix=PREFIX, clock=lambda: TS0 + 1e9)
    seen = 0
    first = last = 0.0
    all_in = asyncio.Event()

    def on_result(result: ParseResult) -> None:
        nonlocal seen, first, last
        last = time.perf_counter()
        first = first or last
        seen += len(result.batch) + len(result.rejections)
        if seen >= n:
            all_in.set()

    def make_source() -> MqttReadingSource:
        return MqttReadingSource(
            lambda: aiomqtt.Client("127.0.0.1", port, identifier=identifier, clean_session=False),
            parser,
            on_result,
            prefix=PREFIX,
        )

    async with make_source() as source:  # creates the persistent subscription
        await asyncio.wait_for(source.wait_connected(), 10)
    share = -(-n // publishers)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--publish-worker",
            str(port),
            str(i * share),
            str(min(share, n - i * share)),
            str(batch_size),
            str(len(registry)),
        )
        for i in range(publishers)
        if i * share < n
    ]
    for worker in workers:
        if await worker.wait() != 0:
            raise SystemExit("mqtt: a publisher process failed")
    async with make_source() as source:
        await asyncio.wait_for(all_in.wait(), 600)
    if parser.accepted_total != n:
        raise SystemExit(f"mqtt: accepted {parser.accepted_total} of {n}: {dict(parser.rejected_total)}")
    seconds = last - first
    return {
        "readings": n,
        "messages": source.messages_received,
        "seconds": seconds,
        "readings_per_s": n / seconds,
        "messages_per_s": source.messages_received / seconds,
    }


def publish_worker(port: int, start: int, count: int, batch_size: int, detectors: int) -> None:
    """Child process of the ``--mqtt`` case: publish readings[start:start+count] at QoS 1."""
    import paho.mqtt.client as paho

    registry = make_registry(detectors)
    readings = make_readings(registry, start + count)[start:]
    if batch_size == 1:
        messages = [(f"{PREFIX}detectors/{r['detector_id']}", json.dumps(r).encode()) for r in readings]
    else:
        starts = range(0, len(readings), batch_size)
        topic = f"{PREFIX}detectors/batch"
        messages = [(topic, json.dumps(readings[i : i + batch_size]).encode()) for i in starts]
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for info in [client.publish(topic, payload, qos=1) for topic, payload in messages]:
        info.wait_for_publish(timeout=600)
    client.disconnect()
    client.loop_stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--detectors", type=int, default=10_000, help="registry size (default 10000)")
    ap.add_argument("--readings", type=int, default=200_000, help="readings per case (default 200000)")
    ap.add_argument("--batch-size", type=int, default=1000, help="readings per batch message (default 1000)")
    ap.add_argument("--binary-batch-size", type=int, default=10_000, help="records per binary batch")
    ap.add_argument(
        "--json-batch-sizes",
        type=int,
        nargs="*",
        default=[1000, 10_000],
        help="array sizes for the JSON-array comparison (default 1000 10000; none: skip it)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts (default 3)")
    ap.add_argument("--fuzz", type=int, default=0, metavar="N", help="also fuzz the parser with N payloads")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/out/...)")
    ap.add_argument("--mqtt", action="store_true", help="also measure end to end through mosquitto")
    ap.add_argument("--publishers", type=int, default=4, help="publisher processes for --mqtt (default 4)")
    ap.add_argument("--mqtt-readings", type=int, default=40_000, help="readings for --mqtt (default 40000)")
    args = ap.parse_args(argv)

    registry = make_registry(args.detectors)
    readings = make_readings(registry, args.readings)
    # The test data (hundreds of thousands of dicts) would otherwise be rescanned by every full
    # garbage collection the parsing triggers, a cost a service with a small heap does not pay.
    gc.collect()
    gc.freeze()
    cases = [
        bench_single(registry, readings, args.repeat),
        bench_batch(registry, readings, args.batch_size, args.repeat),
        bench_binary(registry, readings, args.binary_batch_size, args.repeat, engine=False),
        bench_binary(registry, readings, args.binary_batch_size, args.repeat, engine=True),
    ]
    for size in args.json_batch_sizes:
        cases += bench_json_arrays(registry, readings, size, args.repeat)
    with tempfile.TemporaryDirectory(prefix="bench_ingest-") as tmp:
        cases.append(bench_jsonl(registry, readings, Path(tmp), compressed=False, repeat=args.repeat))
        cases.append(bench_jsonl(registry, readings, Path(tmp), compressed=True, repeat=args.repeat))
    if args.mqtt:
        mqtt_readings = readings[: args.mqtt_readings]
        cases += bench_mqtt(registry, mqtt_readings, args.batch_size, args.publishers)

    print(f"{'case':<38} {'readings/s':>12} {'baseline/s':>12} {'÷ baseline':>11}  note")
    for c in cases:
        has_baseline = "baseline_readings_per_s" in c  # the mqtt cases have none
        baseline = f"{c['baseline_readings_per_s']:>12,.0f}" if has_baseline else f"{'-':>12}"
        ratio = f"{c['time_vs_baseline']:>10.2f}x" if has_baseline else f"{'-':>11}"
        print(f"{c['case']:<38} {c['readings_per_s']:>12,.0f} {baseline} {ratio}  {c['note']}")
    report: dict[str, Any] = {
        "benchmark": "bench_ingest",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "detectors": args.detectors,
        "readings": args.readings,
        "repeat": args.repeat,
        "cases": cases,
    }
    if args.fuzz:
        report["fuzz"] = fuzz(registry, readings, args.fuzz)
        f = report["fuzz"]
        print(f"fuzz: {f['examples']:,} payloads in {f['seconds']:.1f} s, the parser never raised")
        print(f"      accepted {f['accepted']:,}; rejected by code {f['rejected_by_code']}")

    out = args.out or OUT_DIR / f"bench_ingest-{args.detectors}x{args.readings}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--publish-worker":
        publish_worker(*(int(a) for a in sys.argv[2:]))
        raise SystemExit(0)
    raise SystemExit(main())
