"""The live engine: threads, ring buffer, clocks; implements the control surface's ``ControlTarget``.

Threads:

- the **producer** hands on one commit chunk at a time through
  :class:`EngineCore` whenever the device has less than the target depth ahead
  of it (:meth:`Engine._ahead`), rendering the next frame (one mel frame, all
  voices) first when the last one is all handed on; it resamples to the device
  rate and pushes into the :class:`SPSCRing`; it applies control changes as
  they arrive (a submit wakes it: a note starts at the first sample not yet
  handed on, everything else with the next frame; ``EngineCore.apply_late``),
  scheduled ones at the frame their time reaches, and feeds the recorder and
  the performance log;
- the **consumer** is the sound card's callback (device mode), a clock thread
  that pulls blocks in real time (headless), or nobody (freewheel: the
  producer renders as fast as it can, straight to the recorder);
- the **loader** reads and encodes slot sounds and patches off the audio path.

``submit`` (called for every packet's changes, by the OSC server or, in
``sonolatent serve``, by the relay thread of :mod:`sonolatent.control.netproc`
whose network process did the parsing) only appends to a bounded deque
(:data:`MAX_INBOX` submits; beyond, dropped and counted as ``dropped_busy``).
At most :data:`MAX_CHANGES_PER_BLOCK` changes are applied per frame (at its
boundary and while it is handed on); the rest carry over, in order, to the next
frames (``carried`` counts them).
At most :data:`MAX_LOADER_JOBS` slot loads and patch saves/loads wait for the
loader; more are refused (``/sono/error ... busy``). The callback only copies out of the ring and increments counters: no
locks, no allocation beyond slice views, no logging, no model work.
"""

from __future__ import annotations

import collections
import gc
import heapq
import itertools
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..params.namespace import MAX_SLOTS
from ..errors import SonolatentError
from ..outputs import check_output_path
from .core import DEFAULT_RESAMPLER, DEFAULT_VOICES, EngineCore
from .patch import checkpoint_ref, checkpoint_warning, load_patch, patch_text, resolve_patch, write_patch
from .ring import SPSCRing
from .safety import SafetyConfig
from .slots import SampleCache, list_samples
from .writer import BackgroundWriter, LineLog, WavRecorder

LOG_FORMAT = "sonolatent-performance"
LOG_VERSION = 2   # 2: late changes ({"block": K, "at": sample}), the commit chunk and the resampler in the header
_CB_LOG = 16384  # callbacks remembered for latency measurement (power of two)
_PROBES = 100_000
MAX_INBOX = 4096              # submits waiting for the producer
MAX_CHANGES_PER_BLOCK = 256   # changes applied before one block; the rest carry over
MAX_LOADER_JOBS = 8           # loads/saves waiting for the loader
#: --buffer-ms: rendered ahead on top of one device block (docs/engine.md, Delays); None is "auto"
DEFAULT_BUFFER_MS = None
# --buffer-ms auto: the margin is what the last frames took (their changes applied and their render; the
# peak, which halves in AUTO_RELEASE frames, ~3 s), plus AUTO_SLACK_MS, within AUTO_MIN_MS..AUTO_MAX_MS,
# in AUTO_STEP samples: while the producer works on a frame the device plays on from what is ahead, so the
# margin must cover that work; one voice needs less of it than eight, and a machine that slows down gets more
AUTO_START_MS = 4.0
AUTO_MIN_MS = 3.0
AUTO_SLACK_MS = 1.0
AUTO_MAX_MS = 40.0
AUTO_RELEASE = 256
AUTO_STEP = 32
GIL_SWITCH_S = 0.0005  # GIL hand-over interval while the engine runs (Python's default: 5 ms)
#: --rt-priority: SCHED_FIFO priority asked for the producer thread (0: normal scheduling). Below JACK's
#: own threads (jackd -P defaults to 70 on Linux, its clients one less): the device callback comes first
DEFAULT_RT_PRIORITY = 10

# changes that move a voice's envelope: applied late they are heard from the first uncommitted sample
_ENVELOPE = frozenset({"/sono/note/on", "/sono/note/off", "/sono/play", "/sono/stop", "/sono/sustain",
                       "/sono/allnotesoff"})
# values the engine moves every block (value() reads them live): these, /sono/meter/*, /sono/slot/K/map
_LIVE = frozenset({"/sono/position", "/sono/playing", "/sono/voices/active", "/sono/map"})
_LIVE_PREFIX = "/sono/meter/"


def realtime_thread(priority: int) -> int:
    """Ask the kernel to run the calling thread first-in-first-out at ``priority`` (1..99), as audio
    programs do for their real-time threads; return the priority granted, 0 where it is not allowed
    (no CAP_SYS_NICE and no RLIMIT_RTPRIO, or not Linux): the thread then stays as it was."""
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return 0
    try:
        prio = min(int(priority), os.sched_get_priority_max(os.SCHED_FIFO))
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(prio))
        return prio
    except OSError:
        return 0


class Engine:
    """Real-time engine; see the module docstring.

    ``synth`` is the voice it plays (a ``StreamingSynth``, handed in: the
    engine builds no model); the engine owns it from here on.
    ``mode`` is ``"device"`` (sounddevice callback), ``"headless"`` (own
    real-time clock) or ``"freewheel"`` (as fast as possible). Build it, load
    initial state with :meth:`preload`, then :meth:`start`; :meth:`wait` blocks
    until it has faded out after :meth:`request_quit`, ``/sono/quit`` or
    ``duration``; :meth:`close` finalises the recording and the log.

    ``clock`` returns wall-clock seconds (default ``time.time``, the time base of
    OSC time tags): scheduled submits fall due on it. In freewheel mode it is read
    once, at :meth:`start`, and block ``b`` is due at that time plus ``b`` frames,
    so a fixed clock makes scheduling exact whatever the machine's load.
    """

    def __init__(self, synth, *, samples_dir, mode: str = "headless", device_rate: int | None = None,
                 block_size: int = 256, safety_ms: float | None = DEFAULT_BUFFER_MS, device=None, record=None, log_osc=None,
                 patches_dir=None, duration: float | None = None, checkpoint: str | None = None,
                 voices: int = DEFAULT_VOICES, channels: int = 1, clock=time.time,
                 safety: SafetyConfig | None = None, input_device=None, live_encoder=None,
                 resampler: str = DEFAULT_RESAMPLER, rt_priority: int = DEFAULT_RT_PRIORITY):
        if mode not in ("device", "headless", "freewheel"):
            raise ValueError(f"unknown engine mode {mode!r}")
        self.input_device = input_device     # None: output only; else the live input (see engine/live.py)
        if input_device is not None and mode != "device":
            raise SonolatentError("--input needs a sound card (it cannot be combined with --no-audio or --freewheel)")
        if input_device is not None and live_encoder is None:
            raise SonolatentError("--input: no live encoder was given (the model bundle's encoder/)")
        if not 16 <= block_size <= 8192:
            raise SonolatentError(f"--block-size {block_size}: must be 16..8192")
        if not 0 <= rt_priority <= 99:
            raise SonolatentError(f"--rt-priority {rt_priority}: must be 0..99 (0: normal scheduling)")
        self.mode = mode
        self.clock = clock
        # real-time scheduling for the threads that keep time (not in freewheel: it renders flat out)
        self.rt_priority = 0 if mode == "freewheel" else int(rt_priority)
        self.rt_granted = 0           # what the producer got (0: normal scheduling)
        bundle = synth.bundle
        self.bundle = bundle
        self.samples_dir = Path(samples_dir)
        self.patches_dir = Path(patches_dir) if patches_dir else None
        self.device = device
        self.block_size = int(block_size)
        self.duration = duration
        self.checkpoint = checkpoint
        self.stream = None
        for path, what in ((record, "--record"), (log_osc, "--log-osc")):
            if path:
                check_output_path(path, what)   # before a device or a file is opened
        self.channels = channels
        if mode == "device":
            device_rate = self._open_stream(device_rate)
        self.device_rate = int(device_rate or bundle.sample_rate)
        self.core = EngineCore(synth, self.device_rate, voices=voices, channels=self.channels, safety=safety,
                               live_input=live_encoder, resampler=resampler)
        self.namespace = self.core.namespace
        self._view = dict(self.core.values)   # what value() answers; replaced whole after each applied block
        self.cache = SampleCache(synth, self.samples_dir)
        # ring: target depth = one device block + a safety margin; room for a rendered block on top
        frame_out = math.ceil(self.core.hop * self.device_rate / self.core.model_rate) + 64
        self.buffer_auto = safety_ms is None
        self._render_peak = 0.0       # --buffer-ms auto: the frames' render time, peak-held
        self._peak_hold = 0.5 ** (1.0 / AUTO_RELEASE)
        self.target = self.block_size + self._margin(AUTO_START_MS if self.buffer_auto else safety_ms)
        most = self.block_size + self._margin(AUTO_MAX_MS) if self.buffer_auto else self.target
        self.ring = SPSCRing(most + 2 * frame_out + self.block_size, self.channels)
        self.in_ring = None
        self.input_latency = 0        # device samples from an input sample to the output sample it lines up with
        if input_device is not None:
            self._setup_input(frame_out)
        # control
        self._inbox: collections.deque = collections.deque()
        self._heap: list = []
        self._carry: list = []       # due submits (or their rest) over the per-block cap, oldest first
        self.max_changes_per_block = MAX_CHANGES_PER_BLOCK
        self._room = MAX_CHANGES_PER_BLOCK   # changes that may still apply in this frame
        self._wake = threading.Event()       # set by submit: the producer applies it without waiting out its nap
        self._loader_in = 0           # jobs queued (producer thread only) ...
        self._loader_out = 0          # ... and taken (loader thread only): no shared read-modify-write
        self._seq = itertools.count()
        self._installs: collections.deque = collections.deque()   # (changes, sounds, sender) from the loader
        self._loader_q: queue.SimpleQueue = queue.SimpleQueue()
        self.replier = None
        # counters (ints incremented in place; read by status())
        self.underflows = 0          # device-reported output underflows (callback status flags)
        self.underflow_first = -1    # callback number of the first underflow (diagnostics)
        self.ring_underruns = 0      # callbacks that found the ring short (the producer fell behind)
        self.missing_samples = 0     # samples those callbacks played as zeros (each one delays what follows)
        self.callbacks = 0
        self.render_total = 0.0
        self.render_max = 0.0
        self.depth_min = None
        self.submits = 0
        self.changes_applied = 0
        self.load_errors = 0
        self.dropped_busy = 0
        self.carried = 0
        self.level = 0.0             # output peak, held and falling back (/sono/meter/level)
        self.render_recent = 0.0     # render seconds per block, averaged over the last ~50 blocks
        self._frame_out = self.core.hop * self.device_rate / self.core.model_rate
        self._level_fall = 0.5 ** (self.core.dt / 0.3)   # the held peak halves every 0.3 s (per frame)
        self._samples_names: tuple = ()
        self._samples_listed = -1e9
        # latency measurement: callback times and read positions, and (arrival, first sample) probes
        self._cb_time = np.zeros(_CB_LOG)
        self._cb_pos = np.zeros(_CB_LOG, np.int64)
        self._cb_count = 0
        self.probes: collections.deque = collections.deque(maxlen=_PROBES)
        # outputs
        self._writer = BackgroundWriter(prepare=self.join_realtime) if (record or log_osc) else None
        self.recorder = WavRecorder(record, self.device_rate, self._writer, self.channels) if record else None
        self.log = LineLog(log_osc, self._writer) if log_osc else None
        if self.log:
            self.log.write({"format": LOG_FORMAT, "version": LOG_VERSION, "sonolatent": __version__,
                            "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
                            "samples": str(self.samples_dir.resolve()),
                            "model_rate": self.core.model_rate, "output_rate": self.device_rate,
                            "hop": self.core.hop, "voices": len(self.core.bank.voices),
                            "channels": self.channels, "safety": self.core.output.config.to_dict(),
                            "chunk": self.core.chunk, "resampler": self.core.resampler.quality,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self._quit_requested = False
        self._quit_injected = False
        self._producer_done = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t_start = None
        self.error: BaseException | None = None
        self._switch_interval = None    # the interpreter's GIL switch interval before start()
        self.patch = None               # the patch loaded last (its description and [midi] map are saved on)

    # ===== ControlTarget ===========================================================================
    def submit(self, changes, at, sender) -> None:
        if len(self._inbox) >= MAX_INBOX:
            self.dropped_busy += 1
            return
        self.submits += 1
        self._inbox.append((at, next(self._seq), list(changes), sender, time.perf_counter()))
        self._wake.set()

    def value(self, address: str):
        """The value in effect: what the engine moves every block (the playhead's position, ``/sono/playing``,
        the voices sounding, the map points, the meters) as of the last block, everything else as of the
        last block boundary at which changes applied (never half of a patch's changes)."""
        if address in _LIVE or address.startswith(_LIVE_PREFIX) or address.endswith("/map"):
            return self.core.values.get(address)
        return self._view.get(address)

    def delays(self) -> dict:
        """Where a change waits before it is heard, in device-rate samples (see docs/engine.md).

        ``model``: the synth's delay (the decoder's and the vocoder's lookback);
        ``chunk``: samples are handed on a commit chunk at a time (a note-on starts at the first uncommitted
        sample; other changes take effect at the next frame, up to ``frame_samples`` later);
        ``ring``: the depth the producer keeps rendered ahead (0 in freewheel);
        ``resampler``: what soxr holds back; ``limiter``: its lookahead.
        """
        c = self.core
        ratio = self.device_rate / c.model_rate
        d = {"model": int(round(c.synth.delay * ratio)), "chunk": int(round(c.chunk * ratio)),
             "ring": self.target if self.mode != "freewheel" else 0,
             "resampler": c.resampler.delay, "limiter": c.output.delay}
        d["total"] = sum(d.values())
        return d

    def choices(self, address: str):
        """The names a string parameter can take now (the OSCQuery tree's VALS): the sample folder's sounds."""
        if not (address.startswith("/sono/slot/") and address.endswith(("/load", "/timbre"))):
            return None
        now = time.monotonic()
        if now - self._samples_listed > 2.0:
            self._samples_names = tuple(list_samples(self.samples_dir))
            self._samples_listed = now
        return self._samples_names

    def info(self) -> dict:
        c = self.core
        d = self.delays()
        return {"version": __version__, "engine": "sonolatent", "latent_dim": c.D,
                "model_rate": c.model_rate, "device_rate": self.device_rate, "block_size": self.block_size,
                "frame_samples": int(round(c.hop * self.device_rate / c.model_rate)), "delay_samples": d["total"],
                **{f"delay_{k}_samples": v for k, v in d.items() if k != "total"},
                "limiter": int(c.output.config.limiter), "limiter_ceiling_db": c.output.config.ceiling_db,
                "loudness_tracking": int(c.output.config.track), "resampler": c.resampler.quality,
                "slots": MAX_SLOTS, "mode": self.mode, "voices": len(c.bank.voices), "channels": self.channels,
                "buffer_samples": self.target, "buffer_auto": int(self.buffer_auto),
                "input_latency_samples": self.input_latency,
                "input_path_samples": self.core.live_delay + self.core.hop if self.core.live is not None else 0,
                "rt_priority": self.rt_granted}

    def status(self) -> dict:
        n = self.core.block
        return {"underflows": self.underflows, "underflow_first_callback": self.underflow_first,
                "ring_underruns": self.ring_underruns, "blocks": n,
                "callbacks": self.callbacks,
                "render_ms_mean": round(1e3 * self.render_total / n, 4) if n else 0.0,
                "render_ms_max": round(1e3 * self.render_max, 4),
                "frame_ms": round(1e3 * self.core.dt, 4),
                "buffer_depth": self.ring.fill() if self.mode != "freewheel" else 0,
                "buffer_depth_min": self.depth_min if self.depth_min is not None else 0,
                "buffer_target": self.target if self.mode != "freewheel" else 0,
                "submits": self.submits, "changes_applied": self.changes_applied,
                "scheduled": len(self._heap), "load_errors": self.load_errors,
                "dropped_busy": self.dropped_busy, "carried": self.carried,
                "playing": int(self.core.sounding),
                "loudness_gain_db": round(self.core.output.gain_db, 2),
                "limiter_reduction_db": round(self.core.output.reduction_db, 2), "rt_priority": self.rt_granted,
                **self._input_status()}

    def attach_replier(self, replier) -> None:
        self.replier = replier

    def _error(self, sender, address: str, reason: str) -> None:
        r = self.replier
        if r is not None:
            try:
                r.reply_error(sender, address, reason)
            except Exception:
                pass

    # ===== setup ================================================================================
    def _open_stream(self, rate):
        import sounddevice as sd

        try:
            dev = sd.query_devices(self.device, kind="output")
        except (ValueError, sd.PortAudioError) as e:
            raise SonolatentError(f"--device {self.device}: no such output device ({e})") from None
        rate = int(rate or dev["default_samplerate"])
        channels = min(2, int(dev["max_output_channels"])) or 1
        if channels < self.channels:   # a mono device plays the left channel
            self.channels = channels
        if self.input_device is not None:
            return self._open_duplex(sd, dev, rate, channels)
        try:
            self.stream = sd.OutputStream(samplerate=rate, blocksize=self.block_size, device=self.device,
                                          channels=channels, dtype="float32", callback=self._callback,
                                          latency="low")
        except sd.PortAudioError as e:
            raise SonolatentError(f"cannot open output device {dev['name']!r} at {rate} Hz ({e})") from None
        return rate

    # ----- live input (serve --input) ------------------------------------------------------------
    def _open_duplex(self, sd, out_dev, rate, channels):
        """One duplex stream (one clock for input and output): PortAudio's JACK host gives input ports
        ``PortAudio:in_0``; the first input channel is the live input."""
        try:
            in_dev = sd.query_devices(self.input_device, kind="input")
        except (ValueError, sd.PortAudioError) as e:
            raise SonolatentError(f"--input {self.input_device}: no such input device ({e})") from None
        try:
            self.stream = sd.Stream(samplerate=rate, blocksize=self.block_size, device=(self.input_device, self.device),
                                    channels=(1, channels), dtype="float32", callback=self._duplex_callback,
                                    latency="low")
        except sd.PortAudioError as e:
            raise SonolatentError(f"cannot open input {in_dev['name']!r} with output {out_dev['name']!r} at {rate} Hz "
                                  f"as one duplex stream ({e})") from None
        return rate

    def _setup_input(self, frame_out: int) -> None:
        """The input ring and resampler, and the output's head start: the live path's latency (the mel
        window's look-ahead, the model's delay and a frame of granularity), an input block, both
        resamplers' hold-back and the usual target depth, so that each output sample is in the ring
        before the device asks for it and the delay stays constant."""
        from .core import Resampler

        core = self.core
        self.in_ring = SPSCRing(max(self.device_rate, 8 * self.block_size))
        self.in_resampler = Resampler(self.device_rate, core.model_rate, quality="hq")
        ratio = self.device_rate / core.model_rate
        hold = 0
        if core.model_rate != self.device_rate:   # measured on throwaway streams (output samples held back)
            hold = resampler_holdback(self.device_rate, core.model_rate, self.block_size, "hq") * ratio + \
                resampler_holdback(core.model_rate, self.device_rate, core.chunk, core.resampler.quality)
        path = core.live_delay + core.hop
        # the output stage (the limiter's lookahead) holds back its delay too
        self.input_latency = int(math.ceil(path * ratio + hold)) + self.block_size + self.target + core.output.delay
        self.ring = SPSCRing(self.input_latency + 4 * frame_out + self.block_size, self.channels)
        self.input_blocks_late = 0
        self.input_overruns = 0

    def _input_status(self) -> dict:
        live = self.core.live
        if live is None:
            return {}
        return {"input_level": round(float(live.level), 2), "input_late": live.late, "input_skipped": live.skipped,
                "input_overruns": self.input_overruns, "input_latency_samples": self.input_latency,
                "missing_samples": self.missing_samples}

    def _duplex_callback(self, indata, outdata, frames, time_info, status):  # real-time: no locks, no allocation
        if status.output_underflow:
            self.underflows += 1
            if self.underflow_first < 0:
                self.underflow_first = self.callbacks
        if self.in_ring.push(indata[:, 0]) < frames:
            self.input_overruns += 1
        self._consume(outdata)

    def _drain_input(self) -> None:
        n = self.in_ring.fill()
        if n:
            buf = np.empty((n, 1), np.float32)
            self.in_ring.pop_into(buf)
            x = self.in_resampler(buf[:, 0])
            if len(x):
                self.core.feed_input(x)

    def _produce_input(self) -> None:
        """The producer with a live input: a block is rendered when its input frame is ready (so the output
        keeps the input's clock), or when the ring is about to run dry without one (a late block, silence)."""
        core, live = self.core, self.core.live
        frame_out = math.ceil(core.hop * self.device_rate / core.model_rate)
        self.rt_granted = realtime_thread(self.rt_priority)
        try:
            while not core.finished and not self._stop.is_set():
                self._drain_input()
                fill = self.ring.fill()
                if self.depth_min is None or fill < self.depth_min:
                    self.depth_min = fill
                ready = live.ready()
                if ready and self.ring.space() > 2 * frame_out:
                    # every sample the device played as zeros, and every block rendered without its input
                    # frame, put the output further behind its input: drop input frames to win it back
                    behind = self.missing_samples + (live.late - live.skipped) * frame_out
                    if behind >= frame_out:
                        live.skip()
                        continue
                    self._render_one()
                elif fill < self.block_size and self.ring.space() > 2 * frame_out:
                    self._render_one()          # no input frame in time: keep the device fed
                else:
                    time.sleep(0.0005)
        finally:
            self._producer_done.set()

    def preload(self, slots: dict[int, str] | None = None, changes=()) -> None:
        """Load sounds (synchronously) and apply changes before the first block (logged at block 0)."""
        sounds = {k: self.cache.load(name) for k, name in (slots or {}).items()}
        ch = [(f"/sono/slot/{k}/load", (s.name,)) for k, s in sounds.items()] + list(changes)
        if ch:
            self._apply_block(ch, sounds)

    def load_patch_file(self, path) -> None:
        """Start from a patch file (``--patch``): its sounds, parameters and, with autoplay, the sound on."""
        patch = self._read_patch(path)
        for k, name in patch.slots.items():   # a missing sample is named with the patch's line
            try:
                self.cache.load(name)
            except SonolatentError as e:
                raise SonolatentError(f"{patch.where('slots', str(k))}: {e}") from None
        self.preload(patch.slots, patch.changes + patch.play_changes())
        self.patch = patch

    def _read_patch(self, path):
        patch = load_patch(path, self.namespace)
        running = getattr(self.bundle, "folder", None) or self.checkpoint
        for w in patch.warnings + [checkpoint_warning(patch, running)]:
            if w:
                print(f"sonolatent: warning: {w}", file=sys.stderr, flush=True)
        return patch

    # ===== running ==============================================================================
    def start(self) -> None:
        # Everything long-lived exists now (torch, the models, the sounds): move it out of the
        # cyclic collector's reach, so a full collection (which holds the GIL, and so the audio
        # callback) scans only what is new: ~100 ms -> ~1 ms with torch loaded.
        gc.collect()
        gc.freeze()
        # The callback needs the GIL. A thread that wants it waits up to the switch interval
        # (5 ms by default) before the holder is asked to let go: as long as a whole 256-frame
        # period at 48 kHz. Ask for the hand-over sooner while the engine runs.
        if self.mode != "freewheel" and self._switch_interval is None:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, GIL_SWITCH_S))
        self._t_start = self.clock()
        self._spawn(self._loader, "sonolatent-loader")
        if self.mode == "freewheel":
            self._spawn(self._produce_freewheel, "sonolatent-producer")
            return
        if self.in_ring is not None:
            # the live input's head start: silence for the path's latency (see _setup_input)
            self.ring.push(np.zeros(self.input_latency, np.float32))
            self._spawn(self._produce_input, "sonolatent-producer")
            self.stream.start()
            return
        while self.ring.fill() < self.target and not self.core.finished:
            self._commit_chunk()
        self._spawn(self._produce_live, "sonolatent-producer")
        if self.mode == "device":
            self.stream.start()
        else:
            self._spawn(self._headless_clock, "sonolatent-clock")

    def _spawn(self, fn, name) -> None:
        t = threading.Thread(target=self._guard(fn), name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, fn):
        def run():
            try:
                fn()
            except BaseException as e:  # surfaced by wait()
                self.error = e
                self._producer_done.set()
        return run

    def request_quit(self) -> None:
        """Fade out and stop (thread- and signal-safe: only sets a flag)."""
        self._quit_requested = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the engine has faded out and drained; True when finished."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._producer_done.wait(0.1):
            if end is not None and time.monotonic() > end:
                return False
        if self.error is not None:
            raise self.error
        if self.mode != "freewheel":
            # let the device play out what is in the ring
            limit = time.monotonic() + 2.0 + self.ring.capacity / self.device_rate
            while self.ring.fill() > 0 and time.monotonic() < limit:
                time.sleep(0.005)
        return True

    def close(self, abort: bool = False) -> None:
        """Stop everything; finalise the recording and the log (``abort``: delete them)."""
        self._stop.set()
        self._quit_requested = True
        self._loader_q.put(None)
        if self.stream is not None:
            try:
                self.stream.stop()
                self.stream.close()
            except Exception:
                pass
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5.0)
        gc.unfreeze()                     # let what start() froze be collected again
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
        self.core.resampler.stream = None  # the soxr state, now, not at interpreter exit
        if self.in_ring is not None:
            self.in_resampler.stream = None
        if self._writer is None:
            return
        outputs = [o for o in (self.recorder, self.log) if o is not None]
        if not abort and self.log:
            self.log.write({"end": self.core.block})
        if not abort:
            for out in outputs:
                out.finish()
        self._writer.close()
        if abort or self._writer.error is not None:
            for out in outputs:
                if out is self.recorder and not abort:
                    out.keep()          # a write failed mid-take: what reached the disk stays playable
                else:
                    out.abort()
        if not abort and self._writer.error is not None:
            raise SonolatentError(f"writing the outputs failed: {self._writer.error}")

    # ----- consumer side ----------------------------------------------------------------------
    def _callback(self, outdata, frames, time_info, status):  # real-time: no locks, no allocation
        if status.output_underflow:
            self.underflows += 1
            if self.underflow_first < 0:
                self.underflow_first = self.callbacks
        self._consume(outdata)

    def _consume(self, out) -> None:
        k = self._cb_count & (_CB_LOG - 1)
        self._cb_time[k] = time.perf_counter()
        self._cb_pos[k] = self.ring.read
        self._cb_count += 1
        self.callbacks += 1
        missed = self.ring.pop_into(out)
        if missed and not self._producer_done.is_set():
            self.ring_underruns += 1
            self.missing_samples += missed

    def join_realtime(self) -> int:
        """Run the calling thread (one of the engine process's helpers: the loader, the writer, the network
        relay) first-in-first-out one step below the producer, where allowed; returns the priority granted
        (0: normal). A helper holding the interpreter lock is then never set aside for another program
        while the producer waits for that lock (priority inversion); their work is short or bounded."""
        if not self.rt_priority:
            return 0
        return realtime_thread(max(1, self.rt_priority - 1))

    def _headless_clock(self) -> None:
        realtime_thread(self.rt_priority + 1 if self.rt_priority else 0)   # the device's part: above the producer
        out = np.zeros((self.block_size, self.channels), np.float32)
        period = self.block_size / self.device_rate
        nxt = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            if now < nxt:
                time.sleep(min(nxt - now, 0.01))
                continue
            self._consume(out)
            nxt += period
            if now - nxt > 0.5:   # stalled (suspended?): resynchronise instead of bursting
                nxt = now

    # ----- producer side ----------------------------------------------------------------------
    def _ahead(self) -> float:
        """Samples the device has still to play before the next one pushed: what the ring holds, plus the
        part of the last callback's block that is still playing out (the device plays a block over one
        period). Pacing on this rather than on the ring alone keeps the depth steady instead of topping it
        up a whole block at a time after each callback, so a sample pushed now waits up to a block less."""
        fill = self.ring.fill()
        n = self._cb_count
        if n:
            t = self._cb_time[(n - 1) & (_CB_LOG - 1)]
            fill += max(0.0, self.block_size - (time.perf_counter() - t) * self.device_rate)
        return fill

    def _produce_live(self) -> None:
        core = self.core
        self.rt_granted = realtime_thread(self.rt_priority)
        try:
            while not (core.finished and not core.uncommitted) and not self._stop.is_set():
                self._wake.clear()
                if self._inbox:
                    self._take_now()
                fill = self.ring.fill()
                if self.depth_min is None or fill < self.depth_min:
                    self.depth_min = fill
                ahead = self._ahead()
                if ahead >= self.target:
                    self._wake.wait(min(0.002, max(0.0002, (ahead - self.target + 1) / self.device_rate)))
                    continue
                self._commit_chunk()
        finally:
            self._producer_done.set()

    def _produce_freewheel(self) -> None:
        try:
            while not self.core.finished and not self._stop.is_set():
                self._render_one()
        finally:
            self._producer_done.set()

    def block_time(self) -> float:
        """Wall-clock time at which the block about to be rendered will be heard (estimated)."""
        if self.mode == "freewheel":
            return self._t_start + self.core.block * self.core.dt
        lat = self.stream.latency if self.stream is not None else 0.0
        if isinstance(lat, tuple):    # a duplex stream (live input): (input, output)
            lat = lat[1]
        pending = self.core.uncommitted * self.device_rate / self.core.model_rate
        return self.clock() + (self.ring.fill() + pending) / self.device_rate + lat

    def _margin(self, ms: float) -> int:
        """Samples of margin for ``ms`` milliseconds (auto: rounded up to AUTO_STEP samples)."""
        n = ms * 1e-3 * self.device_rate
        return int(math.ceil(n / AUTO_STEP) * AUTO_STEP) if self.buffer_auto else int(round(n))

    def _follow_render_time(self, dt: float) -> None:
        """--buffer-ms auto: move the target depth with the frames' render time (producer thread only)."""
        self._render_peak = max(dt, self._render_peak * self._peak_hold)
        ms = min(AUTO_MAX_MS, max(AUTO_MIN_MS, 1e3 * self._render_peak + AUTO_SLACK_MS))
        self.target = self.block_size + self._margin(ms)

    def _next_frame(self) -> None:
        """A frame boundary: the changes due now, then the next frame rendered into the pre-mix."""
        core = self.core
        if (self._quit_requested or (self.duration is not None and core.block * core.dt >= self.duration)) \
                and not self._quit_injected:
            self._quit_injected = True
            self._inbox.append((None, next(self._seq), [("/sono/quit", ())], None, None))
        t0 = time.perf_counter()   # the frame's work: its changes too (a bundle bomb's 256 a block cost ~1 ms)
        self._room = self.max_changes_per_block
        due = self._collect_due()
        if due or self._installs:
            self._apply_due(due)
        core.render_frame()
        dt = time.perf_counter() - t0
        self.render_total += dt
        if dt > self.render_max:
            self.render_max = dt
        self.render_recent += 0.02 * (dt - self.render_recent)
        if self.buffer_auto and self.mode != "freewheel" and self.in_ring is None:
            self._follow_render_time(dt)
        v = core.values
        v["/sono/meter/cpu"] = (self.render_recent / core.dt,)
        v["/sono/meter/underflows"] = (self.underflows + self.ring_underruns,)

    def _commit_chunk(self) -> None:
        """Hand the next chunk to the ring and the recorder (rendering the next frame first when the last
        one is all handed on)."""
        if not self.core.uncommitted:
            self._next_frame()
        self._emit(self.core.commit())

    def _render_one(self) -> None:
        """One frame on the frame grid: rendered, then committed chunk by chunk (freewheel, live input)."""
        self._next_frame()
        while self.core.uncommitted:
            self._emit(self.core.commit())

    def _emit(self, out) -> None:
        if self.mode != "freewheel":
            self.ring.push(out)
        if self.recorder is not None:
            self.recorder.write(out)
        if len(out):   # the output peak, held and falling back (/sono/meter/level)
            peak = float(np.max(np.abs(out)))
            self.level = max(peak, self.level * self._level_fall ** (len(out) / self._frame_out))
            self.core.values["/sono/meter/level"] = (self.level,)

    def _take_now(self) -> None:
        """Submits that arrived while a frame is being committed apply at once (``EngineCore.apply_late``):
        a note starts at the first sample not yet handed on instead of the next frame. Scheduled ones (a
        future time tag) wait in the heap for their frame; with changes carried over the per-frame cap,
        or a live input bound, everything waits for the frame boundary as before."""
        core = self.core
        if self._carry or self._room <= 0 or not core.uncommitted or core.live is not None:
            return
        inbox, now_block = self._inbox, None
        immediate = []
        while inbox:
            item = inbox.popleft()
            at = item[0]
            if at is not None:
                if now_block is None:
                    now_block = self.block_time()
                if at > now_block:
                    heapq.heappush(self._heap, item)
                    continue
            immediate.append(item)
        if immediate:
            self._apply_due(immediate, late=True)

    def _collect_due(self) -> list:
        """Submits due at this block: scheduled ones whose time has come, then immediate ones."""
        inbox, heap = self._inbox, self._heap
        if not inbox and not heap and not self._carry and not self._installs:
            return []
        now_block = self.block_time()
        immediate = []
        while inbox:
            item = inbox.popleft()
            at = item[0]
            if at is None or at <= now_block:
                immediate.append(item)
            else:
                heapq.heappush(heap, item)
        due, self._carry = self._carry, []
        while heap and heap[0][0] <= now_block:
            due.append(heapq.heappop(heap))
        return due + immediate

    def _apply_due(self, due, late: bool = False) -> None:
        """Apply ``due`` submits (at most the frame's room of changes; the rest carries over, in order). At the
        frame boundary the loader's installs come last; ``late``: into the frame being committed."""
        core = self.core
        changes, sounds = [], {}
        note_senders = []   # the sender of each /sono/note/on, in order: answered with the voice it took
        room = self._room
        at = core.committed if late else None
        for k, (t, seq, items, sender, arrival) in enumerate(due):
            if len(items) > room:   # over the cap: the rest waits for the next blocks, in order
                rest = [(t, seq, items[room:], sender, None)] + list(due[k + 1:])
                self.carried += sum(len(r[2]) for r in rest)
                self._carry = rest + self._carry
                items = items[:room]
            room -= len(items)
            for address, values in items:
                p = self.namespace.get(address)
                if p is None:
                    self._error(sender, address, "no such address")
                    continue
                vals = tuple(values)   # checked by the control surface (ControlTarget.submit's contract)
                if address.startswith("/sono/slot/") and address.endswith(("/load", "/timbre")):
                    kind = "slot" if address.endswith("/load") else "timbre"
                    self._to_loader((kind, int(address.split("/")[3]), vals[0], sender), address)
                elif address == "/sono/patch/load":
                    self._to_loader(("patch-load", None, vals[0], sender), address)
                elif address == "/sono/patch/save":
                    self._to_loader(("patch-save", None, vals[0], sender), address)
                elif not p.action and not p.access & 2:
                    self._error(sender, address, "read-only")
                else:
                    changes.append((address, vals))
                    if address == "/sono/note/on":
                        note_senders.append(sender)
            if items and arrival is not None:   # internal items (quit on a signal) carry no arrival
                # where its first affected sample is: an envelope moved late at the sample it applied from,
                # anything else at the next frame
                now = at is not None and any(a in _ENVELOPE for a, _ in items)
                self.probes.append((arrival, core.block - 1 + at / core.hop if now else core.block))
            if room <= 0 and self._carry:
                break
        self._room = room
        if not late:
            while self._installs:
                ch, snd, _ = self._installs.popleft()
                changes += ch
                sounds.update(snd)
        if changes:
            self._apply_block(changes, sounds, at)
        if note_senders:
            self._answer_notes(note_senders)

    def _answer_notes(self, senders) -> None:
        """``/sono/note/voice pitch voice`` to whoever sent each note-on (a note-on at velocity 0 takes none)."""
        r = self.replier
        if r is None:
            return
        for sender, (pitch, voice) in zip(senders, self.core.note_voices):
            if sender is not None and voice >= 0:
                try:
                    r.reply(sender, "/sono/note/voice", (pitch, voice), "fi")
                except Exception:
                    pass

    def _apply_block(self, changes, sounds, at: int | None = None) -> None:
        """Apply at the next frame boundary, or (``at``: a sample of the frame being committed) late."""
        if at is None:
            applied, block = self.core.apply(changes, sounds), self.core.block
        else:
            t0 = time.perf_counter()
            applied, block = self.core.apply_late(changes, sounds, at), self.core.block - 1
            self.render_total += time.perf_counter() - t0
        self._view = dict(self.core.values)
        self.changes_applied += len(applied)
        if self.log:
            rec = {"block": block, **({"at": at} if at is not None else {}),
                   "changes": [[a, list(v)] for a, v in applied]}
            timbres = {a.split("/")[3] for a, _ in applied if a.startswith("/sono/slot/") and a.endswith("/timbre")}
            loaded = {str(k): {"name": s.name, "sha256": s.sha256, **({"timbre": True} if str(k) in timbres else {})}
                      for k, s in sounds.items()}
            if loaded:
                rec["sounds"] = loaded
            self.log.write(rec)

    # ----- loader -------------------------------------------------------------------------------
    def _to_loader(self, job, address: str) -> None:
        if self._loader_in - self._loader_out >= MAX_LOADER_JOBS:
            self.load_errors += 1
            self._error(job[3], address, f"busy: {MAX_LOADER_JOBS} loads/saves are waiting; try again")
            return
        self._loader_in += 1
        self._loader_q.put(job)

    def _loader(self) -> None:
        self.join_realtime()
        while True:
            job = self._loader_q.get()
            if job is None:
                return
            self._loader_out += 1
            if self._stop.is_set():
                continue          # closing: what still waits is not started (no half-written patch)
            kind, slot, name, sender = job
            try:
                if kind == "slot":
                    s = self.cache.load(name)
                    self._post_install([(f"/sono/slot/{slot}/load", (s.name,))], {slot: s}, sender)
                elif kind == "timbre":
                    s = self.cache.load_timbre(name)
                    self._post_install([(f"/sono/slot/{slot}/timbre", (s.name,))], {slot: s}, sender)
                elif kind == "patch-load":
                    self._load_patch(name, sender)
                elif kind == "patch-save":
                    self._save_patch(name)
            except SonolatentError as e:
                self.load_errors += 1
                addr = f"/sono/slot/{slot}/{'load' if kind == 'slot' else 'timbre'}" if kind in ("slot", "timbre") \
                    else f"/sono/patch/{kind[6:]}"
                self._error(sender, addr, str(e))
            except Exception as e:  # a broken file must not kill the daemon
                self.load_errors += 1
                self._error(sender, "/sono/slot/load" if kind == "slot" else "/sono/patch", f"failed: {e}")

    def _post_install(self, changes, sounds, sender) -> None:
        self._installs.append((changes, sounds, sender))
        # wake the producer's next block even when no OSC arrives
        self._inbox.append((None, next(self._seq), [], None, None))

    def _patch_root(self) -> Path:
        if self.patches_dir is None:
            raise SonolatentError("no patch folder is set (--patches)")
        return self.patches_dir

    def _load_patch(self, name: str, sender) -> None:
        path = resolve_patch(self._patch_root(), name)
        patch = self._read_patch(path)
        sounds = {k: self.cache.load(n) for k, n in patch.slots.items()}
        clears = [(f"/sono/slot/{k}/clear", ()) for k in range(MAX_SLOTS) if k not in patch.slots]
        loads = [(f"/sono/slot/{k}/load", (s.name,)) for k, s in sounds.items()]
        self._post_install(clears + loads + patch.changes + patch.play_changes(), sounds, sender)
        self.patch = patch

    def _save_patch(self, name: str) -> None:
        """Write the whole setup as ``NAME.toml`` in the patch folder (the full format, atomically).

        ``[play] autoplay`` is whether the voice is on now; the description and
        ``[midi] map`` come from the patch loaded last (the map re-pointed from
        the new file's folder); ``/sono/position`` is the start point, not the
        moving playhead.
        """
        root = self._patch_root()
        path = resolve_patch(root, name)
        if not root.is_dir():
            raise SonolatentError(f"{root}: patch folder not found")
        core = self.core
        values = dict(core.values)
        values["/sono/position"] = (float(core.start_point),)
        names = {k: values[f"/sono/slot/{k}/name"][0] for k in range(MAX_SLOTS)}
        last = {"morph": ("/sono/morph/pair", "/sono/morph"), "xy": ("/sono/xy",),
                "weights": ("/sono/weights",)}[core.blend_source]
        prev = self.patch
        on = core.env_target > 0.0
        midi_map = prev.midi_map_path() if prev is not None else None
        if midi_map is not None:
            midi_map = os.path.relpath(midi_map.resolve(), path.parent)
        folder = getattr(self.bundle, "folder", None) or self.checkpoint
        text = patch_text(names, values, self.namespace, last, name=path.stem,
                          description=prev.description if prev is not None else "",
                          checkpoint=checkpoint_ref(folder) if folder else None, autoplay=on,
                          velocity=min(1.0, core.env_target) if on else (prev.velocity if prev is not None else 1.0),
                          midi_map=Path(midi_map).as_posix() if midi_map else None)
        write_patch(path, text)

    # ===== measurements =============================================================================
    def callback_intervals(self) -> np.ndarray:
        """Seconds between consecutive callbacks (the latest ones the callback log holds)."""
        n = min(self._cb_count, _CB_LOG)
        k = self._cb_count & (_CB_LOG - 1)
        t = np.concatenate([self._cb_time[k:], self._cb_time[:k]])[-n:] if self._cb_count >= _CB_LOG \
            else self._cb_time[:n]
        return np.diff(t)

    def control_latencies(self) -> np.ndarray:
        """Seconds from each submit's arrival to the moment its first affected sample left the ring.

        One value per entry of ``probes`` (NaN where the callback log does not
        cover it). The first affected sample of block ``b`` is output sample
        ``core.output_index_of_block(b)``; the callback that copied it out is
        found in the callback log, and the sample's offset within that callback
        is added. The device's own output latency (``stream.latency``) comes on
        top and is not included.
        """
        n = min(self._cb_count, _CB_LOG)
        probes = list(self.probes)
        out = np.full(len(probes), np.nan)
        if n == 0:
            return out
        order = np.argsort(self._cb_pos[:n], kind="stable")
        pos = self._cb_pos[:n][order]
        tim = self._cb_time[:n][order]
        for i, (arrival, block) in enumerate(probes):
            idx = self.core.output_index_of_block(block)
            k = int(np.searchsorted(pos, idx, side="right")) - 1
            if 0 <= k < n - 1:
                out[i] = tim[k] + (idx - pos[k]) / self.device_rate - arrival
        return out


def resampler_holdback(rate_in: int, rate_out: int, chunk: int, quality: str = DEFAULT_RESAMPLER) -> float:
    """The most output samples a streaming :class:`~.core.Resampler` holds back behind its input, fed
    ``chunk`` samples at a time (measured on a throwaway stream of zeros)."""
    from .core import Resampler

    r = Resampler(rate_in, rate_out, chunk=chunk, quality=quality)
    got = worst = 0.0
    z = np.zeros(chunk, np.float32)
    for k in range(1, 65):
        got += len(r(z))
        worst = max(worst, k * chunk * rate_out / rate_in - got)
    return worst
