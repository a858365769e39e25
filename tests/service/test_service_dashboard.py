"""The dashboard in a real headless Chromium (Playwright), against the running service.

Screenshots go to test-artifacts/service/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from service_live import LiveEngine

#: display code -> RGB of the map palette (static/i18n.js RP_LEVELS)
PALETTE = {
    0: (0x5D, 0x66, 0x75),
    1: (0x21, 0xB2, 0x4B),
    2: (0x9A, 0xD8, 0x2E),
    3: (0xF7, 0xC6, 0x00),
    4: (0xF5, 0x7C, 0x00),
    5: (0xD5, 0x00, 0x00),
    6: (0xB0, 0x00, 0xFF),
}


def canvas_rgb(page) -> np.ndarray:
    """The map canvas as an RGB array (read from the canvas itself, not a screenshot)."""
    data_url = page.evaluate("document.getElementById('map').toDataURL('image/png')")
    png = base64.b64decode(data_url.split(",", 1)[1])
    bgra = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    return (
        cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)
        if bgra.shape[2] == 4
        else cv2.cvtColor(bgra, cv2.COLOR_BGR2RGB)
    )


def pixels_of(rgb: np.ndarray, code: int, tol: int = 12) -> int:
    target = np.array(PALETTE[code], dtype=np.int16)
    return int(np.sum(np.all(np.abs(rgb.astype(np.int16) - target) <= tol, axis=2)))


@pytest.fixture
def page(browser, live: LiveEngine):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(live.url + "/")
    p.wait_for_function("window.__rp && window.__rp.ready && window.__rp.ticksApplied >= 1", timeout=60000)
    yield p
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_map_shows_segments_coloured_by_live_level(page, live: LiveEngine, artifacts: Path) -> None:
    page.screenshot(path=str(artifacts / "dashboard_zh.png"))
    renderer = page.evaluate("window.__rp.map.renderer")
    assert renderer in ("webgl2", "webgl", "2d")
    rgb = canvas_rgb(page)
    counts = {code: pixels_of(rgb, code) for code in PALETTE}
    # the readings aim every detector segment at one of the five levels: all five are on the map
    for code in (1, 2, 3, 4, 5):
        assert counts[code] > 20, f"level {code} colour hardly on the map: {counts} ({renderer})"
    assert counts[6] == 0  # nothing closed yet
    # the map holds the service's display code for every segment
    api = httpx.get(live.url + "/api/network/levels").json()
    shown = page.evaluate("String.fromCharCode(...Array.from(window.__rp_mapobj.segCodes, (c) => c + 48))")
    assert len(shown) == len(api["codes"]) == len(live.network)
    same = sum(a == b for a, b in zip(shown, api["codes"], strict=True)) / len(shown)
    assert same > 0.9  # a tick may fall between the two reads
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#gauge-card h2").inner_text() == "全市交通指数 TPI"


def test_gauge_shows_the_live_tpi_and_it_moves(page, live: LiveEngine) -> None:
    def shown() -> tuple[float, float]:
        """(tick time, the TPI the gauge shows: the needle at 2 decimals, the number at 1),
        checked against the index history of that tick."""
        el = page.locator("#tpi-value")
        ts, text, tpi = (
            float(el.get_attribute("data-ts")),
            el.inner_text(),
            float(el.get_attribute("data-tpi")),
        )
        assert abs(float(text) - tpi) <= 0.05 + 1e-9
        assert round(api_tpi(ts), 2) == tpi
        return ts, tpi

    def api_tpi(ts: float) -> float:
        rows = httpx.get(live.url + "/api/index/history", params={"from": ts, "to": ts}).json()["points"]
        assert rows, f"no history row at {ts}"
        return rows[0]["tpi"]

    ts1, tpi1 = shown()
    page.wait_for_function(f"Number(document.getElementById('tpi-value').dataset.ts) > {ts1}", timeout=15000)
    values = {tpi1}
    for _ in range(15):  # the readings drift: the TPI shown changes within a few ticks
        ts, tpi = shown()
        values.add(tpi)
        if len(values) > 1:
            break
        page.wait_for_function(
            f"Number(document.getElementById('tpi-value').dataset.ts) > {ts}", timeout=15000
        )
    assert len(values) > 1, f"the TPI did not move over several ticks: {values}"
    # the trend chart and the top-roads list are filled
    assert page.locator("#top-roads li").count() >= 3
    assert (
        page.evaluate(
            "(() => { const c = document.getElementById('trend');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 0; i < d.length; i += 4)"
            " if (d[i] > 200 && d[i+1] > 200 && d[i+2] > 200) n++;"
            " return n; })()"
        )
        > 20
    )


def test_operator_creates_a_closure_and_sees_it_on_the_map_and_list(
    page, live: LiveEngine, artifacts: Path
) -> None:
    row = 20
    sid = str(live.network.segments.segment_id[row])
    # without a token: refused, with the reason shown
    page.fill("#closure-segments", sid)
    page.fill("#closure-reason", "browser test")
    page.click("#closure-submit")
    page.wait_for_function(
        "document.getElementById('closure-error').textContent.startsWith('401')", timeout=10000
    )
    assert "Authorization" in page.locator("#closure-error").inner_text()
    assert httpx.get(live.url + "/api/closures").json()["closures"] == [] or all(
        sid not in c["segment_ids"] for c in httpx.get(live.url + "/api/closures").json()["closures"]
    )
    # a wrong token: 403
    page.fill("#token-input", "not-the-token")
    page.click("#signin button")
    page.click("#closure-submit")
    page.wait_for_function(
        "document.getElementById('closure-error').textContent.startsWith('403')", timeout=10000
    )
    page.click("#signout")
    # signed in: created, listed at once, closed on the map within a tick
    page.fill("#token-input", live.token)
    page.click("#signin button")
    assert page.locator("#operator-state").inner_text() == "操作员已登录"
    page.fill("#closure-segments", sid)
    page.click("#closure-submit")
    page.wait_for_selector("#closures li.closure", timeout=10000)
    assert sid in page.locator("#closures").inner_text()
    ticks_before = page.evaluate("window.__rp.ticksApplied")
    page.wait_for_function(f"window.__rp.ticksApplied >= {ticks_before + 2}", timeout=15000)
    # zoom to the closed segment so it is more than a few pixels long
    lon, lat = live.network.segments.geometry[row].interpolate(0.5, normalized=True).coords[0]
    page.evaluate(
        "([lon, lat]) => { const m = window.__rp_mapobj; const [x, y] = m.fromLonLat(lon, lat);"
        " m.centreOn(x, y, 0.5); }",
        [lon, lat],
    )
    page.wait_for_timeout(300)
    rgb = canvas_rgb(page)
    assert pixels_of(rgb, 6) > 30, "the closed segment is not drawn in the closure colour"
    page.screenshot(path=str(artifacts / "dashboard_closure.png"))
    # clear it from the list
    page.click("#closures button.clear")
    page.wait_for_function(
        f"!document.getElementById('closures').textContent.includes('{sid}')", timeout=10000
    )


def test_labels_switch_to_english(page, artifacts: Path) -> None:
    page.click("#lang")
    assert page.locator("#gauge-card h2").inner_text() == "City traffic index (TPI)"
    assert page.locator("html").get_attribute("lang") == "en"
    page.screenshot(path=str(artifacts / "dashboard_en.png"))
    page.click("#lang")
    assert page.locator("#gauge-card h2").inner_text() == "全市交通指数 TPI"


def test_camera_wall_and_detector_health(page, artifacts: Path) -> None:
    # the wall reloads every few ticks: wait for the camera's snapshot to be shown
    page.wait_for_function(
        "(() => { const img = document.querySelector('#cameras figure.camera img');"
        " return img && img.complete && img.naturalWidth === 160; })()",
        timeout=30000,
    )
    caption = page.locator("#cameras figcaption").first.inner_text()
    assert "cam-test-1" in caption
    assert page.locator("#cameras .health").count() == 1
    # detector health at a glance: a count per status, adding up to every detector
    summary = page.locator("#detector-summary").inner_text()
    assert any(word in summary for word in ("正常", "ok"))
    page.screenshot(path=str(artifacts / "dashboard_cameras.png"))
