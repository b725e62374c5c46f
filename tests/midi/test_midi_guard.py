"""The bridge's control port on the guarded wire: learn only known addresses, a .bak of the old mapping."""

import socket

import mido
import pytest

from sonolatent.control.wire import encode, parse_message
from sonolatent.errors import ConfigError
from sonolatent.midi.bridge import Bridge, BridgeOptions
from sonolatent.midi.learn import known_address, learn_range, save_learned
from sonolatent.midi.mapping import CCMap, Mapping, load_mapping, save_mapping


def test_learn_takes_only_addresses_the_daemon_knows():
    for ok in ("/sono/gain", "/sono/latent/63", "/sono/latent/0/norm", "/sono/latent/5/scale", "/sono/xy/x"):
        assert known_address(ok)
        learn_range(ok)
    for bad in ("/sono/nothing", "/sono/latent/64", "/sono/gain/extra", "/other/app"):
        assert not known_address(bad)
        with pytest.raises(ConfigError, match="not an address of the daemon"):
            learn_range(bad)


def test_save_learned_keeps_a_backup_of_the_previous_file(tmp_path):
    path = tmp_path / "map.toml"
    assert save_learned(Mapping(cc=(CCMap(cc=1, address="/sono/morph"),)), path) is None
    first = path.read_text()
    backup = save_learned(Mapping(cc=(CCMap(cc=2, address="/sono/gain"),)), path)
    assert backup == tmp_path / "map.toml.bak" and backup.read_text() == first
    assert [c.address for c in load_mapping(path).cc] == ["/sono/gain"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.toml", "map.toml.bak"]   # no temporary left


def test_learn_over_the_control_port_refuses_unknown_addresses_and_writes_nothing(tmp_path):
    path = tmp_path / "map.toml"
    save_mapping(Mapping(cc=(CCMap(cc=1, address="/sono/morph"),)), path)
    before = path.read_bytes()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    logs = []
    bridge = Bridge(load_mapping(path), BridgeOptions(mapping_path=path, destinations=[sink.getsockname()],
                                                      control=("127.0.0.1", 0), log=logs.append))
    asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asker.bind(("127.0.0.1", 0))
    asker.settimeout(2.0)
    try:
        bridge.control.start()
        port = (bridge.control.host, bridge.control.port)
        asker.sendto(encode("/sono/midi/learn", ("/sono/evil",)), port)
        bridge._drain(timeout=2.0)
        m = parse_message(asker.recvfrom(65536)[0])
        assert m.address == "/sono/midi/error" and "not an address of the daemon" in m.params[0]
        bridge.handle_message(mido.Message("control_change", control=7, value=10))
        assert path.read_bytes() == before and not (tmp_path / "map.toml.bak").exists()
        asker.sendto(encode("/sono/midi/learn", ("/sono/gain",)), port)
        bridge._drain(timeout=2.0)
        assert parse_message(asker.recvfrom(65536)[0]).address == "/sono/midi/learn/armed"
        bridge.handle_message(mido.Message("control_change", control=7, value=10))
        m = parse_message(asker.recvfrom(65536)[0])
        assert m.address == "/sono/midi/learned" and m.params[0] == "/sono/gain"
        assert (tmp_path / "map.toml.bak").read_bytes() == before
        assert any(c.cc == 7 and c.address == "/sono/gain" for c in load_mapping(path).cc)
    finally:
        bridge.control.close()
        bridge.sender.close()
        asker.close()
        sink.close()
