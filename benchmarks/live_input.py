"""Live input (``serve --input``): input-to-output latency and CPU per block.

1. Offline, per block (one mel frame, 512 samples at 44.1 kHz = 11.6 ms), for each bundle: the CPU time
   of the live encoder (streaming mel + causal encoder, fed 256-sample device blocks) and of the rest of
   the block (blend, decoder, vocoder, gate), one torch thread; and the path's latency in theory (the
   mel window's look-ahead + the vocoder's delay + a frame of granularity).
2. Live, through a JACK dummy server (48 kHz, 256-frame periods): the daemon runs with ``--input``; a
   JACK client plays bursts of the bundled samples into its input port and records its output in the
   same process cycle. With ``/sono/input/wet 0`` the output is the input, delayed: each burst's
   onset's lag is one latency measurement (p50/p99); then wet, the model's output. CPU per block is
   the daemon's CPU time over the blocks it rendered while the input played.

    python -m benchmarks.live_input [--checkpoints checkpoints/default checkpoints/long-window] [--seconds 8]

Prints a table and writes benchmarks/results/live_input.json.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sonolatent.jackserver import JackServer

from .common import RESULTS, ROOT, cpu_seconds, percentile_row, write_result

RATE = 48000
PERIOD = 256


def bursts(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """The bundled samples cut into 0.1-0.3 s bursts at irregular onsets, silence between."""
    from sonolatent.audio.io import read_audio

    names = sorted((ROOT / "patches" / "samples").glob("*.wav"))
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), np.float32)
    t = 0.2
    while t < seconds - 0.6:
        x, _ = read_audio(names[int(rng.integers(len(names)))], rate)
        x = x[: int(rng.uniform(0.1, 0.3) * rate)]
        i = int(t * rate)
        out[i:i + len(x)] = 0.5 * x / max(np.abs(x).max(), 1e-6)
        t += len(x) / rate + rng.uniform(0.15, 0.35)
    return out


def offline(checkpoint: str, seconds: float) -> dict:
    import torch

    from sonolatent.engine.core import EngineCore
    from sonolatent.models import load_bundle
    from sonolatent.models.encoder import LiveEncoder
    from sonolatent.models.synth import StreamingSynth

    torch.set_num_threads(1)
    bundle = load_bundle(checkpoint)
    core = EngineCore(StreamingSynth(bundle), bundle.sample_rate, live_input=LiveEncoder(bundle))
    core.apply([("/sono/input/slot", (0,)), ("/sono/play", (1.0,))])
    x = bursts(seconds, bundle.sample_rate)
    enc, rest = [], []
    for i in range(0, len(x), PERIOD):
        t0 = time.perf_counter()
        n = core.feed_input(x[i:i + PERIOD])
        t1 = time.perf_counter()
        if n:
            enc.append(t1 - t0)
        for _ in range(n):
            t2 = time.perf_counter()
            core.render_block()
            rest.append(time.perf_counter() - t2)
    frame_ms = 1e3 * core.hop / core.model_rate
    path = core.live_delay + core.hop
    e, r = 1e3 * np.array(enc), 1e3 * np.array(rest)
    return {"checkpoint": checkpoint, "blocks": len(r), "frame_ms": round(frame_ms, 2),
            "encoder_ms_mean": round(float(e.mean()), 3), "encoder_ms_p99": round(float(np.percentile(e, 99)), 3),
            "block_ms_mean": round(float(r.mean()), 3), "block_ms_p99": round(float(np.percentile(r, 99)), 3),
            "cpu_share_of_a_block": round(float((e.sum() + r.sum()) / (len(r) * frame_ms)), 3),
            "path_samples": int(path), "path_ms": round(1e3 * path / core.model_rate, 1),
            "mel_lookahead_ms": round(1e3 * (core.live.delay + core.hop) / core.model_rate, 1),
            "synth_delay_ms": round(1e3 * core.synth.delay / core.model_rate, 1)}


def envelope(y, hop=64):
    n = len(y) // hop
    return np.sqrt(np.mean(np.square(y[:n * hop].reshape(n, hop), dtype=np.float64), 1))


def onset_lags(played, got, hop=64) -> np.ndarray:
    """Samples from each onset of ``played`` to the first sound in ``got`` after it."""
    ep, eg = envelope(played, hop) > 1e-3, envelope(got, hop) > 1e-3
    starts = np.flatnonzero(np.diff(np.concatenate([[0], ep.astype(int)])) == 1)
    lags = []
    for a in starts:
        hits = np.flatnonzero(eg[a:])
        if len(hits):
            lags.append(hits[0] * hop)
    return np.array(lags, float)


def live(checkpoint: str, seconds: float, buffer_ms: float, jack_realtime: bool = False) -> dict:
    from pythonosc.osc_message import OscMessage

    from sonolatent.control.server import encode
    from sonolatent.jackserver import JackFeeder

    def ask(sock, osc, address):
        sock.sendto(encode(address), osc)
        m = OscMessage(sock.recvfrom(65536)[0])
        return dict(zip(m.params[::2], m.params[1::2]))

    x = bursts(seconds, RATE, seed=1)
    with JackServer(RATE, PERIOD, prefix="sl-bench-input", realtime=jack_realtime) as srv:
        dev = srv.device()
        cmd = [sys.executable, "-m", "sonolatent", "serve", "--checkpoint", checkpoint, "--device", str(dev),
               "--input", str(dev), "--port", "0", "--oscquery-port", "-1", "--buffer-ms", str(buffer_ms),
               "--duration", str(4 * seconds + 60)]
        daemon = subprocess.Popen(cmd, env=srv.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        feeder = None
        try:
            for line in daemon.stdout:
                m = re.search(r"OSC on udp 127\.0\.0\.1:(\d+)", line)
                if m:
                    break
            else:
                raise RuntimeError("the daemon did not start")
            osc = ("127.0.0.1", int(m.group(1)))
            srv.wait_port("PortAudio:out_0")
            reported = ask(sock, osc, "/sono/info")["input_latency_samples"]
            feeder = JackFeeder(srv.name, x, RATE, 2 * seconds + 6)
            feeder.client.activate()
            feeder.patch_into("PortAudio")
            time.sleep(2.0)
            sock.sendto(encode("/sono/input/wet", (0.0,)), osc)
            time.sleep(0.2)
            s0, c0 = ask(sock, osc, "/sono/status"), cpu_seconds(daemon.pid)
            feeder.go.set()
            time.sleep(seconds + 0.5)
            dry = feeder.take()
            s1, c1 = ask(sock, osc, "/sono/status"), cpu_seconds(daemon.pid)
            sock.sendto(encode("/sono/input/wet", (1.0,)), osc)
            sock.sendto(encode("/sono/quit"), osc)
            daemon.wait(60)
        finally:
            sock.close()
            if feeder is not None:
                feeder.close()
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
    lags = onset_lags(x, dry)
    blocks = s1["blocks"] - s0["blocks"]
    return {"checkpoint": checkpoint, "rate": RATE, "period": PERIOD, "buffer_ms": buffer_ms,
            "reported_ms": round(1e3 * reported / RATE, 1),
            "latency": percentile_row(1e3 * lags / RATE),
            "cpu_ms_per_block": round(1e3 * (c1 - c0) / max(blocks, 1), 2),
            "render_ms_mean": s1["render_ms_mean"], "underflows": s1["underflows"] - s0["underflows"],
            "ring_underruns": s1["ring_underruns"] - s0["ring_underruns"],
            "input_skipped": s1["input_skipped"] - s0["input_skipped"], "blocks": blocks,
            "load_average": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", nargs="+", default=["checkpoints/default", "checkpoints/long-window"])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--buffer-ms", type=float, default=4.0,
                    help="serve --buffer-ms (with --input the margin stays where it starts; default 4, auto's start)")
    ap.add_argument("--jack-realtime", action="store_true",
                    help="run the JACK dummy server real-time (jackd -R, as a user's would; needs rtprio)")
    ap.add_argument("--no-jack", action="store_true", help="only the offline part")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows_off = [offline(str(ROOT / c) if not Path(c).is_absolute() else c, a.seconds) for c in a.checkpoints]
    print(f"{'bundle':28} {'encoder ms':>11} {'block ms':>9} {'p99':>6} {'share':>6} {'path ms':>8}")
    for r in rows_off:
        print(f"{Path(r['checkpoint']).name:28} {r['encoder_ms_mean']:11.3f} {r['block_ms_mean']:9.3f} "
              f"{r['block_ms_p99']:6.2f} {r['cpu_share_of_a_block']:6.2f} {r['path_ms']:8.1f}")
    rows_live = []
    if not a.no_jack:
        for c in a.checkpoints:
            r = live(str(ROOT / c) if not Path(c).is_absolute() else c, a.seconds, a.buffer_ms, a.jack_realtime)
            rows_live.append(r)
        print(f"\n{'bundle':28} {'reported':>9} {'p50':>7} {'p99':>7} {'cpu/block':>10} {'underflows':>10} {'load':>5}")
        for r in rows_live:
            print(f"{Path(r['checkpoint']).name:28} {r['reported_ms']:9.1f} {r['latency']['p50_ms']:7.1f} "
                  f"{r['latency']['p99_ms']:7.1f} {r['cpu_ms_per_block']:10.2f} {r['underflows']:10d} "
                  f"{r['load_average']:5.1f}")
    write_result(RESULTS / "live_input.json", {"offline": rows_off, "live": rows_live,
                                                "command": "python -m benchmarks.live_input " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
