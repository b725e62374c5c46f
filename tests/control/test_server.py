"""The UDP OSC server against a RecordingTarget, over real sockets on 127.0.0.1."""

import math
import shutil
import socket
import subprocess
import threading
import time

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from sonolatent.control.server import AllowList, OscServer, RateLimiter, encode, parse_packet
from sonolatent.control.target import RecordingTarget
from sonolatent.errors import ConfigError

from .conftest import Client, wait_until


def msg(address, *args):
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build()


def bundle(timetag, *contents):
    b = OscBundleBuilder(timetag)
    for c in contents:
        b.add_content(c)
    return b.build()


def test_simple_udp_client_sets_a_value(server, target):
    SimpleUDPClient("127.0.0.1", server.port).send_message("/sono/morph", 0.25)
    assert target.wait_for(lambda t: t.value("/sono/morph") == (0.25,))
    changes, at, sender, _ = target.history[-1]
    assert changes == [("/sono/morph", (0.25,))] and at is None and sender[0] == "127.0.0.1"


@pytest.mark.parametrize("args, expected", [
    (["f", "0.25"], 0.25), (["i", "1"], 1.0), (["d", "0.125"], 0.125), (["h", "0"], 0.0),
    (["T"], 1.0), (["F"], 0.0),
])
def test_liblo_oscsend_every_numeric_type(server, target, args, expected):
    oscsend = shutil.which("oscsend")
    assert oscsend, "liblo-tools (oscsend) must be installed"
    target.submit([("/sono/morph", (0.5,))], None, None)
    subprocess.run([oscsend, "localhost", str(server.port), "/sono/morph", *args], check=True, timeout=10)
    assert target.wait_for(lambda t: t.value("/sono/morph") == (expected,))


def test_liblo_string_and_unsupported_type(server, target):
    oscsend = shutil.which("oscsend")
    subprocess.run([oscsend, "localhost", str(server.port), "/sono/slot/2/load", "s", "kick_01"], check=True, timeout=10)
    assert target.wait_for(lambda t: t.value("/sono/slot/2/name") == ("kick_01",))
    errors = server.counters["errors"]
    subprocess.run([oscsend, "localhost", str(server.port), "/sono/slot/2/load", "S", "snare"], check=True, timeout=10)
    assert wait_until(lambda: server.counters["errors"] == errors + 1)
    assert target.value("/sono/slot/2/name") == ("kick_01",)


def test_queries_norm_info_status_ping(client, target):
    assert client.ask("/sono/gain") == ("/sono/gain", [pytest.approx(0.8)])
    assert client.ask("/sono/gain/norm") == ("/sono/gain/norm", [pytest.approx(0.4)])
    assert client.ask("/sono/loop/mode") == ("/sono/loop/mode", [1])
    assert client.ask("/sono/slot/0/name") == ("/sono/slot/0/name", [""])
    assert client.ask("/sono/ping") == ("/sono/pong", [])
    assert client.ask("/sono/ping", 7) == ("/sono/pong", [7])
    addr, vals = client.ask("/sono/info")
    info = dict(zip(vals[::2], vals[1::2]))
    assert addr == "/sono/info" and info["latent_dim"] == 16 and info["model_rate"] == 44100 and "delay_samples" in info
    client.send("/sono/gain", 1.5)
    assert target.wait_for(lambda t: t.value("/sono/gain") == (1.5,))
    assert client.ask("/sono/gain") == ("/sono/gain", [1.5])
    addr, vals = client.ask("/sono/status")
    st = dict(zip(vals[::2], vals[1::2]))
    assert addr == "/sono/status" and st["osc_applied"] == 1 and st["submits"] == 1 and st["osc_received"] >= 8


def test_query_of_a_vector_answers_all_values(client, target):
    target.submit([("/sono/latent/3", (1.5,))], None, None)
    addr, vals = client.ask("/sono/latent")
    assert addr == "/sono/latent" and len(vals) == 16 and vals[3] == 1.5


@pytest.mark.parametrize("address, args, reason", [
    ("/sono/nope", [1.0], "no such address"),
    ("/sono/gain", [math.nan], "NaN"),
    ("/sono/gain", [math.inf], "infinite"),
    ("/sono/gain", ["loud"], "number"),
    ("/sono/gain", [1.0, 2.0], "got 2"),
    ("/sono/playing", [1], "read only"),
    ("/sono/stop", [1], "no arguments"),
    ("/sono/slot/0/load", [], "expects a name"),
    ("/sono/slot/0/load", ["../../etc/passwd"], "name"),
    ("/sono/latent/[", [0.0], "pattern"),
])
def test_errors_are_answered_and_counted(client, server, target, address, args, reason):
    addr, vals = client.ask(address, *args)
    assert addr == "/sono/error" and vals[0] == address and reason in vals[1]
    assert server.counters["errors"] == 1 and server.counters["applied"] == 0
    assert target.n_submits == 0


def test_bundle_submitted_together_nested_too(client, target):
    inner = bundle(IMMEDIATELY, msg("/sono/xy", 0.2, 0.7), msg("/sono/latent/0", 2.0))
    client.send(bundle(IMMEDIATELY, msg("/sono/gain", 0.3), msg("/sono/morph", 0.9), inner).dgram)
    assert target.wait_for(lambda t: t.n_submits == 1)
    changes, at, _, _ = target.history[-1]
    assert [a for a, _ in changes] == ["/sono/gain", "/sono/morph", "/sono/xy", "/sono/latent/0"]
    assert at is None
    assert target.value("/sono/xy/y") == (pytest.approx(0.7),)


def test_bad_message_in_a_bundle_is_refused_alone(client, server, target):
    client.send(bundle(IMMEDIATELY, msg("/sono/gain", 0.3), msg("/sono/gain", math.nan), msg("/sono/nope")).dgram)
    errs = [client.recv(), client.recv()]
    assert {e[1][0] for e in errs} == {"/sono/gain", "/sono/nope"}
    assert target.wait_for(lambda t: t.n_submits == 1)       # errors are answered before the submit
    assert wait_until(lambda: server.counters["applied"] == 1) and target.history[-1][0] == [("/sono/gain", (pytest.approx(0.3),))]
    assert server.counters["messages"] == 3 and server.counters["applied"] == 1 and server.counters["errors"] == 2


def test_future_timetag_is_handed_over_without_blocking(client, target):
    when = time.time() + 3.5                    # inside the 4 s the server accepts ahead
    client.send(bundle(when, msg("/sono/morph", 1.0)).dgram)
    client.send("/sono/gain", 0.1)
    assert target.wait_for(lambda t: t.n_submits == 2, timeout=10.0)
    assert time.time() < when                   # the later plain message was not held up until the timetag
    (c1, at1, _, _), (c2, at2, _, _) = list(target.history)
    assert c1 == [("/sono/morph", (1.0,))] and at1 == pytest.approx(when, abs=1e-3)
    assert c2 == [("/sono/gain", (pytest.approx(0.1),))] and at2 is None


def test_past_timetag_means_now_and_far_future_is_refused(client, server, target):
    client.send(bundle(time.time() - 5.0, msg("/sono/morph", 0.5)).dgram)
    assert target.wait_for(lambda t: t.n_submits == 1)
    assert target.history[-1][1] is None
    addr, vals = client.ask(bundle(time.time() + 60.0, msg("/sono/morph", 0.7)).dgram)
    assert addr == "/sono/error" and vals[0] == "#bundle" and "ahead" in vals[1]
    assert target.n_submits == 1 and server.counters["errors"] == 1


def test_oversize_packets_are_dropped_and_counted(make_server, target):
    srv = make_server(max_packet=1024)
    c = Client(srv.address)
    c.send("/sono/latent", *([0.5] * 300))           # ~1.3 kB
    c.send("/sono/gain", 1.0)
    assert target.wait_for(lambda t: t.value("/sono/gain") == (1.0,))
    assert srv.counters["dropped_size"] == 1 and target.value("/sono/latent")[0] == 0.0
    c.close()


def test_not_allowed_dropped_before_parsing(make_server, target):
    srv = make_server(allow=["10.0.0.0/8"], loopback=False)
    c = Client(srv.address)
    c.send("/sono/gain", 1.0)
    c.send(b"\xff" * 40)
    c.send("/sono/ping")
    assert wait_until(lambda: srv.counters["dropped_not_allowed"] == 3)
    assert c.drain(0.2) == [] and target.n_submits == 0
    assert srv.counters["dropped_malformed"] == 0 and srv.counters["parsed"] == 0
    c.close()


def test_allowlist_and_rate_limiter_units():
    a = AllowList(["192.168.1.0/24", "10.1.2.3", "fd00::/8"], loopback=False)
    assert a("192.168.1.77") and a("10.1.2.3") and a("fd12::1")
    assert not a("192.168.2.1") and not a("127.0.0.1") and not a("not-an-ip")
    both = AllowList(["192.168.1.0/24"])                 # --allow adds to loopback
    assert both("127.0.0.1") and both("::1") and both("192.168.1.5") and not both("10.0.0.1")
    with pytest.raises(ConfigError, match="--no-loopback"):
        AllowList(None, loopback=False)
    lo = AllowList(None)
    assert lo("127.0.0.1") and lo("127.9.9.9") and lo("::1") and lo("::ffff:127.0.0.1") and not lo("192.168.1.1")
    with pytest.raises(ConfigError, match="--allow"):
        AllowList(["192.168.1.0/33"])
    r = RateLimiter(rate=10, burst=5)
    assert sum(r.take("h") for _ in range(20)) == 5
    assert RateLimiter(rate=0).take("h")


def test_rate_limit_per_sender(make_server, target):
    srv = make_server(rate=200.0, burst=50)
    c = Client(srv.address)
    for k in range(400):
        c.send("/sono/morph", k / 400)
    assert wait_until(lambda: srv.counters["received"] == 400)
    assert srv.counters["dropped_rate"] > 250
    assert srv.counters["applied"] + srv.counters["dropped_rate"] == 400
    c.close()


def test_patterns_set_many_parameters(client, target):
    client.send("/sono/latent/*/scale", 0.5)
    assert target.wait_for(lambda t: t.n_submits == 1)
    assert len(target.history[-1][0]) == 16
    assert all(target.value(f"/sono/latent/{k}/scale") == (0.5,) for k in range(16))
    addr, vals = client.ask("/sono/xy/{x,nothing}")
    assert addr == "/sono/xy/x"
    answers = dict(client.drain(0.3) + [client.ask("/sono/*")] + client.drain(0.3))
    assert "/sono/gain" in answers and "/sono/playing" in answers     # a pattern query answers every value
    assert client.ask("/sono/qu?t", 1)[0] == "/sono/error"           # wildcards never reach actions
    assert target.n_submits == 1 and not target.quit_event.is_set() and not target.actions


def test_subscribe_pushes_state_then_changes(server, client, target):
    assert client.ask("/sono/subscribe", 5.0) == ("/sono/subscribe", [5.0])
    first = dict(client.drain(0.3))
    assert first["/sono/gain"] == [pytest.approx(0.8)] and "/sono/latent" in first and "/sono/play" not in first
    other = Client(server.address)
    other.send("/sono/gain", 1.25)
    pushed = client.drain(0.3)
    assert ("/sono/gain", [1.25]) in pushed and len(pushed) == 1
    client.send("/sono/unsubscribe")
    assert wait_until(lambda: server.subscribers() == [])
    other.send("/sono/gain", 0.5)
    assert target.wait_for(lambda t: t.value("/sono/gain") == (0.5,))
    assert client.drain(0.3) == []
    other.close()


def test_subscribers_are_capped_and_expire(make_server, target):
    srv = make_server(max_subscribers=2, max_subscribers_per_host=2)
    cs = [Client(srv.address) for _ in range(3)]
    assert cs[0].ask("/sono/subscribe", 1)[0] == "/sono/subscribe"
    assert cs[1].ask("/sono/subscribe")[0] == "/sono/subscribe"   # default 10 s
    addr, vals = cs[2].ask("/sono/subscribe")
    assert addr == "/sono/error" and "too many" in vals[1]
    assert wait_until(lambda: len(srv.subscribers()) == 1, timeout=2.5)   # the 1 s one ran out
    for c in cs:
        c.close()


def test_replier_answers_late_errors_from_another_thread(server, client, target):
    client.send("/sono/slot/1/load", "nosuchsample")
    assert target.wait_for(lambda t: t.n_submits == 1)
    assert target.replier is server
    _, _, sender, _ = target.history[-1]
    th = threading.Thread(target=target.replier.reply_error, args=(sender, "/sono/slot/1/load", "no sample named nosuchsample"))
    th.start()
    th.join()
    assert client.recv() == ("/sono/error", ["/sono/slot/1/load", "no sample named nosuchsample"])
    assert server.counters["late_errors"] == 1
    target.replier.reply_error(None, "/x", "nobody to tell")   # no sender: nothing to do, no exception


def test_engine_exception_in_submit_is_answered_not_fatal(make_server):
    class Broken(RecordingTarget):
        def submit(self, changes, at, sender):
            raise RuntimeError("boom")
    srv = make_server(target=Broken())
    c = Client(srv.address)
    addr, vals = c.ask("/sono/gain", 1.0)
    assert addr == "/sono/error" and "internal error" in vals[1]
    assert c.ask("/sono/ping") == ("/sono/pong", [])
    c.close()


def test_stop_is_prompt_and_port_in_use_is_a_config_error(target):
    srv = OscServer(target, "127.0.0.1", 0).start()
    with pytest.raises(ConfigError, match="cannot listen for OSC on 127.0.0.1"):
        OscServer(RecordingTarget(), "127.0.0.1", srv.port).start()
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 2.0          # the 0.1 s receive timeout, with room for a busy machine
    assert target.replier is None


def test_parse_packet_and_encode_round_trip():
    msgs, tt = parse_packet(encode("/sono/weights", (1.0, 0, "x", True), "fisT"))
    assert tt == 0 and msgs[0].address == "/sono/weights" and msgs[0].params == [1.0, 0, "x", True]
    with pytest.raises(Exception):
        parse_packet(b"nope")
    big = encode("/a", (2**40,))
    assert parse_packet(big)[0][0].params == [2**40]


def test_the_subscribe_answer_comes_before_any_pushed_value(make_server, target):
    """A slow answer (a busy machine: seen as a flake of test_hostile's lease test) must still come before the
    first pushed value: the push thread, every 0.2 ms here, must not see the subscriber before it is answered."""
    import time as _time

    srv = make_server(push_interval=0.0002, max_subscribers=64, max_subscribers_per_host=64, max_lease=0.2)
    send = srv.reply

    def slow_reply(sender, address, values=(), types=None):
        if address == "/sono/subscribe":
            _time.sleep(0.01)          # the answer is late: the push thread runs 50 times meanwhile
        send(sender, address, values, types)

    srv.reply = slow_reply
    for _ in range(5):
        c = Client(srv.address)
        assert c.ask("/sono/subscribe", 0.2)[0] == "/sono/subscribe"
        c.close()
