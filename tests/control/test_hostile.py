"""Issue 16's reproducers (hex payloads over real UDP), the work budgets, and the shared fuzz corpus.

Each reproducer is sent to a real :class:`OscServer` socket and, where it
concerns the bridge too, to the bridge's real control port; afterwards both
must answer a ping at once. Budgets that depend on time run on an injected
clock, so nothing here depends on an idle machine.
"""

import queue
import socket
import struct

import pytest

from sonolatent.control.fuzz import (NEGATIVE_ELEMENT_BUNDLE, NUL_IN_NAME, QUERY_BOMB, TRUNCATED_FLOAT_GAIN,
                                     hostile_packets, pattern_change_bomb)
from sonolatent.control.convert import PatternIndex
from sonolatent.control.guard import AllowList, Budgets
from sonolatent.control.server import OscServer
from sonolatent.control.target import RecordingTarget
from sonolatent.control.wire import (MAX_BUNDLE_MESSAGES, WireError, WireLimitError, encode, encode_bundle,
                                     parse_packet)
from sonolatent.midi.control import ControlServer

from .conftest import Client, wait_until

N_CORPUS = 100_000


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def bridge_port():
    requests = queue.SimpleQueue()
    cs = ControlServer("127.0.0.1", 0, requests)
    cs.start()
    yield cs, requests
    cs.close()


def _bridge_ping(cs) -> None:
    c = Client((cs.host, cs.port))
    try:
        assert c.ask("/sono/midi/ping", timeout=1.0) == ("/sono/midi/pong", [])
    finally:
        c.close()


# -- the reproducers -----------------------------------------------------------------------------

def test_bundle_with_a_negative_element_size_hangs_nothing(server, client, bridge_port):
    assert NEGATIVE_ELEMENT_BUNDLE.hex() == "2362756e646c65000000000000000001fffffffc"
    with pytest.raises(WireError, match="element size"):
        parse_packet(NEGATIVE_ELEMENT_BUNDLE)
    client.send(NEGATIVE_ELEMENT_BUNDLE)
    assert client.ask("/sono/ping", timeout=1.0) == ("/sono/pong", [])
    assert server.counters["dropped_malformed"] == 1
    cs, _ = bridge_port
    c = Client((cs.host, cs.port))
    for _ in range(100):
        c.send(NEGATIVE_ELEMENT_BUNDLE)
    assert c.ask("/sono/midi/ping", timeout=1.0) == ("/sono/midi/pong", [])
    assert wait_until(lambda: cs.counters["bad_packets"] == 100)
    c.close()


def test_truncated_float_is_refused_not_zero_padded(server, client, target):
    assert TRUNCATED_FLOAT_GAIN.hex() == "2f736f6e6f2f6761696e00002c660000"
    with pytest.raises(WireError, match="truncated 'f'"):
        parse_packet(TRUNCATED_FLOAT_GAIN)
    client.send(TRUNCATED_FLOAT_GAIN)
    assert client.ask("/sono/gain", timeout=1.0) == ("/sono/gain", [pytest.approx(0.8)])
    assert server.counters["dropped_malformed"] == 1 and target.n_submits == 0


def test_a_nul_ends_no_name(server, client, target):
    assert b"piano_c4\0/../.." in NUL_IN_NAME
    with pytest.raises(WireError, match="padding"):
        parse_packet(NUL_IN_NAME)
    client.send(NUL_IN_NAME)
    client.send(b"/sono/slot/1/load\0\0\0,s\0\0piano\x01c4\0\0\0\0")       # a control character in a name
    assert client.ask("/sono/ping", timeout=1.0) == ("/sono/pong", [])
    assert server.counters["dropped_malformed"] == 2 and target.n_submits == 0
    assert target.value("/sono/slot/0/name") == ("",)
    for bad in ("/sono/ga\x01in", "/sono/gain\x7f", "/sono/ gain"):
        with pytest.raises(WireError):
            parse_packet(bad.encode() + b"\0" * (4 - len(bad) % 4) + b",f\0\0" + struct.pack(">f", 1))


def test_query_bomb_bundle_is_refused_whole(server, client, target):
    assert len(QUERY_BOMB) == 16 + 4000 * 16 and QUERY_BOMB[16:32].hex() == "0000000c2f736f6e6f2f2a2f2a000000"
    with pytest.raises(WireLimitError):
        parse_packet(QUERY_BOMB)
    client.send(QUERY_BOMB)
    assert client.ask("/sono/ping", timeout=1.0) == ("/sono/pong", [])
    assert server.counters["dropped_limits"] == 1 and wait_until(lambda: server.counters["replies"] == 1)


def test_query_bomb_under_the_element_cap_is_held_to_the_match_and_reply_budgets(make_server, target):
    clock = FakeClock()
    srv = make_server(budgets=Budgets(5000, 5000, 2000, clock=clock))
    c = Client(srv.address)
    found, cost = PatternIndex(target.namespace).match("/sono/*/*")
    m = len([p for p, _ in found if not p.action])          # addresses one query names
    c.send(encode_bundle([encode("/sono/*/*", ())] * MAX_BUNDLE_MESSAGES))
    assert wait_until(lambda: srv.counters["messages"] == MAX_BUNDLE_MESSAGES)
    answered = -(-5000 // cost)                             # matched while the sender was not in debt
    assert srv.counters["answered"] == answered and srv.counters["limited"] == MAX_BUNDLE_MESSAGES - answered
    assert srv.counters["replies"] == min(2000, answered * m)
    assert srv.counters["dropped_replies"] == max(0, answered * m - 2000)
    c.drain(0.5)      # (the client's own receive buffer holds only a few hundred of them)
    clock.t += 1.0                      # a second later the sender has a budget again
    assert c.ask("/sono/ping", timeout=1.0) == ("/sono/pong", [])
    c.close()


def test_pattern_change_bomb_is_refused_or_held_to_the_match_budget(make_server, target):
    clock = FakeClock()
    srv = make_server(budgets=Budgets(5000, 2000, 2000, clock=clock))
    c = Client(srv.address)
    c.send(pattern_change_bomb(2031))              # the packet: over the element cap
    assert c.ask("/sono/ping", timeout=1.0) == ("/sono/pong", [])
    assert srv.counters["dropped_limits"] == 1 and target.n_changes == 0
    c.send(pattern_change_bomb(500))               # under it: 500 patterns; the budget holds 2000 units of work
    assert wait_until(lambda: srv.counters["submits"] == 1)
    found, cost = PatternIndex(target.namespace).match("/sono/latent/[0-9]*")
    applied = -(-2000 // cost)
    assert len(found) == 16 and target.n_changes == 16 * applied and srv.counters["limited"] == 500 - applied
    c.close()


def test_subscriptions_expire_and_are_bounded_per_host(make_server, target):
    srv = make_server(max_subscribers=8, max_lease=0.5)
    cs = [Client(srv.address) for _ in range(8)]
    answers = [c.ask("/sono/subscribe", 3600.0)[0:2] for c in cs]
    ok = [a for a in answers if a[0] == "/sono/subscribe"]
    assert len(ok) == 4 and all(v == [0.5] for _, v in ok)           # the lease is capped
    assert sum(1 for a in answers if a[0] == "/sono/error" and "per host" in a[1][1]) == 4
    assert wait_until(lambda: srv.subscribers() == [], timeout=2.0)  # not renewed: gone
    assert cs[7].ask("/sono/subscribe", 1.0)[0] == "/sono/subscribe"
    for c in cs:
        c.close()


def test_allow_adds_to_loopback_unless_no_loopback(make_server, target):
    srv = make_server(allow=["10.0.0.0/8"])
    c = Client(srv.address)
    assert c.ask("/sono/ping", timeout=1.0) == ("/sono/pong", [])
    c.close()
    assert AllowList(["10.0.0.0/8"])("127.0.0.1") and not AllowList(["10.0.0.0/8"], loopback=False)("127.0.0.1")


def test_bridge_control_port_has_the_allow_list(bridge_port):
    cs = ControlServer("127.0.0.1", 0, queue.SimpleQueue(), allow=["10.0.0.0/8"], loopback=False)
    cs.start()
    try:
        c = Client((cs.host, cs.port))
        c.send("/sono/midi/ping")
        c.send("/sono/midi/learn", "/sono/gain")
        assert wait_until(lambda: cs.counters["not_allowed"] == 2)
        assert cs.requests.qsize() == 0 and c.drain(0.2) == []
        c.close()
    finally:
        cs.close()


# -- budgets: a second client is answered during a flood from a first ----------------------------

def test_second_client_is_answered_during_a_flood_from_the_first(make_server, target):
    """A flood of 50,000 pings in one (injected) second from A; B's 100 queries interleaved are all answered."""
    clock = FakeClock()
    srv = make_server(budgets=Budgets(5000, 20000, 2000, clock=clock))
    a_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a_sock.bind(("127.0.0.1", 0))                     # A's replies land here, unread
    a = a_sock.getsockname()
    b = Client(srv.address)
    ping = encode("/sono/ping", ())
    query = encode("/sono/gain", ())
    for k in range(50_000):
        clock.t += 1.0 / 50_000
        srv.handle_datagram(ping, a)
        if k % 500 == 0:
            srv.handle_datagram(query, b.address)
    answers = b.drain(0.5)
    assert len(answers) == 100 and all(x == ("/sono/gain", [pytest.approx(0.8)]) for x in answers)
    # A had its burst and one second's refill: 10,000 messages (4,000 replies); the rest was dropped cheaply
    assert 39_000 <= srv.counters["dropped_rate"] <= 40_100 and srv.counters["replies"] <= 4_000 + 100 + 1
    a_sock.close()
    b.close()


def test_a_served_client_gets_a_lane_and_garbage_none(make_server, target):
    """The OSC port's lanes (control/udp.py): a client answered once has its own kernel queue from then on, so a
    flood elsewhere can't crowd it out; a sender of garbage stays on the shared one."""
    srv = make_server()
    b, c = Client(srv.address), Client(srv.address)
    try:
        c.send(b"\x00garbage")
        assert b.ask("/sono/ping")[0] == "/sono/pong"
        assert wait_until(lambda: srv.stats()["lanes"] == 1)
        assert set(srv._port._lanes) == {b.address}
        for _ in range(20):                   # and it keeps being answered through it
            assert b.ask("/sono/ping")[0] == "/sono/pong"
    finally:
        b.close()
        c.close()


def test_global_budget_caps_everyone_together():
    clock = FakeClock()
    bud = Budgets(10, 10, 10, global_messages=15, clock=clock)
    assert sum(bud.take("messages", ("h", p)) for p in (1, 2, 3) for _ in range(10)) == 15
    clock.t += 1.0
    assert bud.take("messages", ("h", 1))


# -- the shared fuzz corpus against both --------------------------------------------------------

N_UDP = 2000


def _send_paced(client, packets, received, chunk=100):
    """Send over real UDP in chunks, each once the server has taken the previous one (no kernel drops)."""
    for k in range(0, len(packets), chunk):
        for p in packets[k:k + chunk]:
            client.sock.sendto(p, client.server)
        assert wait_until(lambda: received() >= min(k + chunk, len(packets)), timeout=20), (k, received())
    client.drain(0.1)


@pytest.fixture(scope="module")
def corpus():
    return list(hostile_packets(16, N_CORPUS))


def test_fuzz_corpus_against_the_daemon_dispatcher(corpus, make_server):
    target = RecordingTarget(history=1000)
    srv = make_server(target=target, rate=0)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sender = sink.getsockname()
    for p in corpus:
        srv.handle_datagram(p, sender)
    c = srv.counters
    assert c["received"] == N_CORPUS and c["errors"] > 0
    assert c["received"] == c["parsed"] + c["dropped_malformed"] + c["dropped_limits"]
    assert c["messages"] == c["applied"] + c["answered"] + c["errors"] + c["limited"]
    assert c["dropped_malformed"] > N_CORPUS // 3 and c["parsed"] > N_CORPUS // 5 and c["dropped_limits"] > 0
    assert target.n_submits == c["submits"] > 0
    # then a real-UDP portion: the same packets through the socket, the server still answering after
    cl = Client(srv.address)
    _send_paced(cl, corpus[:N_UDP], lambda: c["received"] - N_CORPUS)
    assert cl.ask("/sono/ping", timeout=2.0) == ("/sono/pong", [])
    cl.close()
    sink.close()


def test_fuzz_corpus_against_the_bridge_control_port(corpus, bridge_port):
    cs, requests = bridge_port
    cs.budgets = Budgets(0, 0, 0)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    for p in corpus:
        cs.handle_datagram(p, sink.getsockname())
    c = cs.counters
    assert c["received"] == N_CORPUS and c["bad_packets"] > N_CORPUS // 3
    assert c["requests"] == requests.qsize() > 0 and c["replies"] > 0
    cl = Client((cs.host, cs.port))
    _send_paced(cl, corpus[:N_UDP], lambda: c["received"] - N_CORPUS)
    assert cl.ask("/sono/midi/ping", timeout=2.0) == ("/sono/midi/pong", [])
    cl.close()
    sink.close()
