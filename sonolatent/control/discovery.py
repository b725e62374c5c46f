"""Zeroconf (mDNS/DNS-SD) advertisement: ``_oscjson._tcp`` (OSCQuery) and ``_osc._udp`` (OSC).

Hosts that browse for OSCQuery servers (ossia score, Chataigne, VRChat...)
find the daemon without anyone typing an address. The advertisement lives on
python-zeroconf's own thread; registering (its probing takes about a second)
runs on a helper thread so the daemon does not wait for it.

The addresses advertised are the listening address, or every IPv4 address of
this machine when listening on all of them (``0.0.0.0``/``::``).
"""

from __future__ import annotations

import ipaddress
import socket
import threading

from ..errors import ConfigError

OSCQUERY_TYPE = "_oscjson._tcp.local."
OSC_TYPE = "_osc._udp.local."


def _local_addresses() -> list[str]:
    import ifaddr

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                a = ipaddress.ip_address(ip.ip)
                if not a.is_loopback and not a.is_link_local:
                    out.append(ip.ip)
    return out or ["127.0.0.1"]


def advertised_addresses(host: str) -> list[str]:
    """The IPv4 addresses to advertise for a server listening on ``host``."""
    if host in ("", "0.0.0.0", "::"):
        return _local_addresses()
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            return [socket.gethostbyname(host)]
        except OSError as e:
            raise ConfigError(f"--advertise: cannot resolve {host!r}: {e}") from None


class Advertiser:
    """Registers the OSCQuery and OSC services for as long as it runs (``start``/``stop``)."""

    def __init__(self, name: str, host: str, osc_port: int, oscquery_port: int | None):
        self.addresses = advertised_addresses(host)
        self.host = host
        self.osc_port = int(osc_port)
        self.oscquery_port = oscquery_port
        hostname = socket.gethostname().split(".")[0] or "sonolatent"
        self.instance = f"{name} on {hostname}"[:63]
        self.server = f"{hostname}.local."
        self._zc = None
        self._infos: list = []
        self._thread: threading.Thread | None = None
        self.registered = threading.Event()
        self.error: str | None = None

    def infos(self) -> list:
        from zeroconf import ServiceInfo

        props = {"txtvers": "1", "osc_port": str(self.osc_port)}
        out = []
        if self.oscquery_port is not None:
            out.append(ServiceInfo(OSCQUERY_TYPE, f"{self.instance}.{OSCQUERY_TYPE}", port=int(self.oscquery_port),
                                   properties=props, server=self.server, parsed_addresses=self.addresses))
        out.append(ServiceInfo(OSC_TYPE, f"{self.instance}.{OSC_TYPE}", port=self.osc_port, properties=props,
                               server=self.server, parsed_addresses=self.addresses))
        return out

    def start(self) -> "Advertiser":
        from zeroconf import IPVersion, Zeroconf

        try:
            self._zc = Zeroconf(ip_version=IPVersion.V4Only)
        except OSError as e:
            raise ConfigError(f"--advertise: cannot start zeroconf: {e}") from None
        self._infos = self.infos()
        self._thread = threading.Thread(target=self._register, name="zeroconf-register", daemon=True)
        self._thread.start()
        return self

    def _register(self) -> None:
        try:
            for info in self._infos:
                self._zc.register_service(info, allow_name_change=True)
            self.registered.set()
        except Exception as e:   # a name clash it could not solve, the network gone: the daemon plays on
            self.error = f"{type(e).__name__}: {e}"

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._zc is not None:
            try:
                if self.registered.is_set():
                    self._zc.unregister_all_services()
            finally:
                self._zc.close()
                self._zc = None
