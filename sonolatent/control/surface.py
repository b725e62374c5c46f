"""The whole control surface in one object (OSC server + OSCQuery/WebSocket/browser surface + zeroconf), and its options.

``sonolatent serve`` (and the dry run ``python -m sonolatent.control``) add
the options with :func:`add_control_arguments` and start everything with
:func:`ControlSurface.from_args`. Torch-free.
"""

from __future__ import annotations

import argparse
import ipaddress

from ..errors import ConfigError
from .oscquery import OscQueryServer
from .server import (DEFAULT_MAX_FUTURE, DEFAULT_MAX_PACKET, DEFAULT_PORT, DEFAULT_RATE, AllowList, OscServer)
from .target import ControlTarget


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("OSC control")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on for OSC (UDP) and OSCQuery (HTTP) (default: 127.0.0.1, this machine only)")
    g.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"OSC UDP port (default: {DEFAULT_PORT}; 0 picks a free one)")
    g.add_argument("--oscquery-port", type=int, default=None, metavar="PORT",
                   help="OSCQuery HTTP/WebSocket (TCP) port, also serving the browser surface at /ui/ "
                        "(default: the OSC port number; -1 turns it off)")
    g.add_argument("--allow", action="append", metavar="CIDR",
                   help="also accept OSC/HTTP from these addresses, e.g. 192.168.1.0/24 (repeatable; loopback is "
                        "always accepted unless --no-loopback)")
    g.add_argument("--no-loopback", action="store_true",
                   help="do not accept loopback (this machine) unless --allow names it")
    g.add_argument("--osc-rate", type=float, default=DEFAULT_RATE, metavar="N",
                   help=f"per-sender budget in OSC messages/s (ip and port), excess dropped and counted; "
                        f"wildcard matches and replies have their own budgets (default: {DEFAULT_RATE:g}; "
                        "0 = no budgets)")
    g.add_argument("--max-packet", type=int, default=DEFAULT_MAX_PACKET, metavar="BYTES",
                   help=f"largest OSC packet accepted (default: {DEFAULT_MAX_PACKET})")
    g.add_argument("--max-future", type=float, default=DEFAULT_MAX_FUTURE, metavar="SECONDS",
                   help=f"furthest a bundle timetag may lie ahead (default: {DEFAULT_MAX_FUTURE:g} s)")
    g.add_argument("--advertise", action=argparse.BooleanOptionalAction, default=None,
                   help="announce OSCQuery (_oscjson._tcp) and OSC (_osc._udp) over zeroconf "
                        "(default: on when --host is not loopback)")


class ControlSurface:
    """An :class:`OscServer` and (optionally) an :class:`OscQueryServer` sharing one allowlist."""

    def __init__(self, target: ControlTarget, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 oscquery_port: int | None = None, allow=None, loopback: bool = True, rate: float = DEFAULT_RATE,
                 max_packet: int = DEFAULT_MAX_PACKET, max_future: float = DEFAULT_MAX_FUTURE, name: str = "sonolatent",
                 advertise: bool | None = False):
        allow_list = AllowList(allow, loopback)
        self.osc = OscServer(target, host, port, allow=allow, loopback=loopback, rate=rate, max_packet=max_packet, max_future=max_future)
        self.osc.allow = allow_list
        self._oscquery_port = oscquery_port
        self._allow = allow_list
        self._name = name
        self._target = target
        self._advertise = (not _is_loopback(host)) if advertise is None else bool(advertise)
        self.http: OscQueryServer | None = None
        self.advertiser = None

    @classmethod
    def from_args(cls, target: ControlTarget, args: argparse.Namespace) -> "ControlSurface":
        for opt, v in (("--port", args.port), ("--oscquery-port", args.oscquery_port)):
            if v is not None and not -1 <= v <= 65535:
                raise ConfigError(f"{opt}: {v} is not a port number (0-65535)")
        return cls(target, args.host, args.port, oscquery_port=args.oscquery_port, allow=args.allow,
                   loopback=not getattr(args, "no_loopback", False),
                   rate=args.osc_rate, max_packet=args.max_packet, max_future=args.max_future,
                   advertise=getattr(args, "advertise", False))

    def start(self) -> "ControlSurface":
        self.osc.start()
        want = self._oscquery_port
        if want is None or want >= 0:
            port = self.osc.port if want is None else want
            self.http = OscQueryServer(self._target, self.osc.host, port, osc_port=self.osc.port,
                                       allow=self._allow, name=self._name, osc=self.osc,
                                       max_message=self.osc.max_packet)
            try:
                self.http.start()
            except ConfigError:
                self.osc.stop()
                raise
        if self._advertise:
            from .discovery import Advertiser
            try:
                self.advertiser = Advertiser(self._name, self.osc.host, self.osc.port,
                                             self.http.port if self.http is not None else None).start()
            except ConfigError:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        if self.advertiser is not None:
            self.advertiser.stop()
            self.advertiser = None
        if self.http is not None:
            self.http.stop()
        self.osc.stop()

    def describe(self) -> str:
        host, port = self.osc.address
        s = f"OSC on udp {host}:{port}"
        if self.http is not None:
            s += f", OSCQuery on {self.http.url}, surface on {self.http.url}ui/"
            if host in ("", "0.0.0.0", "::"):
                from .discovery import advertised_addresses
                s += " (from another device: " + ", ".join(
                    f"http://{a}:{self.http.port}/ui/" for a in advertised_addresses(host)[:3]) + ")"
        if self.advertiser is not None:
            s += f", advertised as {self.advertiser.instance!r}"
        if self._allow.loopback_only and not _is_loopback(host):
            s += " (only this machine may connect: add --allow CIDR for others)"
        return s

    def __enter__(self) -> "ControlSurface":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
