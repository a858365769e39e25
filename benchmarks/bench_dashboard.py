"""The dashboard in a real browser with 100,000 segments: initial render and frame time under live updates.

    .venv/bin/python benchmarks/bench_dashboard.py [--grid 158] [--seconds 8] [--chromium /usr/bin/chromium]

Runs the real HTTP service component (uvicorn in its own event loop) on a synthetic grid
(``roadgraph.synthetic_grid``; 158 × 158 junctions = 99,224 segments) and, as the baseline in the
same run, on the bundled demo city (1,564 segments). Ticks are pushed through the real live stream
once a second, each changing the level of 30 % of the segments (the first tick: all of them).
Headless Chromium (Debian's, via Playwright) opens the dashboard; the page measures:

* initial render — from the start of the page script to the first map frame with the live codes
  (loading /api/config, the geometry blob, the codes, then building the GPU buffers);
* frame time — ``requestAnimationFrame`` intervals while the map pans continuously (every frame
  is a full redraw) and live ticks arrive and are applied;
* tick apply — main-thread time to take one tick event (JSON parse, recolour, panels).

Prints a table and writes ``benchmarks/out/bench_dashboard.json`` and a screenshot per network to
``benchmarks/out/screenshots/``. Software WebGL (SwiftShader) is what a headless machine without a
GPU has; a control-room PC with a GPU draws faster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from congestion.index import area_indices, lane_length_weight
from congestion.levels import level_from_ratio
from congestion.types import SegmentStates, TickResult
from roadgraph import load_network, synthetic_grid
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork
from roadpulse.brokers.mosquitto import free_port
from roadpulse.bundled import demo_city_path
from roadpulse.components import LiveContext
from roadpulse.config import load_config
from roadpulse.pipeline import Pipeline
from roadpulse.service import HttpService

OUT = Path(__file__).resolve().parent / "out"
CHANGED_SHARE = 0.3



class StateMaker:
    """Segment states with a random level per segment; each ``next`` re-draws a share of them."""

    def __init__(self, network: RoadNetwork, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        n = len(network)
        self.free = (0.9 * network.segments.speed_limit_kmh).astype(np.float32)
        self.ratio = self.rng.choice([0.9, 0.6, 0.45, 0.35, 0.2], size=n, p=[0.5, 0.2, 0.12, 0.1, 0.08])
        self.weight = lane_length_weight(network.segments.length_m, network.segments.lanes)
        self.no_district = np.full(n, -1, dtype=np.int16)

    def next(self, ts: float, share: float) -> TickResult:
        n = len(self.ratio)
        pick = self.rng.random(n) < share
        self.ratio[pick] = self.rng.choice([0.9, 0.6, 0.45, 0.35, 0.2], size=int(pick.sum()))
        speed = (self.free * self.ratio).astype(np.float32)
        states = SegmentStates(
            ts=ts,
            speed_kmh=speed,
            free_flow_kmh=self.free,
            tti=(self.free / speed).astype(np.float32),
            level=level_from_ratio(self.ratio),
            confidence=np.full(n, 0.8, np.float32),
            imputed=np.zeros(n, bool),
            n_detectors=np.ones(n, np.int16),
            n_cameras=np.zeros(n, np.int16),
        )
        city, districts = area_indices(states, self.weight, self.no_district, ())
        return TickResult(states=states, city=city, districts=districts, readings_used=n)


class ServiceRunner:
    """The HTTP service component on its own event loop, fed synthetic ticks."""

    def __init__(self, network: RoadNetwork, tmp: Path) -> None:
        self.network = network
        self.port = free_port()
        self.settings = load_config(
            None,
            overrides={
                "api.listen": f"127.0.0.1:{self.port}",
                "api.history_path": str(tmp / f"h{self.port}.sqlite"),
                "engine.tick_s": 1,
            },
        )
        self.states = StateMaker(network)
        self.service = HttpService(self.settings, token="bench", announce=lambda _: None)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.ts = float(int(time.time()))

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        pipeline = Pipeline(self.network, DetectorRegistry.empty(), self.settings)
        self.ctx = LiveContext(
            network=self.network,
            detectors=DetectorRegistry.empty(),
            settings=self.settings,
            pipeline=pipeline,
            publish=lambda _: None,
            client_factory=lambda **_: None,
            stop=self.stop,
        )
        await self.service.start(self.ctx)
        self.tick(1.0)
        self.ready.set()
        await self.stop.wait()
        await self.service.stop()

    def tick(self, share: float) -> None:
        self.ts += 1.0
        self.service.after_tick(self.ctx, self.states.next(self.ts, share))

    def tick_threadsafe(self, share: float) -> None:
        self.loop.call_soon_threadsafe(self.tick, share)

    def __enter__(self) -> ServiceRunner:
        self.thread.start()
        if not self.ready.wait(120):
            raise RuntimeError("service did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


IDLE_LOOP = """
() => new Promise((done) => {
  const frames = []; let last = performance.now();
  const t0 = last;
  function step(t) {
    frames.push(t - last); last = t;
    if (t - t0 < 2000) requestAnimationFrame(step); else done(frames.slice(2));
  }
  requestAnimationFrame(step);
})
"""

PAN_LOOP = """
() => {
  const m = window.__rp_mapobj;
  window.__bench = { frames: [], stop: false };
  let last = performance.now(), k = 0;
  function step(t) {
    window.__bench.frames.push(t - last); last = t; k++;
    m.panBy(Math.sin(k / 15) * 4, Math.cos(k / 15) * 2);   // a full redraw every frame
    if (!window.__bench.stop) requestAnimationFrame(step);
  }
  requestAnimationFrame(step);
}
"""


def measure(browser: Any, network: RoadNetwork, label: str, seconds: float, tmp: Path) -> dict[str, Any]:
    with ServiceRunner(network, tmp) as svc:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(f"http://127.0.0.1:{svc.port}/")
        page.wait_for_function("window.__rp && window.__rp.ready", timeout=180000)
        wall_render_s = time.perf_counter() - t0
        initial_ms = page.evaluate("window.__rp.initialRenderMs")
        page.wait_for_function("window.__rp.ticksApplied >= 0", timeout=10000)
        renderer = page.evaluate("window.__rp.map.renderer")
        idle = np.array(page.evaluate(IDLE_LOOP))  # frames of the page when the map does not redraw
        # idle frames first (nothing changes), then the pan loop with live ticks once a second
        page.evaluate(PAN_LOOP)
        svc.tick_threadsafe(1.0)  # a tick that changes every segment
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(1.0)
            svc.tick_threadsafe(CHANGED_SHARE)
        page.evaluate("window.__bench.stop = true")
        frames = page.evaluate("window.__bench.frames.slice(2)")  # the first intervals include setup
        page.wait_for_timeout(300)
        full_draws = sorted(page.evaluate("window.__rp_mapobj.measureFullDrawMs()") for _ in range(5))
        composes = page.evaluate("window.__rp.map.composes || 0")
        draws = page.evaluate("window.__rp.map.draws")
        applies = page.evaluate("window.__rp.tickApplyMs || []")
        ticks = page.evaluate("window.__rp.ticksApplied")
        OUT.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
        shot = OUT / "screenshots" / f"dashboard_{label}.png"
        page.screenshot(path=str(shot))
        page.close()
    if errors:
        raise RuntimeError(f"{label}: JavaScript errors: {errors}")
    frames_a = np.array(frames)
    return {
        "network": label,
        "segments": len(network),
        "renderer": renderer,
        "initial_render_ms": round(float(initial_ms), 1),
        "goto_to_ready_s": round(wall_render_s, 2),
        "idle_frame_ms_median": round(float(np.median(idle)), 1) if len(idle) else None,
        "frames": len(frames),
        "frame_ms_median": round(float(np.median(frames_a)), 1),
        "frame_ms_p95": round(float(np.percentile(frames_a, 95)), 1),
        "frame_ms_max": round(float(frames_a.max()), 1),
        "fps": round(1000.0 / float(np.mean(frames_a)), 1),
        "ticks_applied": ticks,
        "full_draw_ms_median": round(full_draws[len(full_draws) // 2], 1),
        "frames_composed": composes,
        "full_draws": draws,
        "tick_apply_ms_median": round(statistics.median(applies), 1) if applies else None,
        "tick_apply_ms_max": round(max(applies), 1) if applies else None,
        "screenshot": str(shot),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=int, default=158, help="junctions per side of the synthetic grid")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of panning with live ticks")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    networks = [
        ("demo_city", load_network(demo_city_path())),
        (f"grid_{args.grid}", synthetic_grid(args.grid, args.grid)),
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=args.chromium,
            headless=True,
            args=["--no-sandbox", "--enable-unsafe-swiftshader"],
        )
        version = browser.version
        measure(browser, networks[0][1], "warmup", 1.0, Path(tmp))  # the browser's own first-page costs
        for label, net in networks:
            results.append(measure(browser, net, label, args.seconds, Path(tmp)))
        browser.close()
    base, big = results
    ratios = {
        "frame_ms_median_ratio": round(big["frame_ms_median"] / base["frame_ms_median"], 2),
        "full_draw_ratio": round(big["full_draw_ms_median"] / max(base["full_draw_ms_median"], 0.1), 2),
        "initial_render_ratio": round(big["initial_render_ms"] / base["initial_render_ms"], 2),
    }
    cols = [
        "network",
        "segments",
        "renderer",
        "initial_render_ms",
        "idle_frame_ms_median",
        "frame_ms_median",
        "frame_ms_p95",
        "frame_ms_max",
        "fps",
        "full_draw_ms_median",
        "full_draws",
        "frames_composed",
        "ticks_applied",
        "tick_apply_ms_median",
        "tick_apply_ms_max",
    ]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))
    print(f"ratios (grid / demo city, same run): {ratios}")
    OUT.mkdir(exist_ok=True)
    out = {
        "results": results,
        "ratios": ratios,
        "chromium": version,
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "changed_share_per_tick": CHANGED_SHARE,
    }
    (OUT / "bench_dashboard.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {OUT / 'bench_dashboard.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
