"""The browser surface in a real browser: Debian's chromium driven by Playwright, against the real engine.

The engine runs headless (its own real-time clock, no sound card) with the
tiny test model; the page talks to it over the OSCQuery WebSocket only; the
checks read back over real UDP OSC and a real WebSocket LISTEN client. Any
JavaScript error or console error on the page fails the test that caused it.
"""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import sync_playwright
from pythonosc.osc_message import OscMessage
from websockets.sync.client import connect

from sonolatent.params.namespace import build_namespace
from sonolatent.control.surface import ControlSurface
from sonolatent.control.target import RecordingTarget

from .conftest import Client, wait_until, write_sounds

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def daemon(tiny_bundle_dir, tmp_path_factory):
    """The real engine (headless clock) with the control surface, and two real sounds to load."""
    import torch

    from sonolatent.engine.runtime import Engine
    from sonolatent.models import load_bundle
    from sonolatent.models.synth import StreamingSynth

    torch.set_num_threads(1)
    samples = write_sounds(tmp_path_factory.mktemp("samples"))
    engine = Engine(StreamingSynth(load_bundle(tiny_bundle_dir)), samples_dir=samples, mode="headless", block_size=256)
    surface = ControlSurface(engine, "127.0.0.1", 0).start()
    engine.start()
    yield engine, surface
    surface.stop()
    engine.request_quit()
    engine.wait(10)
    engine.close()


class Page:
    """One page of the surface with its JavaScript errors collected."""

    def __init__(self, browser, url, viewport=(1200, 900), touch=False):
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, has_touch=touch,
                                     is_mobile=touch)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.goto(url)
        self.page.wait_for_selector("#conn[data-state=open]", timeout=20000)

    def close(self):
        self.page.close()
        assert self.errors == []


@pytest.fixture
def page(browser, daemon):
    p = Page(browser, daemon[1].http.url)     # the root URL: a browser is sent on to /ui/
    yield p
    p.close()


def test_root_url_opens_the_surface(page, daemon):
    engine, surface = daemon
    assert page.page.url.endswith("/ui/")
    assert page.page.locator("#latent-sliders input[type=range]").count() == min(8, engine.core.D)
    assert page.page.locator("#slots .slot").count() == 8


def test_dragging_the_xy_pad_sets_xy_read_back_over_udp(page, daemon):
    engine, surface = daemon
    pad = page.page.locator("#xy").bounding_box()
    m = page.page.mouse
    m.move(pad["x"] + 0.1 * pad["width"], pad["y"] + 0.9 * pad["height"])
    m.down()
    m.move(pad["x"] + 0.8 * pad["width"], pad["y"] + 0.3 * pad["height"], steps=8)
    m.up()
    udp = Client(surface.osc.address)
    try:
        assert wait_until(lambda: abs(udp.ask("/sono/xy")[1][0] - 0.8) < 0.02, timeout=5)
        address, (x, y) = udp.ask("/sono/xy")
        assert address == "/sono/xy" and abs(x - 0.8) < 0.02 and abs(y - 0.7) < 0.02
    finally:
        udp.close()


WATCH = """([lat, morph]) => {
  window.__seen = {};
  const start = document.getElementById('map').dataset.current;
  const watch = (id, key, done, opts) => new MutationObserver(() => {
    if (!window.__seen[key] && done()) window.__seen[key] = Date.now();
  }).observe(document.getElementById(id), opts);
  const text = {childList: true, characterData: true, subtree: true};
  watch('latent-0-out', 'slider', () => document.getElementById('latent-0-out').textContent === lat, text);
  watch('morph-out', 'morph', () => document.getElementById('morph-out').textContent === morph, text);
  const x = () => parseFloat(document.getElementById('map').dataset.current);
  watch('map', 'map', () => Math.abs(x() - parseFloat(start)) > 0.01, {attributes: true});
  return start;
}"""


def test_osc_from_outside_moves_slider_and_map_point_within_200ms(page, daemon):
    """Wall-clock delay from a UDP send to the page's DOM (both stamped on this machine's clock).

    The best of three tries must be under 200 ms: one try can lose its time slice on a loaded
    machine; a pipeline slower than that (a long push interval, polling) fails every try.
    """
    engine, surface = daemon
    udp = Client(surface.osc.address)
    tries = []
    try:
        for k, (lat, morph) in enumerate(((2.5, 0.6), (-1.5, 0.2), (3.0, 0.9))):
            udp.send("/sono/latent", *([0.0] * engine.core.D))
            assert udp.ask("/sono/ping")[0] == "/sono/pong"
            page.page.wait_for_function("() => document.getElementById('latent-0-out').textContent === '0.00'")
            time.sleep(0.6)                                # the map point settles where the offsets put it
            start = page.page.evaluate(WATCH, [f"{lat:.2f}", f"{morph:.2f}"])
            sent = time.time() * 1000
            udp.send("/sono/latent/0", lat)
            udp.send("/sono/morph", morph)
            page.page.wait_for_function("() => window.__seen.slider && window.__seen.morph && window.__seen.map",
                                        timeout=5000)
            seen = page.page.evaluate("() => window.__seen")
            tries.append({key: v - sent for key, v in seen.items()})
            x0 = float(start.split(",")[0])                # and the map point goes where the offset says
            assert wait_until(lambda: abs(float(page.page.evaluate(
                "() => document.getElementById('map').dataset.current").split(",")[0]) - x0 - lat) < 0.2, timeout=5)
        print("delays ms", tries)
        assert min(max(t.values()) for t in tries) < 200, tries
    finally:
        udp.close()


def test_loading_a_slot_from_the_page_shows_its_name(page, daemon):
    engine, surface = daemon
    options = page.page.locator("#slot-1-select option").all_text_contents()
    assert "saw" in options and "sine" in options
    page.page.select_option("#slot-1-select", "saw")
    page.page.wait_for_function("() => document.getElementById('slot-1-name').textContent === 'saw'", timeout=30000)
    assert page.page.locator("#corner-1").text_content() == "1 saw"
    assert engine.value("/sono/slot/1/name") == ("saw",)
    page.page.click("#slot-1-clear")
    page.page.wait_for_function("() => document.getElementById('slot-1-name').textContent === '(empty)'", timeout=10000)


def test_a_listen_client_receives_streamed_changes_from_the_engine(daemon):
    engine, surface = daemon
    udp = Client(surface.osc.address)
    got: dict = {}
    with connect(f"ws://127.0.0.1:{surface.http.port}/", open_timeout=5) as ws:
        for a in ("/sono/playing", "/sono/meter/level", "/sono/gain"):
            ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": a}))
        udp.send("/sono/free", 1)
        udp.send("/sono/gain", 1.5)
        udp.send("/sono/play", 1.0)
        end = time.monotonic() + 10
        while time.monotonic() < end and not (got.get("/sono/playing") == [1] and got.get("/sono/gain") == [1.5]
                                              and got.get("/sono/meter/level", [0])[0] > 0):
            m = OscMessage(ws.recv(timeout=5))
            got[m.address] = m.params
        udp.send("/sono/stop")
    udp.close()
    assert got["/sono/playing"] == [1] and got["/sono/gain"] == [1.5] and got["/sono/meter/level"][0] > 0


def test_every_latent_coordinate_is_reachable_and_the_layout_fits_a_phone(browser):
    """48 coordinates (the shipped model's count) in pages of 8, on a phone-sized touch screen."""
    target = RecordingTarget(build_namespace(latent_dim=48))
    surface = ControlSurface(target, "127.0.0.1", 0).start()
    p = Page(browser, surface.http.url + "ui/", viewport=(390, 844), touch=True)
    try:
        assert p.page.locator("#latent-pages button").count() == 6
        p.page.click("#latent-page-5")
        slider = p.page.locator("#latent-45")
        slider.fill("-1.5")                                # an input event, as a finger would make
        assert target.wait_for(lambda t: t.value("/sono/latent/45") == (-1.5,), timeout=5)
        width = p.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390                                # no sideways scrolling on a phone
        p.page.locator("#xy").scroll_into_view_if_needed()
        pad = p.page.locator("#xy").bounding_box()
        assert pad["width"] > 300                          # the XY pad takes the screen's width
        p.page.touchscreen.tap(pad["x"] + 0.25 * pad["width"], pad["y"] + 0.25 * pad["height"])
        assert target.wait_for(lambda t: t.value("/sono/xy") is not None
                               and abs(t.value("/sono/xy")[0] - 0.25) < 0.02
                               and abs(t.value("/sono/xy")[1] - 0.75) < 0.02, timeout=5)
        p.page.focus("#xy")                                # and from a keyboard
        p.page.keyboard.press("ArrowRight")
        p.page.keyboard.press("ArrowDown")
        assert target.wait_for(lambda t: abs(t.value("/sono/xy")[0] - 0.30) < 0.02
                               and abs(t.value("/sono/xy")[1] - 0.70) < 0.02, timeout=5)
    finally:
        p.close()
        surface.stop()


def test_a_stale_echo_does_not_pull_the_pad_back_between_two_key_presses(browser):
    """Keys move the XY pad from where the page put it, even when an older value of /sono/xy
    reaches the page in between (an echo still on its way on a slow network or a busy machine)."""
    target = RecordingTarget(build_namespace(latent_dim=8))
    surface = ControlSurface(target, "127.0.0.1", 0).start()
    p = Page(browser, surface.http.url + "ui/?grace=20000")   # however slow this machine is today
    udp = Client(surface.osc.address)
    try:
        udp.send("/sono/xy", 0.25, 0.75)
        p.page.wait_for_function("() => document.getElementById('xy').dataset.value === '0.2500,0.7500'")
        p.page.focus("#xy")
        p.page.keyboard.press("ArrowRight")
        assert target.wait_for(lambda t: abs(t.value("/sono/xy")[0] - 0.30) < 0.002, timeout=5)
        udp.send("/sono/xy", 0.2, 0.8)                     # a value from before the key press, arriving late
        assert target.wait_for(lambda t: abs(t.value("/sono/xy")[0] - 0.2) < 0.002, timeout=5)
        p.page.evaluate("() => new Promise(r => setTimeout(r, 150))")   # time for it to reach the page
        p.page.keyboard.press("ArrowDown")
        assert target.wait_for(lambda t: abs(t.value("/sono/xy")[0] - 0.30) < 0.002
                               and abs(t.value("/sono/xy")[1] - 0.70) < 0.002, timeout=5)
    finally:
        udp.close()
        p.close()
        surface.stop()
