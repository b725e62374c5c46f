"""Control latency of the daemon: an OSC packet's arrival -> the first output sample that reflects it.

For each device block size (64, 128, 256, 512 samples at 48 kHz) a JACK dummy
server runs with that period and the engine plays through PortAudio's JACK
device, with the real OSC server in front of it. A client sends packets at
random moments (10-30 ms apart): ``/sono/gain`` changes, or with ``--notes``
``/sono/note/on`` and ``/sono/note/off`` of a four-note cycle (key to sound,
as BRAVE measures it); for each, the time from the ``sendto`` to the moment
the callback handed JACK the first sample it affects (``Engine.control_latencies``
plus the UDP/parse time): for a note, the sample its envelope starts at (a note
arriving while a frame is being committed starts at the first sample not yet
handed on); for a gain change, the first sample of the next frame. With
``--notes`` note-ons and note-offs are listed apart. JACK's own output latency
(one period with the dummy driver) is listed apart too. Prints a table and
writes benchmarks/results/control_latency.json.

    python -m benchmarks.control_latency [--checkpoint DIR] [--blocks 64 128 256 512] [--n 300] [--notes]
        [--buffer-ms MS] [--resampler lq|hq]

Jitter is p99 - p50.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time

from benchmarks.common import RESULTS, ROOT, fmt_buffer, model_folder, percentile_row, write_result
from sonolatent.cli.serve import buffer_ms_arg
from sonolatent.engine.core import DEFAULT_RESAMPLER
from sonolatent.engine.runtime import DEFAULT_BUFFER_MS, DEFAULT_RT_PRIORITY
from sonolatent.jackserver import JackServer



def worker(args) -> dict:
    """One block size, in a process whose JACK_DEFAULT_SERVER is the server to use."""
    import socket

    import numpy as np
    import torch

    from sonolatent.control.server import encode
    from sonolatent.control.surface import ControlSurface
    from sonolatent.engine.runtime import Engine
    from sonolatent.models import load_bundle
    from sonolatent.models.synth import StreamingSynth

    torch.set_num_threads(1)
    sys.setswitchinterval(0.0002)
    bundle = load_bundle(args.model)
    engine = Engine(StreamingSynth(bundle), samples_dir=".", mode="device", device=args.device, block_size=args.block_size,
                    safety_ms=args.buffer_ms, resampler=args.resampler, rt_priority=args.rt_priority)
    D = bundle.vae.latent_dim
    engine.preload(None, [("/sono/free", (1,)), ("/sono/latent", tuple([0.5] * D)), ("/sono/attack", (0.001,)),
                          ("/sono/play", (1.0,))])
    surface = ControlSurface(engine, "127.0.0.1", 0, oscquery_port=-1, rate=0).start()
    engine.start()
    time.sleep(1.0)
    u0 = engine.underflows    # stream start may be flagged (JACK graph changes); count from here
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(args.block_size)
    sent = []
    for i in range(args.n):
        if args.notes:   # a note on, then its note off: every packet starts or ends a voice
            pitch = float(48 + 5 * ((i // 2) % 4))
            data = encode("/sono/note/on", (pitch, 0.8)) if i % 2 == 0 else encode("/sono/note/off", (pitch,))
        else:
            data = encode("/sono/gain", (0.3 + 0.5 * (i % 2),))
        sent.append(time.perf_counter())
        sock.sendto(data, surface.osc.address)
        time.sleep(rng.uniform(0.010, 0.030))
    time.sleep(0.5)
    engine.request_quit()
    engine.wait(30)
    surface.stop()
    engine.close()
    lat = engine.control_latencies()
    arrivals = np.array([a for a, _ in engine.probes])
    assert len(arrivals) == len(sent), f"{len(arrivals)} submits for {len(sent)} packets"
    total = lat + (arrivals - np.array(sent))
    st = engine.status()
    gaps = engine.callback_intervals()[-int(len(sent) * 0.02 * engine.device_rate / args.block_size):]
    period = args.block_size / engine.device_rate
    row = percentile_row(1e3 * total)
    parts = {}
    if args.notes:   # packets alternate note-on, note-off
        for name, sel in (("note_on", slice(0, None, 2)), ("note_off", slice(1, None, 2))):
            r = percentile_row(1e3 * total[sel])
            parts[name] = {**r, "jitter_ms": round(r["p99_ms"] - r["p50_ms"], 2)}
    return {"block_size": args.block_size, "device_rate": engine.device_rate, "rt_priority": st["rt_priority"],
            "jitter_ms": round(row["p99_ms"] - row["p50_ms"], 2),
            "buffer_target_samples": engine.target, "delays": engine.delays(),
            "device_latency_ms": round(1e3 * float(engine.stream.latency), 2),
            **percentile_row(1e3 * total), **parts,
            "engine_only": percentile_row(1e3 * lat),
            "underflows": st["underflows"] - u0, "ring_underruns": st["ring_underruns"],
            "render_ms_mean": st["render_ms_mean"], "render_ms_max": st["render_ms_max"],
            "callback_interval_max_ms": round(1e3 * float(gaps.max()), 2),
            "callbacks_late": int(np.sum(gaps > 1.5 * period)), "callbacks": int(len(gaps))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="model bundle (default: checkpoints/default, else random full-size)")
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--notes", action="store_true", help="send note-on/note-off (key to sound), not gain changes")
    ap.add_argument("--n", type=int, default=300, help="packets per block size")
    ap.add_argument("--buffer-ms", type=buffer_ms_arg, default=DEFAULT_BUFFER_MS, metavar="MS|auto",
                    help="the engine's safety margin (serve --buffer-ms; default: auto)")
    ap.add_argument("--resampler", default=DEFAULT_RESAMPLER, choices=("lq", "hq"), help="serve --resampler")
    ap.add_argument("--rt-priority", type=int, default=DEFAULT_RT_PRIORITY,
                    help="the engine's real-time priority (serve --rt-priority; 0: normal scheduling)")
    ap.add_argument("--jack-realtime", action="store_true",
                    help="run the JACK dummy server real-time (jackd -R, as a user's would; needs rtprio)")
    ap.add_argument("--out", help="JSON written (default: benchmarks/results/control_latency.json, "
                                  "control_latency_notes.json with --notes)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--device", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--block-size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    folder, what = model_folder(args.checkpoint)
    rows = []
    for bs in args.blocks:
        with JackServer(48000, bs, realtime=args.jack_realtime) as jack:
            cmd = [sys.executable, "-m", "benchmarks.control_latency", "--worker", "--model", str(folder), "--device", str(jack.device()),
                   "--block-size", str(bs), "--n", str(args.n), "--buffer-ms", fmt_buffer(args.buffer_ms),
                   "--resampler", args.resampler, "--rt-priority", str(args.rt_priority)] + \
                (["--notes"] if args.notes else [])
            r = subprocess.run(cmd, env=jack.env, cwd=ROOT, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"model: {what}; JACK dummy at 48 kHz, period = block size; latency from sendto() to the first "
          "affected sample handed to JACK (+ JACK's output latency, listed apart)")
    print(f"--buffer-ms {fmt_buffer(args.buffer_ms)}, --resampler {args.resampler}, --rt-priority {args.rt_priority} "
          f"(granted: {rows[0].get('rt_priority', '?')}), JACK {'real-time (-R)' if args.jack_realtime else '--no-realtime'}")
    print(f"{'block':>6} {'what':>9} {'ring target':>11} {'p50 ms':>7} {'p99 ms':>7} {'jitter':>7} {'max ms':>7} "
          f"{'+jack ms':>8} {'n':>4} {'underflows':>10} {'render ms mean/max':>19}")
    for r in rows:
        for kind, x in ((("note-on", r["note_on"]), ("note-off", r["note_off"])) if args.notes else (("gain", r),)):
            jitter = x["p99_ms"] - x["p50_ms"]
            print(f"{r['block_size']:>6} {kind:>9} {r['buffer_target_samples']:>11} {x['p50_ms']:>7.1f} "
                  f"{x['p99_ms']:>7.1f} {jitter:>7.1f} {x['max_ms']:>7.1f} {r['device_latency_ms']:>8.1f} {x['n']:>4} "
                  f"{r['underflows'] + r['ring_underruns']:>10} {r['render_ms_mean']:>8.2f}/{r['render_ms_max']:<8.2f}")
    out = args.out or str(RESULTS / ("control_latency_notes.json" if args.notes else "control_latency.json"))
    write_result(out, {"benchmark": "control_latency", "model": what, "buffer_ms": args.buffer_ms,
                            "rt_priority": args.rt_priority, "jack_realtime": args.jack_realtime,
                            "resampler": args.resampler,
                            "message": "/sono/note/on|off" if args.notes else "/sono/gain",
                            "budget": "note-on p99 <= 15 ms, jitter (p99 - p50) <= 3 ms at 256-sample blocks, 48 kHz",
                            "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
