import subprocess
import sys


def test_latent_package_does_not_import_torch():
    code = ("import sys, numpy as np, sonolatent.latent as L; "
            "L.blend([np.zeros((2, 3)), np.ones((2, 3))], np.ones((2, 3)), 'slerp'); "
            "L.parse_keyframes('0:0,1:1'); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
