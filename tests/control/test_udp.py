"""The shared UDP port: a served sender gets a lane of its own, so a flood can't crowd it out (real UDP)."""

import socket
import subprocess
import sys
import threading
import time

import pytest

from sonolatent.control import udp
from sonolatent.control.udp import OVER_BUDGET, SERVED, UdpPort

from .conftest import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="lanes are Linux's SO_REUSEPORT")


def wait_for(pred, timeout=20.0):
    return wait_until(pred, timeout)


class Recorder:
    """A handler: datagrams starting with b'ok' are served (slowly: ``cost`` seconds each), others dropped."""

    def __init__(self, cost=0.0, over=()):
        self.got: dict = {}
        self.cost = cost
        self.over = set(over)
        self.lock = threading.Lock()

    def __call__(self, data, sender):
        if self.cost:
            time.sleep(self.cost)
        with self.lock:
            self.got.setdefault(sender, []).append(data)
        if sender in self.over:
            return OVER_BUDGET
        return SERVED if data and data.startswith(b"ok") else None

    def of(self, sender):
        with self.lock:
            return list(self.got.get(sender, ()))

    def others(self, sender):
        with self.lock:
            return sum(len(v) for k, v in self.got.items() if k != sender)


def serving(port, handler):
    stop = threading.Event()
    t = threading.Thread(target=port.serve, args=(handler, stop), daemon=True)
    t.start()
    return stop, t


def client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
to = ("127.0.0.1", int(sys.argv[1]))
junk = b"garbage!" * 8
print("go", flush=True)
while True:
    try:
        s.sendto(junk, to)
    except OSError:
        pass
"""


def test_a_served_client_gets_all_its_packets_through_a_flood():
    """The shared queue is tiny and the handler slow, so a flood overflows it all the time: the kernel drops
    most of what lands there. The client that was served before the flood has its own lane: every one of its
    200 datagrams arrives, in order. (Without lanes most of them are lost: seen.)"""
    port = UdpPort("127.0.0.1", 0, rcvbuf=4096)
    rec = Recorder(cost=0.0002)
    stop, t = serving(port, rec)
    a = client()
    me = a.getsockname()
    flood = None
    try:
        a.sendto(b"ok hello", port.address)
        assert wait_for(lambda: port.lanes == 1)
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(port.address[1])], stdout=subprocess.PIPE)
        assert flood.stdout.readline().strip() == b"go"
        assert wait_for(lambda: rec.others(me) > 2000)
        for i in range(200):
            a.sendto(b"ok %d" % i, port.address)
            time.sleep(0.001)
        assert wait_for(lambda: len(rec.of(me)) >= 201, timeout=60)
        assert rec.of(me) == [b"ok hello"] + [b"ok %d" % i for i in range(200)]
    finally:
        if flood is not None:
            flood.kill()
            flood.wait()
        stop.set()
        t.join(5)
        port.close()
        a.close()


def test_a_new_lane_keeps_the_senders_order():
    """What the sender sent before its lane opened (still in the shared queue behind a slow handler, more than
    one round's batch of it) is handled before what arrives on the lane. (The clock stands still: the lane's
    LANE_READY_S, the way out under a lasting flood, never comes.)"""
    port = UdpPort("127.0.0.1", 0, clock=lambda: 1000.0)
    rec = Recorder(cost=0.001)
    stop, t = serving(port, rec)
    a = client()
    n = 3 * udp.BATCH
    try:
        for i in range(n):
            a.sendto(b"ok %d" % i, port.address)
        assert wait_for(lambda: port.lanes == 1)
        for i in range(n, n + 30):     # these land in the lane while the shared queue still holds the others
            a.sendto(b"ok %d" % i, port.address)
        assert wait_for(lambda: len(rec.of(a.getsockname())) == n + 30)
        assert rec.of(a.getsockname()) == [b"ok %d" % i for i in range(n + 30)]
        assert port.lanes == 1 and port.lanes_opened == 1
    finally:
        stop.set()
        t.join(5)
        port.close()
        a.close()


def test_lanes_are_bounded_and_only_an_idle_one_is_replaced():
    now = [1000.0]
    port = UdpPort("127.0.0.1", 0, max_lanes=2, clock=lambda: now[0])
    rec = Recorder()
    stop, t = serving(port, rec)
    cs = [client() for _ in range(3)]
    try:
        for c in cs[:2]:
            c.sendto(b"ok", port.address)
        assert wait_for(lambda: port.lanes == 2)
        now[0] += 0.5                      # both lanes busy half a second ago: no room for a third
        cs[2].sendto(b"ok", port.address)
        assert wait_for(lambda: len(rec.of(cs[2].getsockname())) == 1)
        time.sleep(0.05)
        assert port.lanes == 2 and cs[2].getsockname() not in port._lanes
        now[0] += 2.0                      # the first one idles: it makes way
        cs[0].sendto(b"nope", port.address)   # (not served: it doesn't count as activity)
        cs[1].sendto(b"ok", port.address)
        assert wait_for(lambda: len(rec.of(cs[1].getsockname())) == 2)
        cs[2].sendto(b"ok", port.address)
        assert wait_for(lambda: cs[2].getsockname() in port._lanes)
        assert set(port._lanes) == {cs[1].getsockname(), cs[2].getsockname()}
        now[0] += udp.LANE_IDLE_S + 2      # everyone idle: the sweep closes every lane
        assert wait_for(lambda: port.lanes == 0)
    finally:
        stop.set()
        t.join(5)
        port.close()
        for c in cs:
            c.close()


def test_a_lane_closes_when_its_sender_has_gone():
    port = UdpPort("127.0.0.1", 0)
    rec = Recorder()
    stop, t = serving(port, rec)
    a = client()
    me = a.getsockname()
    try:
        a.sendto(b"ok", port.address)
        assert wait_for(lambda: port.lanes == 1)
        a.close()
        port.sendto(b"answer", me)         # through the lane: the kernel answers 'port unreachable'
        assert wait_for(lambda: port.lanes == 0)
    finally:
        stop.set()
        t.join(5)
        port.close()


def test_over_budget_senders_are_dropped_unread_for_the_penalty():
    port = UdpPort("127.0.0.1", 0)
    a = client()
    rec = Recorder(over={a.getsockname()})
    unread = []
    stop = threading.Event()
    t = threading.Thread(target=port.serve, args=(rec, stop), kwargs={"on_penalty": lambda: unread.append(1)},
                         daemon=True)
    t.start()
    try:
        for _ in range(50):
            a.sendto(b"ok", port.address)
        assert wait_for(lambda: len(rec.of(a.getsockname())) + len(unread) == 50)
        assert unread and port.lanes == 0
    finally:
        stop.set()
        t.join(5)
        port.close()
        a.close()


def test_a_port_in_use_is_refused_to_everyone():
    port = UdpPort("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            UdpPort("127.0.0.1", port.address[1])
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):
            plain.bind(port.address)
        plain.close()
    finally:
        port.close()
