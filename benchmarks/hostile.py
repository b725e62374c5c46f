"""The daemon under hostile OSC traffic (issue 16): does the sound go on, is control still answered?

Runs ``sonolatent serve --no-audio --patch patches/demo.toml --record take.wav``
(headless: the engine's own real-time clock pulls 256-sample blocks) and, one
after another:

- ``paced``: the hostile corpus (``sonolatent.control.fuzz``: valid messages,
  bundles, mutations, truncations, random bytes) at ``--rate`` packets/s
  (default 3000) from another process;
- ``full``: the same corpus as fast as one sender process can send;
- ``bombs``: the issue's bundle bombs (4000 ``/sono/*/*`` queries in 64 KB,
  2031 and 500 ``/sono/latent/[0-9]* f 0.1``, 40 bundles timed for the same
  instant), ``--bomb-rate`` of them per second;
- ``slowloris``: ``--slow-connections`` TCP connections (default 300) to the
  OSCQuery/HTTP port from 127.0.0.2 (so the per-address limit applies to
  them), each trickling one header byte a second and reopened as soon as the
  daemon closes it (the excess over the per-address limit at once, the rest
  at the header timeout).

During every phase a second local client (127.0.0.1) asks ``/sono/ping`` 50
times a second over UDP and ``GET /sono/gain?VALUE`` 10 times a second over
HTTP (an answer within 1 s counts; the latencies of the answers are kept).
Per phase it reports the packets sent (slowloris: header bytes trickled),
the second client's answered shares and answer latency p50/p99 for OSC and
HTTP, ring underruns, audio rendered against
wall time (blocks x frame), the CPU seconds and peak RSS of the daemon's
processes; at the end the take's length against the wall time from the
first to the last block. ``--in-process`` runs the control surface inside
the engine's process (as before issue 16) for comparison.

    python -m benchmarks.hostile [--seconds 30] [--rate 3000] [--packets N] [--buffer-ms MS] [--rt-priority N]
                                 [--in-process]

``--packets N`` sets the paced phase's length to N / rate seconds (the issue's
1,000,000 packets at 3000/s is ``--packets 1000000``: 333 s).
Writes ``benchmarks/results/hostile[_in_process].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TICK = os.sysconf("SC_CLK_TCK")


# -- the sender process -------------------------------------------------------------------------

def sender_main(host: str, port: int, rate: float, seconds: float, seed: int, kind: str) -> None:
    """Pre-build the packets, print 'ready', wait for a line on stdin, send, print the count."""
    if kind == "slowloris":
        slowloris_main(host, port, int(rate), seconds)
        return
    from sonolatent.control.fuzz import QUERY_BOMB, hostile_packets, pattern_change_bomb
    from sonolatent.control.wire import encode, encode_bundle

    if kind == "bombs":
        same = time.time() + 3600   # refreshed per burst below
        packets = [QUERY_BOMB, pattern_change_bomb(2031), pattern_change_bomb(500)]
    else:
        packets = list(hostile_packets(seed, 100_000))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setblocking(False)
    addr = (host, port)
    print("ready", flush=True)
    sys.stdin.readline()
    sent = dropped = 0
    n = len(packets)
    t0 = time.perf_counter()
    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            break
        if kind == "bombs":
            due = int(now * rate) - sent // 43
            if due <= 0:
                time.sleep(0.002)
                continue
            same = time.time() + 0.2
            burst = packets + [encode_bundle([encode("/sono/gain", (0.7,))], same) for _ in range(40)]
        elif rate > 0:
            due = int(now * rate) - sent
            if due <= 0:
                time.sleep(0.001)
                continue
            burst = [packets[(sent + k) % n] for k in range(min(due, 1000))]
        else:
            burst = [packets[(sent + k) % n] for k in range(256)]
        for p in burst:
            try:
                sock.sendto(p, addr)
            except (BlockingIOError, OSError):
                dropped += 1
            sent += 1
    print(json.dumps({"sent": sent, "send_failed": dropped}), flush=True)


def slowloris_main(host: str, port: int, n: int, seconds: float) -> None:
    """Keep ``n`` connections from 127.0.0.2 to ``host:port``, each sending one more byte of an endless
    request header every second, and reopen each as soon as the server has closed it. Prints 'ready',
    waits for a line on stdin, then prints what it did."""
    header = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-slow: " + b"s" * 100_000
    conns: list[socket.socket | None] = [None] * n
    pos = [0] * n
    sent = connects = connect_failed = closed_by_server = 0
    open_counts = []
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    rnd = 0
    while time.perf_counter() - t0 < seconds:
        held = 0
        for i in range(n):
            c = conns[i]
            if c is not None:
                try:
                    if c.recv(1) == b"":   # the server closed it
                        raise ConnectionResetError
                except BlockingIOError:
                    held += 1
                except OSError:
                    c.close()
                    conns[i] = c = None
                    closed_by_server += 1
            if c is None:
                try:
                    c = socket.create_connection((host, port), timeout=0.5, source_address=("127.0.0.2", 0))
                except OSError:
                    connect_failed += 1
                    continue
                c.setblocking(False)
                conns[i], pos[i] = c, 0
                connects += 1
            try:
                c.send(header[pos[i]:pos[i] + 1])
                pos[i] += 1
                sent += 1
            except BlockingIOError:
                pass
            except OSError:
                c.close()
                conns[i] = None
                closed_by_server += 1
        open_counts.append(held)
        rnd += 1
        time.sleep(max(0.0, t0 + rnd - time.perf_counter()))
    for c in conns:
        if c is not None:
            c.close()
    print(json.dumps({"sent": sent, "send_failed": connect_failed, "connects": connects,
                      "closed_by_server": closed_by_server,
                      "held_a_second_median": sorted(open_counts)[len(open_counts) // 2] if open_counts else 0}),
          flush=True)


# -- the measuring side -------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _cpu_rss(pids: list[int]) -> tuple[float, float]:
    cpu = rss = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            with open(f"/proc/{p}/status") as f:
                m = re.search(r"VmRSS:\s+(\d+)", f.read())
            rss += int(m.group(1)) / 1024 if m else 0.0
        except (OSError, ValueError, IndexError):
            pass
    return cpu, rss


class Prober:
    """A second local client: /sono/ping 50 times a second; an answer within 1 s counts."""

    def __init__(self, addr):
        from sonolatent.control.wire import encode

        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.02)
        self.ping = encode("/sono/ping", ())
        self.asked = self.answered = 0
        self._stop = threading.Event()
        self._pending: dict[int, float] = {}

    def status(self) -> dict:
        from sonolatent.control.wire import encode, parse_packet

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        try:
            for _ in range(10):
                s.sendto(encode("/sono/status", ()), self.addr)
                try:
                    while True:
                        msgs, _ = parse_packet(s.recvfrom(65536)[0])
                        if msgs and msgs[0].address == "/sono/status":
                            p = msgs[0].params
                            return dict(zip(p[::2], p[1::2]))
                except (TimeoutError, socket.timeout):
                    continue
        finally:
            s.close()
        raise RuntimeError("no /sono/status answer to ten queries")

    def run(self, seconds: float) -> tuple[int, int, list[float]]:
        """Ask for ``seconds``; returns (asked, answered within 1 s, the answers' latencies in ms)."""
        from sonolatent.control.wire import encode, parse_packet

        asked = answered = 0
        latencies: list[float] = []
        pending: dict[int, float] = {}
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        k = 0
        while True:
            now = time.monotonic()
            if now >= nxt and now < end:
                self.sock.sendto(encode("/sono/ping", (k,)), self.addr)
                pending[k] = now
                k += 1
                asked += 1
                nxt += 0.02
            try:
                msgs, _ = parse_packet(self.sock.recvfrom(65536)[0])
                if msgs and msgs[0].address == "/sono/pong" and msgs[0].params:
                    t = pending.pop(msgs[0].params[0], None)
                    if t is not None:
                        latencies.append(1e3 * (time.monotonic() - t))
                        answered += latencies[-1] <= 1e3
            except (TimeoutError, socket.timeout, ValueError):
                pass
            if now >= end + 1.0 or (now >= end and not pending):
                return asked, answered, latencies


class HttpProber:
    """The second client over HTTP: ``GET /sono/gain?VALUE`` 10 times a second from 127.0.0.1 on fresh
    connections; a 200 within 1 s counts."""

    def __init__(self, url: str):
        self.base, self.url = url, url + "sono/gain?VALUE"

    def run(self, seconds: float, out: dict) -> None:
        import urllib.request

        asked = answered = 0
        latencies: list[float] = []
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        while time.monotonic() < end:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += 0.1
            asked += 1
            t = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=5.0) as r:
                    r.read()
                    ok = r.status == 200
            except OSError:
                ok = False
            if ok:
                latencies.append(1e3 * (time.monotonic() - t))
                answered += latencies[-1] <= 1e3
        out.update(asked=asked, answered=answered, latencies=latencies)


def run_phase(name, addr, pids_fn, prober, rate, seconds, kind, seed=16, http=None) -> dict:
    host, port = addr
    if kind == "slowloris":
        from urllib.parse import urlsplit
        port = urlsplit(http.base).port
    snd = None
    if kind != "quiet":
        snd = subprocess.Popen([sys.executable, "-m", "benchmarks.hostile", "--send", host, str(port), str(rate),
                                str(seconds), str(seed), kind], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        assert snd.stdout.readline().strip() == "ready"
    st0 = prober.status()
    cpu0, _ = _cpu_rss(pids_fn())
    eng0, _ = _cpu_rss(pids_fn()[:1])
    t0 = time.monotonic()
    if snd is not None:
        snd.stdin.write("go\n")
        snd.stdin.flush()
    peak = [0.0]

    def watch():
        while time.monotonic() - t0 < seconds:
            peak[0] = max(peak[0], _cpu_rss(pids_fn())[1])
            time.sleep(0.5)
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    web: dict = {}
    hw = threading.Thread(target=http.run, args=(seconds, web), daemon=True) if http is not None else None
    if hw is not None:
        hw.start()
    asked, answered, lat = prober.run(seconds)
    if hw is not None:
        hw.join(timeout=30)
    sent = json.loads(snd.stdout.readline()) if snd is not None else {"sent": 0, "send_failed": 0}
    if snd is not None:
        snd.wait(timeout=30)
    wall = time.monotonic() - t0
    time.sleep(0.3)
    st1 = prober.status()
    cpu1, rss = _cpu_rss(pids_fn())
    eng1, _ = _cpu_rss(pids_fn()[:1])
    frame_s = st1["frame_ms"] / 1e3
    audio = (st1["blocks"] - st0["blocks"]) * frame_s
    d = lambda k: int(st1.get(k, 0) - st0.get(k, 0))  # noqa: E731
    return {"phase": name, "seconds": round(wall, 1), "packets_sent": sent["sent"],
            "packets_per_s": round(sent["sent"] / max(wall, 1e-9)),
            "received": d("osc_received"), "dropped": sum(d(f"osc_dropped_{k}") for k in
                                                           ("rate", "malformed", "limits", "size", "not_allowed")),
            "second_client_answered": f"{answered}/{asked}",
            "answered_share": round(answered / max(asked, 1), 4),
            "osc_p50_ms": _pct(lat, 50), "osc_p99_ms": _pct(lat, 99),
            "http_answered": f"{web.get('answered', 0)}/{web.get('asked', 0)}" if web else "-",
            "http_p50_ms": _pct(web.get("latencies", []), 50), "http_p99_ms": _pct(web.get("latencies", []), 99),
            "attacker": {k: v for k, v in sent.items() if k not in ("sent", "send_failed")} or None,
            "ring_underruns": d("ring_underruns"), "audio_s": round(audio, 2), "wall_s": round(wall + 0.3, 2),
            "audio_vs_wall": round(audio / (wall + 0.3), 4),
            "cpu_s": round(cpu1 - cpu0, 1), "engine_process_cpu_s": round(eng1 - eng0, 1), "cpu_share": round((cpu1 - cpu0) / (wall + 0.3), 2),
            "rss_mb": round(max(peak[0], rss), 1),
            "changes_carried": d("carried"), "engine_busy_drops": d("dropped_busy") + d("net_engine_busy")}


def _pct(values, q) -> float | str:
    if not values:
        return "-"
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))], 1)


def main() -> int:
    from benchmarks.common import fmt_buffer
    from sonolatent.cli.serve import buffer_ms_arg
    from sonolatent.engine.runtime import DEFAULT_BUFFER_MS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the full-speed and bomb phases")
    ap.add_argument("--rate", type=float, default=3000.0, help="paced phase: packets per second")
    ap.add_argument("--packets", type=int, default=None, help="paced phase: this many packets (default: --seconds)")
    ap.add_argument("--bomb-rate", type=float, default=2.0, help="bomb bursts per second")
    ap.add_argument("--slow-connections", type=int, default=300, help="slowloris: connections kept trickling")
    ap.add_argument("--in-process", action="store_true", help="control surface in the engine's process (as before)")
    ap.add_argument("--buffer-ms", type=buffer_ms_arg, default=DEFAULT_BUFFER_MS, metavar="MS|auto",
                    help="the daemon's safety margin ahead of the device (serve --buffer-ms; default: auto)")
    ap.add_argument("--rt-priority", type=int, default=None, metavar="N",
                    help="the daemon's real-time priority (serve --rt-priority; 0: normal scheduling; default: serve's)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--send", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.send:
        h, p, r, s, seed, kind = args.send
        sender_main(h, int(p), float(r), float(s), int(seed), kind)
        return 0

    import tempfile

    import soundfile as sf

    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    take = tmp / "take.wav"
    cmd = [sys.executable, "-m", "sonolatent", "serve", "--no-audio", "--patch", str(ROOT / "patches" / "demo.toml"),
           "--port", "0", "--oscquery-port", "0", "--record", str(take)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    cmd += ["--buffer-ms", fmt_buffer(args.buffer_ms)]
    if args.rt_priority is not None:
        cmd += ["--rt-priority", str(args.rt_priority)]
    if args.in_process:
        cmd.append("--control-in-process")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    daemon = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(x.rstrip()) for x in daemon.stdout], daemon=True).start()
    end = time.monotonic() + 300
    while not any("OSC on udp" in x for x in lines):
        if daemon.poll() is not None or time.monotonic() > end:
            raise SystemExit("serve did not start:\n" + "\n".join(lines))
        time.sleep(0.2)
    port = int(re.search(r"udp 127\.0\.0\.1:(\d+)", next(x for x in lines if "OSC on udp" in x)).group(1))
    addr = ("127.0.0.1", port)
    described = next(x for x in lines if "OSC on udp" in x)
    http = HttpProber(re.search(r"OSCQuery on (http://\S+?/)[,\s]", described).group(1))
    pids = lambda: [daemon.pid] + _children(daemon.pid)  # noqa: E731
    prober = Prober(addr)
    t_start = time.monotonic()
    rows = []
    paced_s = args.packets / args.rate if args.packets else args.seconds
    try:
        rows.append(run_phase("quiet", addr, pids, prober, 0, 5.0, "quiet", http=http))
        rows.append(run_phase(f"paced {args.rate:g}/s", addr, pids, prober, args.rate, paced_s, "paced", http=http))
        rows.append(run_phase("full speed", addr, pids, prober, 0, args.seconds, "full", http=http))
        rows.append(run_phase("bundle bombs", addr, pids, prober, args.bomb_rate, args.seconds, "bombs", http=http))
        rows.append(run_phase("slowloris", addr, pids, prober, args.slow_connections, args.seconds, "slowloris",
                              http=http))
        final = prober.status()
    finally:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        from sonolatent.control.wire import encode
        s.sendto(encode("/sono/quit", ()), addr)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    wall = time.monotonic() - t_start
    info = sf.info(str(take))
    take_s = info.frames / info.samplerate
    cols = ["phase", "seconds", "packets_sent", "packets_per_s", "received", "dropped", "second_client_answered",
            "osc_p50_ms", "osc_p99_ms", "http_answered", "http_p50_ms", "http_p99_ms", "ring_underruns", "audio_s",
            "wall_s", "audio_vs_wall", "cpu_s", "engine_process_cpu_s", "rss_mb"]
    w = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(f"{c:>{w[c]}}" for c in cols))
    for r in rows:
        print("  ".join(f"{str(r[c]):>{w[c]}}" for c in cols))
    for r in rows:
        if r["attacker"]:
            print(f"{r['phase']}: " + ", ".join(f"{k} {v}" for k, v in r["attacker"].items()))
    prio = next((x.split("; producer ")[-1] for x in lines if "; producer " in x), "?")
    print(f"take {take_s:.2f} s for {wall:.2f} s from the first phase to /sono/quit (+ start and fade); "
          f"ring underruns in all {final['ring_underruns']}; buffer {fmt_buffer(args.buffer_ms)} ms; producer {prio}; control {'in the engine process' if args.in_process else 'in its own process'}")
    doc = {"benchmark": "hostile", "control": "in-process" if args.in_process else "own process",
           "machine": {"cores": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "args": {k: v for k, v in vars(args).items() if k != "send"},
           "phases": rows, "take_s": round(take_s, 2), "wall_s": round(wall, 2),
           "ring_underruns_total": final["ring_underruns"], "daemon_log_tail": lines[-5:]}
    from benchmarks.common import write_result
    write_result(RESULTS / f"hostile{'_in_process' if args.in_process else ''}.json", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
