"""The daemon playing under an OSC flood: underflows and CPU use.

``sonolatent serve`` plays through a JACK dummy server (48 kHz, 256-sample
periods) for a quiet baseline (--baseline seconds) and then under a flood of
--rate OSC messages per second (default 2000 for 60 s: morph, xy, latent
offsets and scales, gain, transpose, some queries) from another process. Reports
the daemon's CPU use in each phase (from /proc), the engine's underflow
counters, render times and the OSC server's counters; writes
benchmarks/results/osc_flood.json.

    python -m benchmarks.osc_flood [--checkpoint DIR] [--seconds 60] [--rate 2000]
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import subprocess
import sys
import threading
import time

from benchmarks.common import RESULTS, ROOT, cpu_seconds, model_folder, wait_until, write_result
from sonolatent.jackserver import JackServer



def status(sock, addr) -> dict:
    from sonolatent.control.wire import encode, parse_message

    for _ in range(3):   # UDP: a query (or its answer) sent into the tail of a flood may be lost; ask again
        sock.sendto(encode("/sono/status"), addr)
        end = time.monotonic() + 5
        try:
            while time.monotonic() < end:
                m = parse_message(sock.recvfrom(65536)[0])
                if m.address == "/sono/status":
                    return dict(zip(m.params[::2], m.params[1::2]))
        except TimeoutError:
            continue
    raise RuntimeError("no /sono/status answer to three queries")


def messages(latent_dim: int):
    from sonolatent.control.server import encode

    rng = random.Random(0)
    while True:
        k = rng.random()
        if k < 0.3:
            yield encode("/sono/morph", (rng.random(),))
        elif k < 0.55:
            yield encode("/sono/xy", (rng.random(), rng.random()))
        elif k < 0.8:
            yield encode(f"/sono/latent/{rng.randrange(latent_dim)}", (rng.uniform(-2, 2),))
        elif k < 0.9:
            yield encode(f"/sono/latent/{rng.randrange(latent_dim)}/scale", (rng.uniform(0.5, 1.5),))
        elif k < 0.95:
            yield encode("/sono/gain", (rng.uniform(0.5, 0.9),))
        elif k < 0.99:
            yield encode("/sono/transpose", (rng.uniform(-2, 2),))
        else:
            yield encode("/sono/morph")   # a query


def flood(sock, addr, rate: float, seconds: float, latent_dim: int) -> int:
    gen = messages(latent_dim)
    sent = 0
    t0 = time.perf_counter()
    tick = 0.005
    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            return sent
        due = int(now * rate) - sent
        for _ in range(max(0, due)):
            sock.sendto(next(gen), addr)
            sent += 1
        time.sleep(tick)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="model bundle (default: checkpoints/default, else random full-size)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--baseline", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="messages per second")
    ap.add_argument("--out", default=str(RESULTS / "osc_flood.json"))
    args = ap.parse_args(argv)
    folder, what = model_folder(args.checkpoint)
    from sonolatent.models.checkpoint import read_config

    latent_dim = read_config(folder / "vae")["model"]["latent_dim"]
    samples = ROOT / "patches" / "samples"
    names = sorted(p.stem for p in samples.glob("*.wav"))[:4] if samples.is_dir() else []
    with JackServer(48000, 256) as jack:
        cmd = [sys.executable, "-m", "sonolatent", "serve", "--checkpoint", str(folder), "--device", str(jack.device()),
               "--port", "0", "--oscquery-port", "-1", "--osc-rate", "0", "--samples", str(samples)]
        daemon = subprocess.Popen(cmd, env=jack.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: [lines.append(x.rstrip()) for x in daemon.stdout], daemon=True).start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        try:
            if not wait_until(lambda: any("OSC on udp" in x for x in lines), 120):
                raise RuntimeError(f"serve did not start: {lines}")
            port = int(re.search(r"OSC on udp [\d.]+:(\d+)", " ".join(lines)).group(1))
            addr = ("127.0.0.1", port)
            from sonolatent.control.server import encode

            for k, n in enumerate(names):
                sock.sendto(encode(f"/sono/slot/{k}/load", (n,)), addr)
            if not names:
                sock.sendto(encode("/sono/free", (1,)), addr)
            time.sleep(2.0)
            sock.sendto(encode("/sono/play", (1.0,)), addr)
            time.sleep(0.5)
            phases = {}
            for phase, seconds, rate in (("baseline", args.baseline, 0.0), ("flood", args.seconds, args.rate)):
                s0, c0, t0 = status(sock, addr), cpu_seconds(daemon.pid), time.monotonic()
                sent = flood(sock, addr, rate, seconds, latent_dim) if rate else (time.sleep(seconds) or 0)
                time.sleep(0.3)
                c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
                s1 = status(sock, addr)
                phases[phase] = {
                    "seconds": round(t1 - t0, 2), "sent": sent, "rate_sent": round(sent / (t1 - t0), 1),
                    "cpu_percent_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 1),
                    "underflows": s1["underflows"] - s0["underflows"],
                    "ring_underruns": s1["ring_underruns"] - s0["ring_underruns"],
                    "osc_received": s1["osc_received"] - s0["osc_received"],
                    "osc_applied": s1["osc_applied"] - s0["osc_applied"],
                    "osc_dropped": sum(s1[k] - s0[k] for k in s1 if k.startswith("osc_dropped")),
                    "changes_applied": s1["changes_applied"] - s0["changes_applied"],
                    "blocks": s1["blocks"] - s0["blocks"],
                    "render_ms_mean_total": s1["render_ms_mean"], "render_ms_max_total": s1["render_ms_max"],
                    "buffer_depth_min": s1["buffer_depth_min"],
                }
            sock.sendto(encode("/sono/quit"), addr)
            rc = daemon.wait(60)
        finally:
            sock.close()
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
    print(f"model: {what}; JACK dummy 48 kHz / 256; slots: {names or 'free mode'}; daemon exit {rc}")
    print(f"{'phase':>9} {'s':>6} {'msg/s':>7} {'received':>9} {'dropped':>8} {'CPU %':>6} {'underflows':>10} "
          f"{'ring underruns':>14}")
    for name, p in phases.items():
        print(f"{name:>9} {p['seconds']:>6.1f} {p['rate_sent']:>7.0f} {p['osc_received']:>9} {p['osc_dropped']:>8} "
              f"{p['cpu_percent_of_one_core']:>6.1f} {p['underflows']:>10} {p['ring_underruns']:>14}")
    write_result(args.out, {"benchmark": "osc_flood", "model": what, "rate": args.rate, "phases": phases,
                            "exit_status": rc, "daemon_last_line": lines[-1] if lines else ""})
    return 0


if __name__ == "__main__":
    sys.exit(main())
