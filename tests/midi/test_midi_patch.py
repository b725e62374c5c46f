"""``sonolatent bridge --patch patches/NAME.toml``: the patch's [midi] map, checked errors, no torch."""

import subprocess

import mido
import pytest

from .conftest import PYTHON, REPO, UdpReceiver, run_bridge
from .test_midi_cli import write_midi


@pytest.mark.parametrize("patch, cc, address", [("morph_modwheel", 1, "/sono/morph"), ("xy_pad", 16, "/sono/xy/x"),
                                                ("drone_knobs", 21, "/sono/latent/0")])
def test_patch_plays_through_its_mapping(tmp_path, patch, cc, address):
    song = tmp_path / "s.mid"
    write_midi(song, [(0.0, mido.Message("control_change", control=cc, value=127))])
    rx = UdpReceiver()
    try:
        out = run_bridge("--patch", str(REPO / "patches" / f"{patch}.toml"), "--midi-file", str(song), "--freewheel",
                         "--to", f"127.0.0.1:{rx.port}")
        assert out.returncode == 0, out.stderr
        got = rx.wait_for(1)
    finally:
        rx.close()
    assert [(a, v) for _, a, v in got][:1] == [(address, (3.0,) if "latent" in address else (1.0,))]


def test_patch_mistakes_are_one_line_errors(tmp_path):
    plain = tmp_path / "plain.toml"
    plain.write_text('[slots]\n0 = "piano_c4"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[patch]\nname = "x"\n\n[midi]\nmap = "midi/none.toml"\n')
    cases = [(["--patch", str(plain)], f"{plain}: the patch names no mapping"),
             (["--patch", str(bad)], f"{bad}:5: [midi] key 'map': mapping file"),
             (["--patch", str(REPO / "patches" / "demo.toml"), "--map", "x.toml"], "--map and --patch"),
             (["--patch", str(tmp_path / "missing.toml")], "missing.toml: patch file not found")]
    for args, message in cases:
        out = run_bridge(*args, "--midi-file", "x.mid")
        assert out.returncode == 2 and out.stderr.startswith("sonolatent: error: ") and message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_reading_a_patch_for_its_mapping_never_imports_torch():
    code = ("import sys\nfrom sonolatent.cli.bridge import patch_mapping\n"
            f"print(patch_mapping({str(REPO / 'patches' / 'xy_pad.toml')!r}).name, 'torch' in sys.modules)")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["xy_pad.toml", "False"], out.stderr
