"""Fixtures of the service tests: one live engine with the HTTP service for the whole session, a
plain HTTP client, and a real headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_live import LiveEngine

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "service"

#: Where a browser may be: ROADPULSE_CHROMIUM, then Debian's chromium package.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


@pytest.fixture(scope="session")
def live(mqtt_broker, tmp_path_factory) -> Iterator[LiveEngine]:
    engine = LiveEngine(mqtt_broker.host, mqtt_broker.port, tmp_path_factory.mktemp("service"))
    engine.start()
    try:
        # two ticks with readings: every segment with a detector has a state. The first tick may
        # take a while (numba compiles the engine's kernels unless they are cached).
        with httpx.Client(base_url=engine.url, timeout=60) as client:

            def ready() -> bool:
                try:
                    index = client.get("/api/index").json()
                    codes = client.get("/api/network/levels").json()["codes"]
                    # free flow learned and congestion readings flowing: every level on the map
                    return (
                        index["ts"] is not None
                        and index["ts"] >= engine.learn_until
                        and index["city"]["tpi"] is not None
                        and all(codes.count(c) > 20 for c in "12345")
                    )
                except httpx.HTTPError:
                    return False

            engine.wait_for(ready, 120, "three ticks with a known city TPI")
        yield engine
    finally:
        engine.close()


@pytest.fixture
def client(live: LiveEngine) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def find_chromium() -> str | None:
    env = os.environ.get("ROADPULSE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for path in CHROMIUM_CANDIDATES:
        if Path(path).is_file():
            return path
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser():
    path = find_chromium()
    if path is None:
        message = (
            "NO BROWSER: dashboard browser tests SKIPPED — install Debian's chromium "
            "(`make browser` as root) or set ROADPULSE_CHROMIUM"
        )
        print(f"\n*** {message} ***")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=path,
            headless=True,
            # software WebGL (SwiftShader) where no GPU is present
            args=["--no-sandbox", "--enable-unsafe-swiftshader"],
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
