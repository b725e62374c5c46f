"""Zeroconf: ``--advertise`` announces OSCQuery and OSC; a real zeroconf ServiceBrowser finds both."""

import threading

from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

from sonolatent.control.discovery import OSC_TYPE, OSCQUERY_TYPE, advertised_addresses
from sonolatent.control.surface import ControlSurface
from sonolatent.control.target import RecordingTarget


def test_advertised_services_are_found_by_a_browser():
    s = ControlSurface(RecordingTarget(), "127.0.0.1", 0, advertise=True).start()
    zc = Zeroconf()
    found: dict = {}
    seen = threading.Event()

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added and name.startswith("sonolatent on "):
            info = zeroconf.get_service_info(service_type, name, timeout=3000)
            if info is not None:
                found[service_type] = info
                if len(found) == 2:
                    seen.set()

    browsers = [ServiceBrowser(zc, t, handlers=[on_change]) for t in (OSCQUERY_TYPE, OSC_TYPE)]
    try:
        assert seen.wait(15), found
        q, o = found[OSCQUERY_TYPE], found[OSC_TYPE]
        assert q.port == s.http.port and o.port == s.osc.port
        assert q.parsed_addresses() == ["127.0.0.1"] and o.parsed_addresses() == ["127.0.0.1"]
        assert q.properties[b"osc_port"] == str(s.osc.port).encode()
        assert "advertised as 'sonolatent on" in s.describe()
    finally:
        for b in browsers:
            b.cancel()
        zc.close()
        s.stop()


def test_advertising_is_off_on_loopback_and_on_beyond_it_unless_asked():
    s = ControlSurface(RecordingTarget(), "127.0.0.1", 0, oscquery_port=-1, advertise=None).start()
    try:
        assert s.advertiser is None
    finally:
        s.stop()
    s = ControlSurface(RecordingTarget(), "0.0.0.0", 0, oscquery_port=-1, advertise=None).start()
    try:
        assert s.advertiser is not None and "127.0.0.1" not in s.advertiser.addresses
    finally:
        s.stop()
    assert advertised_addresses("192.0.2.7") == ["192.0.2.7"]
