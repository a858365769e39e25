"""Property-based fuzz of the reading parser with hypothesis, at scale (100,000 payloads by default).

    .venv/bin/python benchmarks/fuzz_parser.py                    # 100,000 payloads
    .venv/bin/python benchmarks/fuzz_parser.py --payloads 20000

Runs the property of ``tests/ingest/test_ingest_fuzz.py`` (the parser never raises; every reading
is accepted or refused with a one-line reason; accepted rows pass the range checks) with
``--examples`` generated payloads: JSON readings, JSON arrays, binary batches (plausible, corrupted
and cut short), raw bytes, NaN-laced JSON, on valid, injected and unknown topics. The test suite
runs the same properties with 500 examples each. Prints the count and the time; writes JSON to
benchmarks/out/fuzz_parser.json. Not a test of speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--payloads", type=int, default=100_000, help="at least this many payloads")
    ap.add_argument("--stream-max", type=int, default=60, help="longest message stream per example")
    args = ap.parse_args(argv)
    # Hypothesis costs milliseconds per example, so each example is a stream of up to
    # --stream-max messages through one parser (about half that on average); runs repeat until
    # --payloads payloads have been parsed.
    per_run = 1000
    os.environ["ROADPULSE_FUZZ_EXAMPLES"] = str(per_run)
    os.environ["ROADPULSE_FUZZ_STREAM_MAX"] = str(args.stream_max)
    import types

    tests = types.ModuleType("tests")  # this checkout's tests folder, not a wheel's "tests" package
    tests.__path__ = [str(ROOT / "tests")]
    sys.modules["tests"] = tests
    from tests.ingest import test_ingest_fuzz as fuzz

    started = time.perf_counter()
    examples = 0
    while fuzz.PAYLOADS_SEEN[0] < args.payloads:
        fuzz.test_a_stream_of_messages_keeps_the_parser_consistent()
        examples += per_run
        print(f"  {fuzz.PAYLOADS_SEEN[0]:,} payloads, {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    seen = fuzz.PAYLOADS_SEEN[0]
    print(
        f"fuzz: {seen:,} generated payloads in {seconds:.0f} s ({seen / seconds:,.0f}/s); the property held"
    )
    out = ROOT / "benchmarks" / "out" / "fuzz_parser.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"examples": examples, "payloads": seen, "seconds": seconds}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if seen >= args.payloads else 1


if __name__ == "__main__":
    raise SystemExit(main())
