"""The control surface in its own process (control/netproc.py), driving a target in this one.

A :class:`RecordingTarget` stands in for the engine: the point is the process
boundary (only parsed, validated changes cross it; values, status and late
errors come back; the child lives and dies with its parent).
"""

import os
import signal
import socket
import time

import pytest

from sonolatent.control.netproc import NetworkProcess
from sonolatent.control.target import RecordingTarget
from sonolatent.errors import ConfigError

from .conftest import Client, wait_until

CONFIG = dict(host="127.0.0.1", port=0, oscquery_port=-1, allow=[], loopback=True, rate=5000.0,
              max_packet=65536, max_future=4.0)


@pytest.fixture
def net():
    target = RecordingTarget()
    n = NetworkProcess(target, CONFIG).start()
    yield n, target
    n.stop()


def test_changes_cross_values_and_errors_come_back(net):
    n, target = net
    assert n.proc.pid != os.getpid() and n.describe().startswith("OSC on udp 127.0.0.1:")
    c = Client(n.address)
    assert c.ask("/sono/ping") == ("/sono/pong", [])
    c.send("/sono/gain", 1.25)
    assert target.wait_for(lambda t: t.value("/sono/gain") == (1.25,))
    assert c.ask("/sono/gain") == ("/sono/gain", [1.25])
    target.submit([("/sono/morph", (0.5,))], None, None)          # the engine changes a value itself
    assert wait_until(lambda: c.ask("/sono/morph") == ("/sono/morph", [0.5]))
    _, _, sender, _ = target.history[0]
    assert tuple(sender) == c.address
    target.replier.reply_error(sender, "/sono/slot/0/load", "no sample named x")   # a late error
    assert c.recv() == ("/sono/error", ["/sono/slot/0/load", "no sample named x"])

    def status():
        return dict(zip(*[iter(c.ask("/sono/status")[1])] * 2))
    # the engine's part of the status crosses every 100 ms: wait for the copy that has seen the submit
    assert wait_until(lambda: status()["submits"] >= 1)
    st = status()
    assert st["osc_applied"] == 1 and st["net_forwarded"] == 1
    c.close()


def test_garbage_never_reaches_the_engine_process(net):
    n, target = net
    c = Client(n.address)
    for k in range(2000):
        c.send(bytes([k % 256]) * (4 + k % 64))
    c.send("/sono/gain", 0.25)
    assert target.wait_for(lambda t: t.n_submits == 1, timeout=10)
    assert n.relayed == 1 and target.history[0][0] == [("/sono/gain", (0.25,))]
    c.close()


def test_the_child_ignores_ctrl_c_and_ends_with_its_parent_side():
    target = RecordingTarget()
    n = NetworkProcess(target, CONFIG).start()
    c = Client(n.address)
    try:
        os.kill(n.proc.pid, signal.SIGINT)                # a terminal's Ctrl-C reaches the whole group
        os.kill(n.proc.pid, signal.SIGTERM)
        assert c.ask("/sono/ping") == ("/sono/pong", [])
        n._stop.set()
        n.sock.shutdown(socket.SHUT_RDWR)                 # the engine process vanishes
        assert n.proc.wait(timeout=5) == 0
    finally:
        c.close()
        n.stop()
    t0 = time.monotonic()
    n2 = NetworkProcess(target, CONFIG).start()
    n2.stop()
    assert n2.proc is None and time.monotonic() - t0 < 10


def test_a_port_in_use_is_a_one_line_config_error(net):
    n, _ = net
    busy = dict(CONFIG, port=n.address[1])
    with pytest.raises(ConfigError, match=f"cannot listen for OSC on 127.0.0.1:{n.address[1]}"):
        NetworkProcess(RecordingTarget(), busy).start()
