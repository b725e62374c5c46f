"""The control surface never imports torch (nor numpy): importing and running it in a fresh interpreter."""

import subprocess
import sys

SCRIPT = r"""
import socket, sys
import sonolatent.control.server, sonolatent.control.oscquery, sonolatent.control.surface
from sonolatent.control.server import encode
from sonolatent.control.surface import ControlSurface
from sonolatent.control.target import RecordingTarget
from pythonosc.osc_message import OscMessage
import urllib.request

s = ControlSurface(RecordingTarget(), "127.0.0.1", 0, oscquery_port=0).start()
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(5)
c.sendto(encode("/sono/gain", (1.0,)), s.osc.address)
c.sendto(encode("/sono/gain"), s.osc.address)
reply = OscMessage(c.recvfrom(65536)[0])
body = urllib.request.urlopen(s.http.url + "sono/gain?VALUE", timeout=5).read()
s.stop()
print(reply.address, reply.params, body.decode())
print("heavy:", sorted(m for m in ("torch", "numpy", "librosa", "soundfile", "sounddevice") if m in sys.modules))
"""


def test_control_surface_runs_without_torch():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '/sono/gain [1.0] {"VALUE":[1.0]}' in r.stdout
    assert "heavy: []" in r.stdout, r.stdout


def test_dry_run_module_help_is_torch_free():
    r = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv=['x','--help']\n"
                        "try: runpy.run_module('sonolatent.control', run_name='__main__')\n"
                        "except SystemExit: pass\n"
                        "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--allow CIDR" in r.stdout and r.stdout.strip().endswith("False"), r.stdout + r.stderr
