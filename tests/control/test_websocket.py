"""The OSCQuery server as real clients meet it: WebSocket LISTEN/IGNORE, OSC over WebSocket, limits, slowloris.

Real sockets throughout: the ``websockets`` sync client, raw TCP sockets for
hostile clients (from 127.0.0.2 where a test needs a second address), and the
UDP client of conftest.
"""

import http.client
import json
import socket
import time
import urllib.request

import pytest
from pythonosc.osc_message import OscMessage
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from sonolatent.params.namespace import build_namespace
from sonolatent.control.guard import AllowList
from sonolatent.control.oscquery import OscQueryServer
from sonolatent.control.server import encode
from sonolatent.control.surface import ControlSurface
from sonolatent.control.target import RecordingTarget

from .conftest import Client, wait_until


def osc(frame):
    m = OscMessage(frame)
    return m.address, m.params


@pytest.fixture
def surface():
    s = ControlSurface(RecordingTarget(build_namespace(latent_dim=8, n_slots=4)), "127.0.0.1", 0).start()
    yield s
    s.stop()


def ws_url(s):
    return f"ws://127.0.0.1:{s.http.port}/"


def test_listen_streams_changes_and_ignore_stops_them(surface):
    udp = Client(surface.osc.address)
    with connect(ws_url(surface), open_timeout=5) as ws:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/sono/morph"}))
        assert osc(ws.recv(timeout=2)) == ("/sono/morph", [0.0])       # the current value at once
        udp.send("/sono/morph", 0.25)
        assert osc(ws.recv(timeout=2)) == ("/sono/morph", [0.25])      # a change made over UDP, streamed
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/sono/slot/1/name"}))
        assert osc(ws.recv(timeout=2)) == ("/sono/slot/1/name", [""])
        udp.send("/sono/slot/1/load", "cello")
        assert osc(ws.recv(timeout=2)) == ("/sono/slot/1/name", ["cello"])
        ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": "/sono/morph"}))
        assert udp.ask("/sono/ping")[0] == "/sono/pong"                  # the IGNORE has been read
        time.sleep(0.1)
        udp.send("/sono/morph", 0.75)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        ws.send("not json")                                              # counted, the connection stays
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/sono/nothing"}))
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/sono/morph"}))
        assert osc(ws.recv(timeout=2)) == ("/sono/morph", [0.75])
    assert surface.http.counters["ws_bad"] == 2
    udp.close()


def test_osc_over_websocket_is_handled_like_udp(surface):
    target = surface.osc.target
    with connect(ws_url(surface), open_timeout=5) as ws:
        ws.send(encode("/sono/gain", (1.25,)))
        assert wait_until(lambda: target.value("/sono/gain") == (1.25,))
        ws.send(encode("/sono/gain"))                                    # a query: answered on the WebSocket
        assert osc(ws.recv(timeout=2)) == ("/sono/gain", [1.25])
        ws.send(encode("/sono/nothing", (1.0,)))
        addr, (where, reason) = osc(ws.recv(timeout=2))
        assert addr == "/sono/error" and where == "/sono/nothing" and "no such address" in reason
        ws.send(encode("/sono/latent/3", ("a string",)))
        assert osc(ws.recv(timeout=2))[0] == "/sono/error"
        ws.send(b"\x00garbage\xff")                                       # malformed: counted, no answer
        ws.send(encode("/sono/ping", (7,)))
        assert osc(ws.recv(timeout=2)) == ("/sono/pong", [7])
    assert surface.osc.counters["dropped_malformed"] == 1
    assert surface.http.counters["ws_osc"] == 6


def test_host_info_lists_listen(surface):
    with urllib.request.urlopen(surface.http.url + "?HOST_INFO", timeout=5) as r:
        ext = json.loads(r.read())["EXTENSIONS"]
    assert ext["LISTEN"] is True and ext["VALUE"] is True and ext["RANGE"] is True
    assert ext["PATH_ADDED"] is False and ext["PATH_REMOVED"] is False   # the namespace is fixed


def test_web_pages_of_other_origins_and_rebound_names_are_refused(surface):
    with pytest.raises(InvalidStatus) as e:
        connect(ws_url(surface), origin="http://evil.example", open_timeout=5)
    assert e.value.response.status_code == 403
    same = f"http://127.0.0.1:{surface.http.port}"
    with connect(ws_url(surface), origin=same, open_timeout=5) as ws:   # the surface's own page
        ws.send(encode("/sono/ping"))
        assert osc(ws.recv(timeout=2))[0] == "/sono/pong"
    conn = http.client.HTTPConnection("127.0.0.1", surface.http.port, timeout=5)
    conn.request("GET", "/sono/gain?VALUE", headers={"Host": f"evil.example:{surface.http.port}"})
    assert conn.getresponse().status == 403                              # DNS rebinding
    conn.close()
    assert surface.http.counters["refused_origin"] == 2


def test_static_surface_files_only():
    s = OscQueryServer(RecordingTarget(), "127.0.0.1", 0, osc_port=9).start()
    try:
        base = f"127.0.0.1:{s.port}"
        for path, status in (("/ui/", 200), ("/ui/surface.js", 200), ("/ui/../control/oscquery.py", 404),
                             ("/ui/%2e%2e/server.py", 404), ("/ui/nothing.js", 404)):
            conn = http.client.HTTPConnection(base, timeout=5)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            assert r.status == status, path
            conn.close()
            if path == "/ui/":
                assert b"surface.js" in body and "script-src 'self'" in r.getheader("Content-Security-Policy")
        conn = http.client.HTTPConnection(base, timeout=5)
        conn.request("GET", "/", headers={"Accept": "text/html,application/xhtml+xml"})
        r = conn.getresponse()
        assert r.status == 302 and r.getheader("Location") == "/ui/"     # a browser lands on the surface
        conn.close()
    finally:
        s.stop()


def test_allowlist_refuses_websockets():
    s = OscQueryServer(RecordingTarget(), "127.0.0.1", 0, osc_port=9,
                       allow=AllowList(["10.0.0.0/8"], loopback=False)).start()
    try:
        with pytest.raises(Exception):
            connect(f"ws://127.0.0.1:{s.port}/", open_timeout=3)
        assert s.refused == 1
    finally:
        s.stop()


def test_connection_caps_per_address_and_in_all():
    s = OscQueryServer(RecordingTarget(), "127.0.0.1", 0, osc_port=9, max_per_host=3, max_connections=5).start()
    held = []
    try:
        for _ in range(4):                           # 3 admitted from 127.0.0.2, the 4th closed at once
            held.append(socket.create_connection(("127.0.0.1", s.port), source_address=("127.0.0.2", 0)))
        assert wait_until(lambda: s.counters["refused_full"] == 1)
        assert held[3].recv(1) == b""
        with urllib.request.urlopen(s.url + "sono/gain?VALUE", timeout=5) as r:   # 127.0.0.1 is still served
            assert r.status == 200
        for src in ("127.0.0.3", "127.0.0.3", "127.0.0.4"):   # 3 + 2 = 5 in all; the next is refused
            held.append(socket.create_connection(("127.0.0.1", s.port), source_address=(src, 0)))
        assert wait_until(lambda: s.counters["refused_full"] == 2)
        assert s.connections == 5
    finally:
        for c in held:
            c.close()
        s.stop()


def test_header_timeout_closes_silent_connections():
    s = OscQueryServer(RecordingTarget(), "127.0.0.1", 0, osc_port=9, header_timeout=0.5).start()
    try:
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")   # never finishes its headers
        c.settimeout(5)
        t0 = time.monotonic()
        assert c.recv(100) == b""                               # closed by the server
        assert 0.3 < time.monotonic() - t0 < 3
        assert wait_until(lambda: s.connections == 0)
        c.close()
    finally:
        s.stop()


def test_websocket_message_rate_is_limited_per_connection():
    target = RecordingTarget()
    s = ControlSurface(target, "127.0.0.1", 0).start()
    s.http.ws_rate = 100.0        # for connections opened from now on
    try:
        with connect(ws_url(s), open_timeout=5) as ws:
            for k in range(1000):
                ws.send(encode("/sono/gain", (k / 1000,)))
            ws.send(encode("/sono/ping", ("done",)))
            assert wait_until(lambda: s.http.counters["ws_messages"] == 1001, timeout=10)
        assert s.http.counters["ws_rate"] >= 800
        assert s.http.counters["ws_osc"] + s.http.counters["ws_rate"] == 1001
    finally:
        s.stop()


def test_slowloris_then_osc_and_http_still_answer_promptly():
    """Hundreds of connections trickling headers from 127.0.0.2; 127.0.0.1 is served meanwhile and after."""
    s = ControlSurface(RecordingTarget(), "127.0.0.1", 0).start()
    udp = Client(s.osc.address)
    slow = []
    try:
        for _ in range(1000):
            try:
                c = socket.create_connection(("127.0.0.1", s.http.port), source_address=("127.0.0.2", 0), timeout=5)
            except OSError:
                continue
            c.setblocking(False)
            slow.append(c)
        for rnd in range(3):                      # trickle: one header byte each, again and again
            for c in slow:
                try:
                    c.send(b"GET / HTTP/1.1\r\nX-a: "[rnd:rnd + 1])
                except OSError:
                    pass
            t0 = time.monotonic()
            with urllib.request.urlopen(s.http.url + "sono/gain?VALUE", timeout=5) as r:
                assert r.status == 200
            assert udp.ask("/sono/ping", rnd, timeout=3.0) == ("/sono/pong", [rnd])
            assert time.monotonic() - t0 < 3.0        # well inside the header timeout the slow ones hold
        assert s.http.connections <= s.http.max_per_host + 1
        assert s.http.counters["refused_full"] >= len(slow) - s.http.max_per_host
    finally:
        for c in slow:
            c.close()
    try:
        t0 = time.monotonic()
        with urllib.request.urlopen(s.http.url + "sono/gain?VALUE", timeout=3) as r:
            assert json.loads(r.read()) == {"VALUE": [0.8]}
        assert udp.ask("/sono/ping", timeout=3.0)[0] == "/sono/pong"
        with connect(ws_url(s), open_timeout=3) as ws:
            ws.send(encode("/sono/ping"))
            assert osc(ws.recv(timeout=3))[0] == "/sono/pong"
        assert time.monotonic() - t0 < 3.0
        assert wait_until(lambda: s.http.connections == 0)
    finally:
        udp.close()
        s.stop()


def test_http_requests_are_rate_limited_per_address():
    s = OscQueryServer(RecordingTarget(), "127.0.0.1", 0, osc_port=9, http_rate=5).start()
    try:
        codes = []
        t0 = time.monotonic()
        for _ in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            codes.append(r.status)
            conn.close()
        allowed = 5 + 5 * (time.monotonic() - t0)           # the burst, then 5 per second
        assert codes[:5] == [200] * 5 and codes.count(200) <= allowed + 1 and set(codes) == {200, 429}
        assert s.counters["http_rate"] == codes.count(429)
    finally:
        s.stop()
