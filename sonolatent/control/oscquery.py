"""OSCQuery (Vidvox OSCQueryProposal) over HTTP and WebSocket, and the browser surface, on one asyncio server.

One thread runs one asyncio event loop with one ``websockets`` server on the
OSCQuery port. Plain HTTP GETs are answered from its ``process_request``
hook; WebSocket upgrades go to the OSCQuery WebSocket handler.

HTTP (GET only; other methods answer 400, the ``websockets`` parser knows no other):

- ``/`` the whole tree; ``/sono/gain`` one node (with its children);
  ``/sono/gain?VALUE`` one attribute (``{"VALUE": [0.8]}``); ``/?HOST_INFO``
  the server description. Unknown paths answer 404 with a JSON body, unknown
  attributes 400, an attribute a node does not have (the VALUE of an action)
  204. VALUE is read live from ``target.value``. A browser asking for ``/``
  (``Accept: text/html``) is sent to the surface at ``/ui/``.
- ``/ui/...`` the static files of the browser surface (``control/web/``),
  read once at start; nothing else on disk is reachable.

WebSocket (same port, any path):

- text frames are JSON commands: ``{"COMMAND": "LISTEN", "DATA": "/sono/morph"}``
  starts streaming that address's value, ``IGNORE`` stops it. A LISTEN sends
  the current value at once; after that each change (checked every
  ``push_interval``) arrives as a binary frame holding one OSC message.
- binary frames are OSC packets (a message or a bundle), handled by the UDP
  OSC server exactly like a datagram (allowlist, size, per-host rate,
  parsing, errors counted and answered); replies and ``/sono/error`` come back
  on the same WebSocket as binary frames.

Limits (nothing here can be starved by one client): at most
``max_connections`` connections at once and ``max_per_host`` from one
address (the excess is closed at once); a request's headers must arrive
within ``header_timeout`` seconds; the listen backlog is ``backlog``; HTTP
requests are limited per host (``http_rate``/s, excess 429); WebSocket
messages per connection (``ws_rate``/s, excess dropped and counted); a
slow reader's pending values are coalesced (the latest per address), so it
never holds up the others. The same allowlist as the OSC server applies (a
refused client's connection is closed unanswered). A WebSocket upgrade from
a web page of another origin is refused (403), and so is any request whose
``Host`` is a name this machine does not answer to (DNS rebinding).

Bare actions (no arguments, e.g. ``/sono/stop``) have ``TYPE "N"``, the type
hosts such as ossia score read as an impulse. ``/norm`` forms are not listed
(the tree gives hosts the real ranges).
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import json
import logging
import mimetypes
import socket
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from .. import __version__
from ..errors import ConfigError
from ..params.namespace import Param
from .guard import AllowList, Throttle, TokenBuckets
from .wire import encode
from .target import ControlTarget

ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION", "CLIPMODE", "UNIT",
              "TAGS", "CRITICAL", "EXTENDED_TYPE", "OVERLOADS", "HTML")
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TYPE": True, "CLIPMODE": True,
              "UNIT": True, "LISTEN": True, "TAGS": False, "CRITICAL": False, "EXTENDED_TYPE": False,
              "OVERLOADS": False, "HTML": False, "PATH_CHANGED": False, "PATH_RENAMED": False,
              "PATH_ADDED": False, "PATH_REMOVED": False}
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")
WEB_ROOT = Path(__file__).resolve().parent / "web"
UI_PREFIX = "/ui/"

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_PER_HOST = 64
DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_BACKLOG = 1024
DEFAULT_HTTP_RATE = 50.0       # HTTP requests per second per host (twice that from all hosts together)
ROOT_CACHE_S = 0.25            # the whole tree (~8 ms to render at 48 dims) is rendered at most this often
DEFAULT_WS_RATE = 1000.0       # WebSocket messages per second per connection
MAX_PENDING_REPLIES = 256      # OSC replies queued for one slow WebSocket reader

COUNTERS = ("http_requests", "http_refused", "http_rate", "ws_open", "ws_messages", "ws_osc", "ws_commands",
            "ws_bad", "ws_rate", "ws_sent", "ws_coalesced", "refused", "refused_full", "refused_origin")

_quiet = logging.getLogger("sonolatent.oscquery.websockets")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False     # websockets logs every failed handshake: never per connection on stderr


def _is_string(p: Param) -> bool:
    return bool(p.types) and all(t == "s" for t in p.types)


def param_node(p: Param, value: tuple | None, choices=None) -> dict:
    """The OSCQuery attributes of one parameter (without CONTENTS). ``choices``: live VALS (sample names)."""
    n = len(p.types)
    node = {"FULL_PATH": p.address, "DESCRIPTION": p.description, "TYPE": p.types or "N", "ACCESS": p.access}
    if value is not None and p.access & 1 and not p.action:
        node["VALUE"] = [str(v) if t == "s" else int(v) if t == "i" else float(v) for v, t in zip(value, p.types)]
    if n:
        vals = list(choices) if choices is not None else list(p.values)
        ranges = []
        for k in range(n):
            r = {}
            if k < len(p.min) and k < len(p.max):
                r["MIN"], r["MAX"] = p.min[k], p.max[k]
            if vals:
                r["VALS"] = vals
            ranges.append(r)
        if any(ranges):
            node["RANGE"] = ranges
        if not _is_string(p):
            node["CLIPMODE"] = ["both"] * n
        if p.unit:
            node["UNIT"] = [p.unit] * n
    return node


class Tree:
    """The container hierarchy of a namespace, rendered to OSCQuery JSON on demand (live VALUEs)."""

    def __init__(self, target: ControlTarget, name: str = "sonolatent"):
        self.target = target
        self.name = name
        self.children: dict[str, list[str]] = {"/": []}   # path -> child names (ordered)
        for address in target.namespace:
            parts = address.strip("/").split("/")
            path = "/"
            for part in parts:
                child = path.rstrip("/") + "/" + part
                if child not in self.children:
                    self.children[child] = []
                    self.children[path].append(part)
                path = child

    def has(self, path: str) -> bool:
        return path in self.children

    def node(self, path: str) -> dict:
        p = self.target.namespace.get(path)
        if p is not None:
            choices = getattr(self.target, "choices", None)
            node = param_node(p, self.target.value(path), choices(path) if choices else None)
        else:
            desc = f"{self.name} {__version__}" if path == "/" else f"{path} container"
            node = {"FULL_PATH": path, "DESCRIPTION": desc, "ACCESS": 0}
        kids = self.children.get(path, [])
        if kids:
            base = path.rstrip("/")
            node["CONTENTS"] = {k: self.node(f"{base}/{k}") for k in kids}
        return node


def _load_static(root: Path) -> dict[str, tuple[bytes, str]]:
    """Every file under ``root`` as ``/ui/relative/path -> (bytes, content type)`` (read once)."""
    files = {}
    if root.is_dir():
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
                if ctype.startswith("text/") or ctype.endswith(("javascript", "json")):
                    ctype += "; charset=utf-8"
                files[UI_PREFIX + f.relative_to(root).as_posix()] = (f.read_bytes(), ctype)
    if UI_PREFIX + "index.html" in files:
        files[UI_PREFIX] = files[UI_PREFIX + "index.html"]
    return files


_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _response(status: int, body: bytes = b"", ctype: str | None = None, extra=()) -> Response:
    st = http.HTTPStatus(status)
    headers = Headers([("Connection", "close"), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
                       ("X-Content-Type-Options", "nosniff")])
    if ctype:
        headers["Content-Type"] = ctype
    for k, v in extra:
        headers[k] = v
    return Response(st.value, st.phrase, headers, body)


def _json(status: int, body=None) -> Response:
    if body is None:
        return _response(status)
    return _response(status, json.dumps(body, separators=(",", ":")).encode(), "application/json")


def _host_names() -> set[str]:
    names = {"localhost"}
    try:
        h = socket.gethostname().lower()
        names |= {h, h + ".local", h.split(".")[0], h.split(".")[0] + ".local"}
    except OSError:
        pass
    return names


def _split_host(value: str) -> str:
    """The host part of a ``Host`` header or an origin's netloc (no port, no brackets), lower case."""
    v = value.strip().lower()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


class _Listener:
    """One WebSocket client: what it listens to, and what is waiting to be sent to it."""

    def __init__(self, conn: ServerConnection, sender: tuple, rate: float):
        self.conn = conn
        self.sender = sender
        self.paths: set[str] = set()
        self.values: dict[str, bytes] = {}   # address -> latest encoded value not yet sent (coalesced)
        self.replies: list[bytes] = []       # OSC replies, in order
        self.wake = asyncio.Event()
        self.limiter = TokenBuckets(rate)

    def queue_reply(self, data: bytes, counters: dict) -> None:
        if len(self.replies) >= MAX_PENDING_REPLIES:
            counters["ws_coalesced"] += 1
            return
        self.replies.append(data)
        self.wake.set()

    def queue_value(self, address: str, data: bytes, counters: dict) -> None:
        if address in self.values:
            counters["ws_coalesced"] += 1
        self.values[address] = data
        self.wake.set()


class _Gate(asyncio.Protocol):
    """The first protocol of every accepted TCP connection: admits it or closes it before anything is built.

    Refusing costs one ``abort``, so a flood of connections cannot tie the
    event loop up building WebSocket state for connections that are closed anyway.
    """

    __slots__ = ("srv", "factory")

    def __init__(self, srv: "OscQueryServer", factory):
        self.srv, self.factory = srv, factory

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername") or ("", 0)
        host = str(peer[0])
        if not self.srv._admit(host):
            transport.abort()
            return
        conn = self.factory()
        conn.peer_host, conn.admitted = host, True
        transport.set_protocol(conn)
        conn.connection_made(transport)

    def connection_lost(self, exc) -> None:
        pass


class _Connection(ServerConnection):
    """A WebSocket/HTTP connection that gives its place back when it ends (admission: :class:`_Gate`)."""

    oscquery: "OscQueryServer"
    admitted = None      # None: not seen by the gate (then admitted here)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.admitted is None:
            peer = transport.get_extra_info("peername") or ("", 0)
            self.peer_host = str(peer[0])
            self.admitted = self.oscquery._admit(self.peer_host)
            if not self.admitted:
                transport.abort()

    def connection_lost(self, exc) -> None:
        if self.admitted:
            self.admitted = False
            self.oscquery._release(self.peer_host)
        super().connection_lost(exc)


class OscQueryServer:
    """OSCQuery HTTP + WebSocket server (and the browser surface) for ``target``, on its own thread and event loop.

    ``osc``: the :class:`~sonolatent.control.server.OscServer` that OSC
    arriving over the WebSocket is handed to (None: binary frames are dropped).
    """

    def __init__(self, target: ControlTarget, host: str = "127.0.0.1", port: int = 0, *, osc_port: int,
                 osc_host: str | None = None, allow=None, name: str = "sonolatent", osc=None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, max_per_host: int = DEFAULT_MAX_PER_HOST,
                 header_timeout: float = DEFAULT_HEADER_TIMEOUT, backlog: int = DEFAULT_BACKLOG,
                 http_rate: float = DEFAULT_HTTP_RATE, ws_rate: float = DEFAULT_WS_RATE,
                 push_interval: float = 0.04, max_message: int = 65536, web_root: Path | None = WEB_ROOT):
        self.target = target
        self.host, self._want_port = host, int(port)
        self.osc_port = int(osc_port)
        self.osc_host = host if osc_host is None else osc_host
        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        self.name = name
        self.osc = osc
        self.tree = Tree(target, name)
        self.max_connections, self.max_per_host = int(max_connections), int(max_per_host)
        self.header_timeout, self.backlog = float(header_timeout), int(backlog)
        self.push_interval = float(push_interval)
        self.max_message = int(max_message)
        self.ws_rate = float(ws_rate)
        self.http_limiter = TokenBuckets(http_rate)
        self.http_all = TokenBuckets(2 * http_rate)
        self._root: tuple[float, bytes] | None = None
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.throttle = Throttle()
        self.static = _load_static(Path(web_root)) if web_root is not None else {}
        self._readable = {a for a, p in target.namespace.items() if not p.action and p.access & 1}
        self._hostnames = _host_names()
        self._open = 0
        self._per_host: dict[str, int] = {}
        self._listeners: set[_Listener] = set()
        self._last: dict[str, tuple] = {}    # the value last streamed per listened address
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- properties ---------------------------------------------------------
    @property
    def refused(self) -> int:
        return self.counters["refused"]

    @property
    def port(self) -> int:
        return self._port or self._want_port

    @property
    def url(self) -> str:
        h = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{h}:{self.port}/"

    @property
    def connections(self) -> int:
        return self._open

    def host_info(self) -> dict:
        info = {"NAME": self.name, "OSC_PORT": self.osc_port, "OSC_TRANSPORT": "UDP", "EXTENSIONS": dict(EXTENSIONS)}
        if self.osc_host not in _WILDCARD_HOSTS:
            info["OSC_IP"] = self.osc_host
        return info

    def stats(self) -> dict:
        s = dict(self.counters)
        s["connections"] = self._open
        s["listeners"] = len(self._listeners)
        return s

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> "OscQueryServer":
        started = threading.Event()
        failure: list = []
        self._thread = threading.Thread(target=self._run, args=(started, failure), name="oscquery", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join(timeout=2.0)
            self._thread = None
            raise ConfigError(f"cannot serve OSCQuery on {self.host}:{self._want_port}: {failure[0]}")
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:   # the loop has already closed
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> "OscQueryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, started: threading.Event, failure: list) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(started, failure))
        except Exception as e:   # never a traceback from the network thread
            if not started.is_set():
                failure.append(str(e))
                started.set()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._loop = None

    async def _main(self, started: threading.Event, failure: list) -> None:
        self._stopping = asyncio.Event()

        class Conn(_Connection):
            oscquery = self

        try:
            family = socket.getaddrinfo(self.host, self._want_port, 0, socket.SOCK_STREAM)[0][0]
            self._server = await serve(
                self._ws_handler, self.host, self._want_port, family=family, backlog=self.backlog,
                process_request=self._process_request, create_connection=Conn, open_timeout=self.header_timeout,
                max_size=self.max_message, max_queue=16, ping_interval=20, ping_timeout=20, close_timeout=2,
                logger=_quiet, server_header=f"sonolatent-oscquery/{__version__}", compression=None,
                start_serving=False)
            aserver = self._server.server
            inner = getattr(aserver, "_protocol_factory", None)
            if inner is not None:   # asyncio.Server keeps it there (3.8-3.13); else _Connection admits
                aserver._protocol_factory = lambda: _Gate(self, inner)
            await aserver.start_serving()
        except (OSError, UnicodeError) as e:
            failure.append(getattr(e, "strerror", None) or str(e))
            started.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        pusher = asyncio.create_task(self._push_loop())
        started.set()
        await self._stopping.wait()
        pusher.cancel()
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 3.0)
        except (asyncio.TimeoutError, Exception):
            pass

    # -- admission ----------------------------------------------------------
    def _admit(self, host: str) -> bool:
        c = self.counters
        if not self.allow(host):
            c["refused"] += 1
            return False
        if self._open >= self.max_connections or self._per_host.get(host, 0) >= self.max_per_host:
            c["refused_full"] += 1
            self.throttle.warn("full", f"OSCQuery: refusing connections from {host}: too many open "
                               f"({self._open} in all, at most {self.max_connections}; {self.max_per_host} per address)")
            return False
        self._open += 1
        self._per_host[host] = self._per_host.get(host, 0) + 1
        return True

    def _release(self, host: str) -> None:
        self._open -= 1
        n = self._per_host.get(host, 0) - 1
        if n > 0:
            self._per_host[host] = n
        else:
            self._per_host.pop(host, None)

    def _known_host(self, value: str | None) -> bool:
        """True when a ``Host`` header names this machine: an IP literal, localhost, or its host name."""
        if not value:
            return True        # HTTP/1.0 clients
        h = _split_host(value)
        try:
            ipaddress.ip_address(h)
            return True
        except ValueError:
            return h in self._hostnames

    # -- HTTP ---------------------------------------------------------------
    def _process_request(self, conn: ServerConnection, request):
        """Answer plain HTTP; return None to let a WebSocket upgrade through."""
        c = self.counters
        headers = request.headers
        host = getattr(conn, "peer_host", "")
        if not self._known_host(headers.get("Host")):
            c["refused_origin"] += 1
            return _json(403, {"error": "unknown Host header (use this machine's address)"})
        if "websocket" in headers.get("Upgrade", "").lower():
            origin = headers.get("Origin")
            if origin is not None and _split_netloc(origin) != headers.get("Host", "").strip().lower():
                c["refused_origin"] += 1
                return _json(403, {"error": "WebSocket from another web origin"})
            return None
        c["http_requests"] += 1
        if not self.http_limiter.take(host) or not self.http_all.take("*"):
            c["http_rate"] += 1
            return _json(429, {"error": "too many requests"})
        try:
            return self._get(request.path, headers.get("Accept", ""))
        except Exception as e:   # an engine value read failing: answer, never print a traceback
            self.throttle.warn("http", f"OSCQuery: request failed: {type(e).__name__}: {e}")
            return _json(500, {"error": type(e).__name__})

    def _get(self, target: str, accept: str) -> Response:
        url = urlsplit(target)
        path = unquote(url.path) or "/"
        query = unquote(url.query)
        if path == "/ui":
            return _response(302, extra=(("Location", UI_PREFIX),))
        if path.startswith(UI_PREFIX):
            f = self.static.get(path)
            if f is None:
                return _json(404, {"error": "no such file", "path": path[:200]})
            extra = (("Content-Security-Policy", _CSP),) if f[1].startswith("text/html") else ()
            return _response(200, f[0], f[1], extra)
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        if query == "HOST_INFO":
            return _json(200, self.host_info())
        if path == "/" and not query and "text/html" in accept and self.static:
            return _response(302, extra=(("Location", UI_PREFIX),))
        if not self.tree.has(path):
            return _json(404, {"error": "no such OSC address", "path": path[:200]})
        if path == "/" and not query:
            now = time.monotonic()
            if self._root is None or now - self._root[0] > ROOT_CACHE_S:
                self._root = (now, json.dumps(self.tree.node("/"), separators=(",", ":")).encode())
            return _response(200, self._root[1], "application/json")
        node = self.tree.node(path)
        if not query:
            return _json(200, node)
        attr = query.split("&", 1)[0].split("=", 1)[0].upper()
        if attr not in ATTRIBUTES:
            return _json(400, {"error": f"unknown attribute {attr[:50]!r}"})
        if attr not in node:
            return _json(204)
        return _json(200, {attr: node[attr]})

    # -- WebSocket ----------------------------------------------------------
    async def _ws_handler(self, conn: ServerConnection) -> None:
        c = self.counters
        peer = conn.remote_address or ("", 0)
        sender = (str(peer[0]), int(peer[1]), "ws")
        client = _Listener(conn, sender, self.ws_rate)
        loop = asyncio.get_running_loop()

        def deliver(data: bytes) -> None:   # any thread: an OSC reply for this client
            try:
                loop.call_soon_threadsafe(client.queue_reply, data, c)
            except RuntimeError:
                pass

        osc = self.osc
        if osc is not None and hasattr(osc, "register_stream"):
            osc.register_stream(sender, deliver)
        self._listeners.add(client)
        c["ws_open"] += 1
        writer = asyncio.create_task(self._writer(client))
        try:
            async for msg in conn:
                c["ws_messages"] += 1
                if not client.limiter.take(sender[0] + str(sender[1])):
                    c["ws_rate"] += 1
                    continue
                if isinstance(msg, str):
                    self._command(client, msg)
                elif osc is not None:
                    c["ws_osc"] += 1
                    try:
                        osc.handle_datagram(bytes(msg), sender)
                    except Exception as e:   # the OSC server counts its own errors; this is a bug guard
                        self.throttle.warn("osc", f"OSCQuery: OSC over WebSocket failed: {type(e).__name__}: {e}")
                else:
                    c["ws_bad"] += 1
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            self._listeners.discard(client)
            if osc is not None and hasattr(osc, "unregister_stream"):
                osc.unregister_stream(sender)

    def _command(self, client: _Listener, text: str) -> None:
        c = self.counters
        try:
            cmd = json.loads(text)
            kind, path = cmd["COMMAND"], cmd.get("DATA")
        except Exception:
            c["ws_bad"] += 1
            return
        if kind not in ("LISTEN", "IGNORE") or not isinstance(path, str):
            c["ws_bad"] += 1
            return
        c["ws_commands"] += 1
        if kind == "IGNORE":
            client.paths.discard(path)
            client.values.pop(path, None)
            return
        if path not in self._readable:
            c["ws_bad"] += 1
            return
        client.paths.add(path)
        v = self.target.value(path)
        if v is not None:
            self._last.setdefault(path, v)   # the push loop sends what changes after this
            client.queue_value(path, encode(path, v, self.target.namespace[path].types), c)

    async def _writer(self, client: _Listener) -> None:
        c = self.counters
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.replies or client.values:
                    if client.replies:
                        data = client.replies.pop(0)
                    else:
                        address = next(iter(client.values))
                        data = client.values.pop(address)
                    await client.conn.send(data)
                    c["ws_sent"] += 1
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception as e:
            self.throttle.warn("send", f"OSCQuery: sending to a WebSocket failed: {type(e).__name__}: {e}")

    async def _push_loop(self) -> None:
        """Every ``push_interval``: read the listened addresses once, queue what changed to each listener."""
        last = self._last
        while True:
            await asyncio.sleep(self.push_interval)
            if not self._listeners:
                last.clear()
                continue
            try:
                wanted = set().union(*(cl.paths for cl in self._listeners))
                for address in list(last):
                    if address not in wanted:
                        del last[address]
                for address in wanted:
                    v = self.target.value(address)
                    if v is None or last.get(address) == v:
                        continue
                    last[address] = v
                    data = encode(address, v, self.target.namespace[address].types)
                    for cl in self._listeners:
                        if address in cl.paths:
                            cl.queue_value(address, data, self.counters)
            except Exception as e:
                self.throttle.warn("push", f"OSCQuery: reading values failed: {type(e).__name__}: {e}")


def _split_netloc(origin: str) -> str:
    """``http://host:port`` -> ``host:port`` (lower case), as a ``Host`` header would carry it."""
    u = urlsplit(origin.strip().lower())
    return u.netloc
