"""OSCQuery (Vidvox OSCQueryProposal) over HTTP: the namespace as a JSON tree.

``GET /`` returns the whole tree; ``GET /sono/gain`` one node (with its
children); ``GET /sono/gain?VALUE`` one attribute (``{"VALUE": [0.8]}``);
``GET /?HOST_INFO`` the server description. Unknown paths answer 404 with a
JSON body, unknown attributes 400, an attribute a node does not have (the
VALUE of a write-only action) 204. VALUE is read live from
``target.value``. The same allowlist as the OSC server applies (a refused
client's connection is closed unanswered).

Bare actions (no arguments, e.g. ``/sono/stop``) have ``TYPE "N"``, the type
hosts such as ossia score read as an impulse. ``/norm`` forms are not listed
(the tree gives hosts the real ranges).
"""

from __future__ import annotations

import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..errors import ConfigError
from ..params.namespace import Param
from .server import AllowList
from .target import ControlTarget

ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION", "CLIPMODE", "UNIT",
              "TAGS", "CRITICAL", "EXTENDED_TYPE", "OVERLOADS", "HTML")
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TYPE": True, "CLIPMODE": True,
              "UNIT": True, "TAGS": False, "CRITICAL": False, "EXTENDED_TYPE": False, "OVERLOADS": False,
              "HTML": False, "LISTEN": False, "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False,
              "PATH_REMOVED": False}
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def _is_string(p: Param) -> bool:
    return bool(p.types) and all(t == "s" for t in p.types)


def param_node(p: Param, value: tuple | None) -> dict:
    """The OSCQuery attributes of one parameter (without CONTENTS)."""
    n = len(p.types)
    node = {"FULL_PATH": p.address, "DESCRIPTION": p.description, "TYPE": p.types or "N", "ACCESS": p.access}
    if value is not None and p.access & 1 and not p.action:
        node["VALUE"] = [str(v) if t == "s" else int(v) if t == "i" else float(v) for v, t in zip(value, p.types)]
    if n:
        ranges = []
        for k in range(n):
            r = {}
            if k < len(p.min) and k < len(p.max):
                r["MIN"], r["MAX"] = p.min[k], p.max[k]
            if p.values:
                r["VALS"] = list(p.values)
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
            node = param_node(p, self.target.value(path))
        else:
            desc = f"{self.name} {__version__}" if path == "/" else f"{path} container"
            node = {"FULL_PATH": path, "DESCRIPTION": desc, "ACCESS": 0}
        kids = self.children.get(path, [])
        if kids:
            base = path.rstrip("/")
            node["CONTENTS"] = {k: self.node(f"{base}/{k}") for k in kids}
        return node


class _Handler(BaseHTTPRequestHandler):
    server_version = f"sonolatent-oscquery/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that stalls loses its connection

    def log_message(self, format, *args):  # no per-request lines on stderr
        pass

    def _send(self, status: int, body=None) -> None:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        srv: OscQueryServer = self.server.oscquery  # type: ignore[attr-defined]
        try:
            url = urlsplit(self.path)
            path = unquote(url.path) or "/"
            if len(path) > 1:
                path = path.rstrip("/") or "/"
            query = unquote(url.query)
            if query == "HOST_INFO":
                return self._send(200, srv.host_info())
            if not srv.tree.has(path):
                return self._send(404, {"error": "no such OSC address", "path": path[:200]})
            node = srv.tree.node(path)
            if not query:
                return self._send(200, node)
            attr = query.split("&", 1)[0].split("=", 1)[0].upper()
            if attr not in ATTRIBUTES:
                return self._send(400, {"error": f"unknown attribute {attr[:50]!r}"})
            if attr not in node:
                return self._send(HTTPStatus.NO_CONTENT)
            return self._send(200, {attr: node[attr]})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # an engine value read failing: answer, never print a traceback
            try:
                self._send(500, {"error": type(e).__name__})
            except OSError:
                pass

    def do_POST(self):
        self._send(405, {"error": "OSCQuery is read-only here; send OSC over UDP"})

    do_PUT = do_DELETE = do_POST


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def verify_request(self, request, client_address) -> bool:
        ok = self.oscquery.allow(client_address[0])  # type: ignore[attr-defined]
        if not ok:
            self.oscquery.refused += 1  # type: ignore[attr-defined]
        return ok

    def handle_error(self, request, client_address):  # no tracebacks on stderr
        pass


class OscQueryServer:
    """HTTP server for the OSCQuery tree of ``target``, on its own daemon thread."""

    def __init__(self, target: ControlTarget, host: str = "127.0.0.1", port: int = 0, *, osc_port: int,
                 osc_host: str | None = None, allow=None, name: str = "sonolatent"):
        self.target = target
        self.host, self._want_port = host, int(port)
        self.osc_port = int(osc_port)
        self.osc_host = host if osc_host is None else osc_host
        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        self.name = name
        self.tree = Tree(target, name)
        self.refused = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._want_port

    @property
    def url(self) -> str:
        h = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{h}:{self.port}/"

    def host_info(self) -> dict:
        info = {"NAME": self.name, "OSC_PORT": self.osc_port, "OSC_TRANSPORT": "UDP", "EXTENSIONS": dict(EXTENSIONS)}
        if self.osc_host not in _WILDCARD_HOSTS:
            info["OSC_IP"] = self.osc_host
        return info

    def start(self) -> "OscQueryServer":
        try:
            family = socket.getaddrinfo(self.host, self._want_port, 0, socket.SOCK_STREAM)[0][0]
            cls = type("_Bound", (_HTTPServer,), {"address_family": family})
            self._httpd = cls((self.host, self._want_port), _Handler)
        except (OSError, UnicodeError) as e:
            raise ConfigError(f"cannot serve OSCQuery on {self.host}:{self._want_port}: {getattr(e, 'strerror', None) or e}") from None
        self._httpd.oscquery = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="oscquery-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def __enter__(self) -> "OscQueryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
