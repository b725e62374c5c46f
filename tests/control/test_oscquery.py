"""OSCQuery over real HTTP (urllib), fed by a RecordingTarget and changed over real OSC."""

import http.client
import json
import socket
import urllib.error
import urllib.request

import pytest

from sonolatent.control.guard import AllowList
from sonolatent.params.namespace import build_namespace
from sonolatent.control.oscquery import OscQueryServer
from sonolatent.control.surface import ControlSurface
from sonolatent.control.target import RecordingTarget
from sonolatent.errors import ConfigError

from .conftest import Client


def get(url):
    """(status, parsed JSON or None)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
            return r.status, (json.loads(body) if body else None)
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, (json.loads(body) if body else None)


@pytest.fixture
def surface():
    s = ControlSurface(RecordingTarget(build_namespace(latent_dim=8, n_slots=4)), "127.0.0.1", 0, oscquery_port=0).start()
    yield s
    s.stop()


def test_tree(surface):
    status, root = get(surface.http.url)
    assert status == 200 and root["FULL_PATH"] == "/" and root["ACCESS"] == 0
    sono = root["CONTENTS"]["sono"]
    assert sono["FULL_PATH"] == "/sono" and "gain" in sono["CONTENTS"]
    gain = sono["CONTENTS"]["gain"]
    assert gain == {"FULL_PATH": "/sono/gain", "DESCRIPTION": "Output gain, linear amplitude", "TYPE": "f", "ACCESS": 3,
                    "VALUE": [0.8], "RANGE": [{"MIN": 0.0, "MAX": 2.0}], "CLIPMODE": ["both"]}
    latent = sono["CONTENTS"]["latent"]          # a method that is also a container
    assert latent["TYPE"] == "f" * 8 and len(latent["VALUE"]) == 8 and len(latent["RANGE"]) == 8
    assert latent["UNIT"] == ["sd"] * 8 and set(latent["CONTENTS"]) == {str(k) for k in range(8)}
    assert latent["CONTENTS"]["3"]["CONTENTS"]["scale"]["FULL_PATH"] == "/sono/latent/3/scale"
    slots = sono["CONTENTS"]["slot"]["CONTENTS"]
    assert set(slots) == {"0", "1", "2", "3"}
    load = slots["2"]["CONTENTS"]["load"]
    assert load["TYPE"] == "s" and load["ACCESS"] == 2 and "VALUE" not in load and "CLIPMODE" not in load
    assert sono["CONTENTS"]["stop"]["TYPE"] == "N"
    assert sono["CONTENTS"]["loop"]["CONTENTS"]["mode"]["RANGE"] == [{"MIN": 0, "MAX": 2, "VALS": [0, 1, 2]}]
    assert sono["CONTENTS"]["slot"]["CONTENTS"]["0"]["CONTENTS"]["name"]["VALUE"] == [""]


def test_single_node_attributes_and_errors(surface):
    base = surface.http.url.rstrip("/")
    status, node = get(base + "/sono/xy")
    assert status == 200 and node["TYPE"] == "ff" and set(node["CONTENTS"]) == {"x", "y"}
    assert get(base + "/sono/xy/")[1]["FULL_PATH"] == "/sono/xy"
    assert get(base + "/sono/gain?TYPE") == (200, {"TYPE": "f"})
    assert get(base + "/sono/gain?RANGE") == (200, {"RANGE": [{"MIN": 0.0, "MAX": 2.0}]})
    assert get(base + "/sono/stop?VALUE") == (204, None)          # write-only action: no value
    status, body = get(base + "/sono/gain?BOGUS")
    assert status == 400 and "BOGUS" in body["error"]
    status, body = get(base + "/sono/nothing/here")
    assert status == 404 and body["path"] == "/sono/nothing/here"
    req = urllib.request.Request(base + "/sono/gain", data=b"{}", method="POST")   # GET only: closed unanswered
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, urllib.error.URLError)):
        urllib.request.urlopen(req, timeout=5)
    assert get(base + "/sono/gain?VALUE") == (200, {"VALUE": [0.8]})


def test_host_info(surface):
    status, info = get(surface.http.url + "?HOST_INFO")
    assert status == 200
    assert info["NAME"] == "sonolatent" and info["OSC_PORT"] == surface.osc.port and info["OSC_TRANSPORT"] == "UDP"
    assert info["OSC_IP"] == "127.0.0.1"
    ext = info["EXTENSIONS"]
    assert ext["VALUE"] and ext["RANGE"] and ext["ACCESS"] and ext["CLIPMODE"] and ext["UNIT"] and ext["DESCRIPTION"]
    assert ext["TAGS"] is False and ext["CRITICAL"] is False and ext["LISTEN"] is True


def test_value_reflects_an_osc_change(surface):
    base = surface.http.url.rstrip("/")
    c = Client(surface.osc.address)
    c.send("/sono/latent/2", 1.5)
    c.send("/sono/morph/norm", 0.75)
    assert c.ask("/sono/ping")[0] == "/sono/pong"   # the changes before it are applied
    assert get(base + "/sono/latent/2?VALUE") == (200, {"VALUE": [1.5]})
    assert get(base + "/sono/latent?VALUE")[1]["VALUE"][2] == 1.5
    assert get(base + "/sono/morph?VALUE") == (200, {"VALUE": [0.75]})
    c.close()


def test_default_http_port_is_the_osc_port_number():
    s = ControlSurface(RecordingTarget(), "127.0.0.1", 0).start()
    try:
        assert s.http.port == s.osc.port
        assert get(f"http://127.0.0.1:{s.osc.port}/sono/ping")[1]["TYPE"] == "N"
    finally:
        s.stop()


def test_allowlist_refuses_http_clients():
    s = OscQueryServer(RecordingTarget(), "127.0.0.1", 0, osc_port=9, allow=AllowList(["10.0.0.0/8"], loopback=False)).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            conn.request("GET", "/")
            conn.getresponse()
        assert s.refused == 1
    finally:
        s.stop()


def test_port_in_use_is_a_config_error():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        with pytest.raises(ConfigError, match="cannot serve OSCQuery"):
            OscQueryServer(RecordingTarget(), "127.0.0.1", blocker.getsockname()[1], osc_port=9).start()
    finally:
        blocker.close()


def test_engine_values_of_other_numeric_types_serialise():
    """An engine may store numpy-like scalars; VALUE and /sono/info still come out as JSON/OSC numbers."""
    from fractions import Fraction

    class Odd(RecordingTarget):
        def value(self, address):
            v = super().value(address)
            return None if v is None else tuple(Fraction(x).limit_denominator() if isinstance(x, float) else x for x in v)

        def info(self):
            return {**super().info(), "ratio": Fraction(1, 4), "missing": None}

    s = ControlSurface(Odd(), "127.0.0.1", 0, oscquery_port=0).start()
    try:
        assert get(s.http.url + "sono/gain?VALUE") == (200, {"VALUE": [0.8]})
        c = Client(s.osc.address)
        addr, vals = c.ask("/sono/info")
        info = dict(zip(vals[::2], vals[1::2]))
        assert info["ratio"] == 0.25 and "missing" not in info
        c.close()
    finally:
        s.stop()
