"""MIDI file playback timing: how close ``sonolatent bridge --midi-file`` sends each event to its time.

A MIDI file of ``--n`` mod-wheel events at irregular times (with a tempo change
half-way) is played by the bridge as a process, to a UDP socket in this one;
each packet's arrival, measured from the first, is compared with the file's
event time. Prints a table (error percentiles in ms) and writes
benchmarks/results/midi_timing.json. A real-time figure: it depends on the
machine's load, which is why it lives here and not in the tests.

    python -m benchmarks.midi_timing [--n 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MAP = REPO / "patches" / "midi" / "modwheel_morph.toml"


def write_song(path: Path, times: list[float]) -> None:
    import mido

    tpb, tempo = 480, 500000
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    now, changed = 0.0, False
    for i, t in enumerate(times):
        if not changed and t > times[-1] / 2:          # a tempo change: ticks change meaning, seconds must not
            ticks = round(mido.second2tick(times[-1] / 2 - now, tpb, tempo))
            track.append(mido.MetaMessage("set_tempo", tempo=300000, time=ticks))
            now += mido.tick2second(ticks, tpb, tempo)
            tempo, changed = 300000, True
        ticks = round(mido.second2tick(t - now, tpb, tempo))
        track.append(mido.Message("control_change", control=1, value=i % 128, time=ticks))
        now += mido.tick2second(ticks, tpb, tempo)
    mid.save(path)


def file_times(path: Path) -> list[float]:
    import mido

    acc, out = 0.0, []
    for msg in mido.MidiFile(path):
        acc += msg.time
        if not msg.is_meta:
            out.append(acc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="events in the file (default: 200)")
    args = ap.parse_args()
    rng = random.Random(7)
    times, t = [], 0.0
    for _ in range(args.n):
        times.append(round(t, 4))
        t += rng.uniform(0.005, 0.04)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(10.0)
    with tempfile.TemporaryDirectory() as d:
        song = Path(d) / "song.mid"
        write_song(song, times)
        expected = np.array(file_times(song))
        proc = subprocess.Popen([sys.executable, "-m", "sonolatent", "bridge", "--map", str(MAP), "--midi-file",
                                 str(song), "--to", f"127.0.0.1:{rx.getsockname()[1]}"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        arrivals = []
        try:
            while len(arrivals) < len(expected):
                data = rx.recv(65536)
                if b"/sono/morph" in data:
                    arrivals.append(time.perf_counter())
        finally:
            proc.wait(60)
            rx.close()
    arr = np.array(arrivals) - arrivals[0]
    err_ms = 1e3 * (arr - (expected - expected[0]))
    row = {"events": len(err_ms), "median_ms": round(float(np.median(err_ms)), 3),
           "p95_abs_ms": round(float(np.percentile(np.abs(err_ms), 95)), 3),
           "max_abs_ms": round(float(np.abs(err_ms).max()), 3), "load_1min": round(os.getloadavg()[0], 2)}
    print("  ".join(f"{k:>11}" for k in row))
    print("  ".join(f"{v:>11}" for v in row.values()))
    doc = {"benchmark": "midi_timing", **row, "machine": {"cpu": platform.processor(), "cores": os.cpu_count(),
                                                          "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "midi_timing.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
