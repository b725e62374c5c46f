"""docs/osc.md's address table is generated from the namespace and must stay in sync."""

import subprocess
import sys
from pathlib import Path

from sonolatent.params.namespace import build_namespace
from sonolatent.control.surface import ControlSurface
from sonolatent.control.target import RecordingTarget

ROOT = Path(__file__).resolve().parents[2]


def test_osc_table_in_sync():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "osc_table.py"), "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in ("docs/osc.md",):
        doc = (ROOT / name).read_text()
        for a in build_namespace(1, 1):
            shown = a.replace("/latent/0", "/latent/K").replace("/slot/0", "/slot/S")
            assert f"`{shown}`" in doc, (name, shown)


def test_describe_warns_when_listening_wide_with_loopback_allowlist():
    s = ControlSurface(RecordingTarget(), "0.0.0.0", 0, oscquery_port=-1).start()
    try:
        assert "--allow" in s.describe()
    finally:
        s.stop()
    s = ControlSurface(RecordingTarget(), "127.0.0.1", 0, oscquery_port=-1).start()
    try:
        assert "--allow" not in s.describe()
    finally:
        s.stop()
