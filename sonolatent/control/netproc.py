"""The control surface in a process of its own, so network traffic never competes with the sound.

``sonolatent serve`` keeps the engine (producer thread, ring, sound-card
callback, recorder, loader) in its own process and starts this module as a
second Python process (``python -m sonolatent.control.netproc``, torch-free)
that owns the OSC socket, the OSCQuery server, parsing, budgets, answers,
subscriptions and their logging. The two talk over one ``AF_UNIX``
``SOCK_SEQPACKET`` socket pair with JSON messages (no pickle):

network process -> engine process
    ``{"submit": [changes, at, sender]}``: parsed, validated, clamped changes
    of one packet (split into chunks of :data:`CHUNK` changes, in order).
    Sent without blocking: when the engine's side is full the packet is
    refused (``/sono/error ... engine busy``) and counted (``net_engine_busy``).
engine process -> network process
    ``{"values": {...}}``: the engine's values that changed (every
    :data:`SNAPSHOT_S`), ``{"status": {...}}`` its counters,
    ``{"error": [sender, address, reason]}`` late errors (a slot that failed
    to load), ``{"stop": 1}``.

So the engine process only ever sees work that passed the allow-list, the
budgets and the parser; a flood of garbage costs the network process's CPU
and the kernel's drops, never the producer's interpreter lock. When either
process goes away, the other sees the socket close: the network process
exits, the engine keeps playing (and says so once on stderr).

The child ignores SIGINT and SIGTERM: Ctrl-C in a terminal reaches the whole
process group, and shutting down is the engine process's decision.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from ..errors import ConfigError, SonolatentError
from ..params.namespace import Param
from ..params.values import linked_values

CHUNK = 64             # changes per submit message
SNAPSHOT_S = 0.01      # how often the engine process sends changed values and status
STATUS_S = 0.1
START_TIMEOUT = 20.0
_MAX_MSG = 1 << 20


def _param_to_json(p: Param) -> dict:
    return {"address": p.address, "types": p.types, "description": p.description, "min": list(p.min),
            "max": list(p.max), "default": list(p.default), "unit": p.unit, "action": p.action,
            "access": p.access, "values": list(p.values)}


def _param_from_json(d: dict) -> Param:
    return Param(d["address"], d["types"], d["description"], tuple(d["min"]), tuple(d["max"]),
                 tuple(d["default"]), d["unit"], bool(d["action"]), int(d["access"]), tuple(d["values"]))


def _plain(o):
    """numpy scalars (and anything else with ``.item()``) as plain numbers for JSON."""
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON")


def _send(sock: socket.socket, obj, block: bool = False) -> bool:
    data = json.dumps(obj, separators=(",", ":"), default=_plain).encode()
    try:
        sock.send(data) if block else sock.send(data, socket.MSG_DONTWAIT)
        return True
    except (BlockingIOError, InterruptedError):
        return False


def _sender(s):
    return tuple(s) if s is not None else None


# ================================================================================================
# engine process side
# ================================================================================================

class NetworkProcess:
    """Starts the control surface in a child process for ``target`` (the engine) and relays to it.

    Same use as :class:`~sonolatent.control.surface.ControlSurface`: ``start()``,
    ``address``, ``describe()``, ``stop()``.
    """

    def __init__(self, target, config: dict, log=None):
        self.target = target
        self.config = dict(config)
        self.log = log or (lambda text: print(f"sonolatent: {text}", file=sys.stderr, flush=True))
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.address: tuple[str, int] = ("", 0)
        self._describe = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.relayed = 0
        self.net_status: dict = {}

    @classmethod
    def from_args(cls, target, args: argparse.Namespace) -> "NetworkProcess":
        for opt, v in (("--port", args.port), ("--oscquery-port", args.oscquery_port)):
            if v is not None and not -1 <= v <= 65535:
                raise ConfigError(f"{opt}: {v} is not a port number (0-65535)")
        return cls(target, {"host": args.host, "port": args.port, "oscquery_port": args.oscquery_port,
                            "allow": args.allow or [], "loopback": not getattr(args, "no_loopback", False),
                            "rate": args.osc_rate, "max_packet": args.max_packet, "max_future": args.max_future})

    # -- lifecycle
    def start(self) -> "NetworkProcess":
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "sonolatent.control.netproc", str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.sock = ours
        t = self.target
        _send(ours, {"config": self.config, "info": t.info(),
                     "namespace": [_param_to_json(p) for p in t.namespace.values()],
                     "values": self._values(), "status": t.status()}, block=True)
        ready = self._wait_ready()
        self.address = tuple(ready["osc"])
        self._describe = ready["describe"]
        t.attach_replier(self)
        self._thread = threading.Thread(target=self._relay, name="sonolatent-net-relay", daemon=True)
        self._thread.start()
        return self

    def _wait_ready(self) -> dict:
        end = time.monotonic() + START_TIMEOUT
        while True:
            left = end - time.monotonic()
            r, _, _ = select.select([self.sock], [], [], max(0.0, left))
            if not r:
                self._kill()
                raise SonolatentError("the control (network) process did not start in time")
            data = self.sock.recv(_MAX_MSG)
            if not data:
                self._kill()
                raise SonolatentError("the control (network) process ended at start (see above)")
            msg = json.loads(data)
            if "error" in msg:
                self._kill()
                raise ConfigError(msg["error"])
            if "ready" in msg:
                return msg["ready"]

    def describe(self) -> str:
        return self._describe

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        try:
            self.target.attach_replier(None)
        except Exception:
            pass
        if self.sock is not None:
            try:
                _send(self.sock, {"stop": 1})
            except OSError:
                pass
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                self._kill()
            self.proc = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # -- Replier (the engine answers late errors through this)
    def reply(self, sender, address: str, values: tuple = (), types: str | None = None) -> None:
        if sender is not None and self.sock is not None:
            try:
                _send(self.sock, {"reply": [list(sender), address, list(values), types]})
            except OSError:
                pass

    def reply_error(self, sender, address: str, reason: str) -> None:
        if self.sock is not None:
            try:
                _send(self.sock, {"error": [list(sender) if sender is not None else None, address, reason]})
            except OSError:
                pass

    # -- relay thread (engine process): submits in, values and status out
    def _values(self) -> dict:
        t = self.target
        core = getattr(t, "core", None)
        vals = dict(core.values) if core is not None else {a: t.value(a) for a in t.namespace}
        return {a: list(v) for a, v in vals.items() if v is not None}

    def _relay(self) -> None:
        join = getattr(self.target, "join_realtime", None)
        if join is not None:   # an engine: never set aside while holding the lock its producer needs
            join()
        sock = self.sock
        last = self._values()
        next_status = 0.0
        said_gone = False
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([sock], [], [], SNAPSHOT_S)
            except (OSError, ValueError):
                return
            if r:
                for _ in range(256):
                    try:
                        data = sock.recv(_MAX_MSG, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        data = b""
                    if not data:
                        if not said_gone and not self._stop.is_set():
                            said_gone = True
                            self.log("the control (network) process ended; the sound goes on, OSC is not "
                                     "answered (stop with Ctrl-C or SIGTERM)")
                        self._stop.wait()
                        return
                    try:
                        msg = json.loads(data)
                    except ValueError:
                        continue
                    sub = msg.get("submit")
                    if sub is not None:
                        changes, at, sender = sub
                        self.target.submit([(a, tuple(v)) for a, v in changes], at, _sender(sender))
                        self.relayed += 1
                    elif "net_status" in msg:
                        self.net_status = msg["net_status"]
            now = time.monotonic()
            cur = self._values()
            diff = {a: v for a, v in cur.items() if last.get(a) != v}
            if diff and _send(sock, {"values": diff}):
                last.update(diff)
            if now >= next_status:
                next_status = now + STATUS_S
                try:
                    _send(sock, {"status": self.target.status()})
                except (OSError, TypeError, ValueError):
                    pass


# ================================================================================================
# network process side
# ================================================================================================

class RemoteTarget:
    """The engine as the network process sees it: a snapshot of values and status, submits forwarded.

    A change is also written into the local snapshot at once, so a query right
    after a set answers the new value; the engine's own values follow within
    :data:`SNAPSHOT_S` plus one block.
    """

    def __init__(self, sock: socket.socket, namespace: dict, info: dict, values: dict, status: dict):
        self.sock = sock
        self.namespace = namespace
        self._info = info
        self._values = {a: tuple(v) for a, v in values.items()}
        self._status = status
        self.replier = None
        self.engine_busy = 0
        self.forwarded = 0

    def submit(self, changes, at, sender) -> None:
        changes = list(changes)
        for k in range(0, len(changes), CHUNK):
            part = changes[k:k + CHUNK]
            if not _send(self.sock, {"submit": [[[a, list(v)] for a, v in part], at,
                                                list(sender) if sender is not None else None]}):
                self.engine_busy += 1
                raise SonolatentError("engine busy: change dropped")
            self.forwarded += 1
        for a, v in changes:
            p = self.namespace.get(a)
            if p is not None and not p.action:
                self._values.update(linked_values(a, tuple(v), self._values.get))

    def value(self, address: str):
        return self._values.get(address)

    def info(self) -> dict:
        return dict(self._info)

    def status(self) -> dict:
        st = dict(self._status)
        st["net_forwarded"] = self.forwarded
        st["net_engine_busy"] = self.engine_busy
        return st

    def attach_replier(self, replier) -> None:
        self.replier = replier

    def update(self, msg: dict) -> bool:
        """Apply one message from the engine process; False on ``stop``."""
        if "values" in msg:
            self._values.update({a: tuple(v) for a, v in msg["values"].items()})
        if "status" in msg:
            self._status = msg["status"]
        r = self.replier
        if "error" in msg and r is not None:
            sender, address, reason = msg["error"]
            r.reply_error(_sender(sender), address, reason)
        if "reply" in msg and r is not None:
            sender, address, values, types = msg["reply"]
            r.reply(_sender(sender), address, tuple(values), types)
        return "stop" not in msg


def child_main(fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    first = json.loads(sock.recv(_MAX_MSG) or b"{}")
    if "config" not in first:
        return 1
    from .surface import ControlSurface

    cfg = first["config"]
    namespace = {d["address"]: _param_from_json(d) for d in first["namespace"]}
    target = RemoteTarget(sock, namespace, first["info"], first["values"], first["status"])
    try:
        surface = ControlSurface(target, cfg["host"], cfg["port"], oscquery_port=cfg["oscquery_port"],
                                 allow=cfg["allow"], loopback=cfg["loopback"], rate=cfg["rate"],
                                 max_packet=cfg["max_packet"], max_future=cfg["max_future"]).start()
    except SonolatentError as e:
        _send(sock, {"error": str(e)}, block=True)
        return 2
    try:
        _send(sock, {"ready": {"osc": list(surface.osc.address), "describe": surface.describe()}}, block=True)
        while True:
            data = sock.recv(_MAX_MSG)
            if not data:
                break
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if not target.update(msg):
                break
    except OSError:
        pass
    finally:
        surface.stop()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1])))
