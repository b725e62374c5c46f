"""``sonolatent serve`` (the real-time daemon played over OSC) and ``sonolatent bounce`` (offline replay)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import SonolatentError

_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SAMPLES = _ROOT / "patches" / "samples"
DEFAULT_PATCHES = _ROOT / "patches"


def register(subparsers) -> None:
    # sonolatent.cli.main lists the command not being run as a bare parser (before or after
    # this module registers): add only the parsers that are ours to add.
    have = subparsers.choices
    running_other = any(getattr(p, "add_help", True) is False for p in have.values())
    serve_was_listed = "serve" in have
    if "serve" not in have:
        _register_serve(subparsers)
    if "bounce" not in have and (serve_was_listed or not running_other):
        _register_bounce(subparsers)


def _register_serve(subparsers) -> None:
    from ..control.surface import add_control_arguments
    from ..engine.safety import add_safety_arguments

    p = subparsers.add_parser(
        "serve", help="run the real-time daemon controlled over OSC",
        description="Run the instrument: slots of sounds encoded to latent trajectories, a playhead, blends "
                    "and latent offsets, decoded live through the streaming VAE decoder and vocoder, "
                    "controlled over OSC (UDP) with an OSCQuery tree (HTTP and WebSocket) and a browser surface.",
        epilog="examples:\n"
               "  sonolatent serve --patch my.toml\n"
               "  sonolatent serve --no-audio --record take.wav --log-osc take.jsonl\n"
               "  oscsend 127.0.0.1 9000 /sono/slot/0/load s piano_c4 ; oscsend 127.0.0.1 9000 /sono/play f 1\n"
               "  browser surface: http://127.0.0.1:9000/ (a phone on the LAN: --host 0.0.0.0 --allow 192.168.1.0/24)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="model bundle folder with vae/ and vocoder/ (default: checkpoints/default)")
    p.add_argument("--patch", default=None, metavar="FILE", help="patch to start with (TOML: [patch] [slots] [params] [play] [midi]; see docs/patches.md)")
    p.add_argument("--samples", default=None, metavar="DIR",
                   help="folder that slot names are resolved in (default: patches/samples)")
    p.add_argument("--patches", default=None, metavar="DIR",
                   help="folder for /sono/patch/save and /sono/patch/load (default: the --patch file's folder, "
                        "else patches/)")
    p.add_argument("--voices", type=int, default=8, metavar="N",
                   help="voices: notes that sound at once (/sono/note/on; default: 8; 1..64)")
    a = p.add_argument_group("audio")
    a.add_argument("--channels", type=int, default=1, choices=(1, 2),
                   help="1 mono, 2 stereo: voices panned (/sono/pan, /sono/spread) and widened (/sono/width); "
                        "the take and its bounce are stereo (default: 1)")
    a.add_argument("--device", default=None, help="output device (number or name; see --list-devices)")
    a.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    a.add_argument("--input", default=None, metavar="DEVICE",
                   help="play a live input (number or name of an input device; with JACK its port is PortAudio:in_0) "
                        "through the latent space: it goes into slot 0 and the voice starts (see docs/engine.md)")
    a.add_argument("--block-size", type=int, default=256, metavar="N", help="device block size in samples (default: 256)")
    a.add_argument("--buffer-ms", type=buffer_ms_arg, default=None, metavar="MS|auto",
                   help="safety margin rendered ahead of the device, on top of one block: milliseconds, or auto "
                        "(default): what a frame takes to render, plus 1 ms, 3..40 ms (one voice needs less than "
                        "eight); a fixed value where a steady latency matters more")
    a.add_argument("--rt-priority", type=int, default=10, metavar="N",
                   help="real-time (SCHED_FIFO) priority asked for the thread that renders ahead of the device, "
                        "below JACK's own; 0 for normal scheduling. Needs permission (root, CAP_SYS_NICE or an "
                        "rtprio limit, as for jackd -R); without it the engine runs at normal priority "
                        "(default: 10)")
    a.add_argument("--resampler", default="lq", choices=("lq", "hq"),
                   help="model rate -> device rate: lq holds back 0.5 ms and is flat to 16 kHz, hq holds back "
                        "5.4 ms and is flat to 20 kHz (default: lq; a bounce follows the take)")
    a.add_argument("--no-audio", action="store_true", help="no sound card: run on the engine's own real-time clock")
    a.add_argument("--freewheel", action="store_true", help="with --no-audio: render as fast as possible (needs --duration)")
    a.add_argument("--rate", type=int, default=None, metavar="HZ",
                   help="output sample rate (default: the device's; 44100 without a device)")
    a.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="fade out and stop after this much audio")
    a.add_argument("--record", default=None, metavar="OUT.wav", help="write what is played (32-bit float WAV)")
    a.add_argument("--takes", default=None, metavar="DIR",
                   help="where a take goes when no sound card is found and no --record is given "
                        "(default: $XDG_DATA_HOME/sonolatent/takes, i.e. ~/.local/share/sonolatent/takes)")
    a.add_argument("--log-osc", default=None, metavar="FILE",
                   help="log every applied change with its block (JSON lines) for 'sonolatent bounce'")
    add_safety_arguments(a)
    add_control_arguments(p)
    # older spellings of --host and --oscquery-port: still accepted, not listed in --help
    p.add_argument("--bind", dest="host", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--http-port", dest="oscquery_port", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    # the OSC/OSCQuery surface in the engine's own process, as before the split (for comparisons only)
    p.add_argument("--control-in-process", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run_serve)


def _register_bounce(subparsers) -> None:
    from ..engine.safety import add_safety_arguments

    p = subparsers.add_parser(
        "bounce", help="re-render a logged OSC performance offline",
        description="Replay a performance log written by 'serve --log-osc' through the same engine, offline, "
                    "and write the result: the same samples that the daemon played (its --record).",
        epilog="example: sonolatent bounce take.jsonl -o take-bounce.wav")
    p.add_argument("log", metavar="LOG", help="performance log (JSON lines) from serve --log-osc")
    p.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="output WAV")
    p.add_argument("--checkpoint", default=None, metavar="DIR", help="model bundle (default: the one in the log)")
    p.add_argument("--samples", default=None, metavar="DIR", help="sample folder (default: the one in the log)")
    p.add_argument("--format", default="float", choices=("16", "24", "float"), help="WAV sample format (default: float)")
    add_safety_arguments(p, default=None)
    p.set_defaults(func=run_bounce)


# ----------------------------------------------------------------------------------------------------
def _list_devices() -> int:
    try:
        import sounddevice as sd
    except OSError as e:
        raise SonolatentError(f"no audio system available ({e})") from None
    print(sd.query_devices())
    return 0


def _have_output_device(device) -> str | None:
    """None when an output device can be used, else the reason why not."""
    try:
        import sounddevice as sd
        sd.query_devices(device, kind="output")
    except OSError as e:  # PortAudio library missing
        return str(e)
    except Exception as e:  # sd.PortAudioError, ValueError: no such/no default device
        return str(e)
    return None


def takes_folder(option: str | None = None) -> Path:
    """Where takes recorded for want of a sound card go: ``--takes``, else ``$XDG_DATA_HOME/sonolatent/takes``
    (``~/.local/share/sonolatent/takes`` when XDG_DATA_HOME is not set)."""
    if option:
        return Path(option).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sonolatent" / "takes"


def default_take_name(folder: str | Path) -> str:
    """``FOLDER/sonolatent-take-YYYYmmdd-HHMMSS.wav`` (``-2``, ``-3``... when it exists); the folder is made."""
    import time

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SonolatentError(f"takes folder {folder}: cannot create it ({e.strerror or e})") from None
    stem = f"sonolatent-take-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = f"{stem}.wav", 1
    while (folder / name).exists():
        n += 1
        name = f"{stem}-{n}.wav"
    return str(folder / name)


def run_serve(args) -> int:
    import signal
    import threading

    if args.list_devices:
        return _list_devices()
    if args.freewheel and args.duration is None:
        raise SonolatentError("--freewheel renders as fast as possible: give --duration SECONDS")
    if args.duration is not None and args.duration <= 0:
        raise SonolatentError(f"--duration {args.duration}: must be positive")
    if not 1 <= args.voices <= 64:
        raise SonolatentError(f"--voices {args.voices}: must be 1..64")
    if args.rate is not None and not 8000 <= args.rate <= 384000:
        raise SonolatentError(f"--rate {args.rate}: must be 8000..384000")
    samples = Path(args.samples) if args.samples else DEFAULT_SAMPLES
    if args.samples and not samples.is_dir():
        raise SonolatentError(f"--samples {samples}: folder not found")
    patches = Path(args.patches) if args.patches else (Path(args.patch).parent if args.patch else DEFAULT_PATCHES)

    if args.device is not None and args.device.strip().lstrip("-").isdigit():
        args.device = int(args.device)
    if args.input is not None and args.input.strip().lstrip("-").isdigit():
        args.input = int(args.input)
    if args.input is not None and (args.no_audio or args.freewheel):
        raise SonolatentError("--input needs a sound card (it cannot be combined with --no-audio or --freewheel)")
    mode = "device"
    if args.freewheel:
        mode = "freewheel"
    elif args.no_audio:
        mode = "headless"
    else:
        why = _have_output_device(args.device)
        if why is not None:
            if args.device is not None or args.input is not None:
                raise SonolatentError(f"--{'device' if args.device is not None else 'input'} "
                                      f"{args.device if args.device is not None else args.input}: no usable audio ({why})")
            mode = "headless"
            if args.record is None:
                # the performance would be lost: record it, so the first run always gives something to hear
                args.record = default_take_name(takes_folder(args.takes))
                print(f"sonolatent: no audio output device ({why}); running headless as with --no-audio, "
                      f"recording to {args.record}", file=sys.stderr)
            else:
                print(f"sonolatent: no audio output device ({why}); running headless as with --no-audio",
                      file=sys.stderr)

    from ..outputs import report_stale_parts

    report_stale_parts(*(Path(p).parent for p in (args.record, args.log_osc) if p), patches)

    import torch

    from ..control.netproc import NetworkProcess
    from ..control.surface import ControlSurface
    from ..engine.runtime import Engine
    from ..engine.safety import config_from_args
    from ..models import load_bundle
    from ..models.synth import StreamingSynth

    torch.set_num_threads(1)          # one core for the model; the callback and OSC need the rest
    sys.setswitchinterval(0.0002)     # the callback waits at most ~0.2 ms for the GIL
    bundle = load_bundle(args.checkpoint)
    live = None
    if args.input is not None:
        from ..models.encoder import LiveEncoder
        try:
            live = LiveEncoder(bundle)
        except SonolatentError as e:
            raise SonolatentError(f"--input: {bundle.folder}: {e}") from None
    engine = Engine(StreamingSynth(bundle), samples_dir=samples, mode=mode, device_rate=args.rate, block_size=args.block_size,
                    safety_ms=args.buffer_ms, device=args.device, record=args.record, log_osc=args.log_osc,
                    patches_dir=patches, duration=args.duration, checkpoint=str(bundle.folder), voices=args.voices,
                    channels=args.channels, safety=config_from_args(args), input_device=args.input, live_encoder=live,
                    resampler=args.resampler, rt_priority=args.rt_priority)
    surface = None
    ok = False
    try:
        if args.patch:
            engine.load_patch_file(args.patch)
        if args.input is not None and engine.core.live_slot < 0:   # the patch did not place it: slot 0, playing
            engine.preload(changes=[("/sono/input/slot", (0,)), ("/sono/play", (1.0,))])
        # OSC and OSCQuery run in a process of their own (control/netproc.py): parsing and answering
        # never hold the interpreter lock the producer and the callback need
        if getattr(args, "control_in_process", False):
            surface = ControlSurface.from_args(engine, args).start()
            host, port = surface.osc.address
        else:
            surface = NetworkProcess.from_args(engine, args).start()
            host, port = surface.address
        if mode == "device":
            where = f"audio: {_device_name(engine)} at {engine.device_rate} Hz, block {engine.block_size}"
            if args.input is not None:
                ms = 1e3 * engine.input_latency / engine.device_rate
                where += (f"; live input in slot {engine.core.live_slot}, input to output "
                          f"{engine.input_latency} samples ({ms:.1f} ms)")
        elif mode == "headless":
            where = f"no audio: own real-time clock at {engine.device_rate} Hz"
        else:
            where = f"freewheel at {engine.device_rate} Hz for {args.duration:g} s"
        print(f"sonolatent serve: {surface.describe()}; {where}", flush=True)
        if engine.patch is not None:
            pt = engine.patch
            print(f"  patch {pt.name}: {pt.description or '(no description)'}"
                  f"{' (playing)' if pt.autoplay else ''}", flush=True)
            if pt.midi_map:
                print(f"  MIDI: sonolatent bridge --patch {args.patch} --in PORT", flush=True)
        print(f"  try: oscsend {host} {port} /sono/slot/0/load s NAME ; oscsend {host} {port} /sono/play f 1",
              flush=True)

        hits = [0]

        def on_signal(signum, frame):
            hits[0] += 1
            if hits[0] > 1:
                raise KeyboardInterrupt
            engine.request_quit()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
        engine.start()
        engine.wait()
        ok = True
    except KeyboardInterrupt:
        ok = engine.core.block > 0     # interrupted while playing: keep what was recorded
        raise
    finally:
        if surface is not None:
            surface.stop()
        engine.close(abort=not ok)     # a failed start leaves no output files behind
    st = engine.status()
    if args.record and ok:
        print(f"sonolatent serve: recorded {args.record}", flush=True)
    print(stop_line(st), flush=True)
    return 0


def buffer_ms_arg(text: str) -> float | None:
    """``--buffer-ms``: ``auto`` (None) or milliseconds, 0..1000."""
    if text == "auto":
        return None
    try:
        ms = float(text)
    except ValueError:
        ms = float("nan")
    if not 0.0 <= ms <= 1000.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 'auto' or 0..1000 milliseconds")
    return ms


def stop_line(st: dict) -> str:
    """The closing summary from ``Engine.status()``; the first underflow's callback only when there was one."""
    first = f" (first at callback {st['underflow_first_callback']})" if st["underflows"] else ""
    return (f"sonolatent serve: stopped after {st['blocks']} blocks, {st['callbacks']} callbacks; "
            f"underflows {st['underflows']}{first}, "
            f"ring underruns {st['ring_underruns']}, render {st['render_ms_mean']:.2f} ms mean / "
            f"{st['render_ms_max']:.2f} ms max per {st['frame_ms']:.1f} ms block; producer "
            + (f"at real-time priority {st['rt_priority']}" if st.get("rt_priority") else "at normal priority"))


def _device_name(engine) -> str:
    try:
        import sounddevice as sd
        return str(sd.query_devices(engine.stream.device)["name"])
    except Exception:
        return "default"


def run_bounce(args) -> int:
    import torch

    from ..audio.io import write_audio
    from ..engine.bounce import bounce, read_log
    from ..engine.safety import SafetyConfig, config_from_args
    from ..models import load_bundle
    from ..models.synth import StreamingSynth

    header, _, _ = read_log(args.log)
    torch.set_num_threads(1)
    ckpt = args.checkpoint or header.get("checkpoint")
    bundle = load_bundle(ckpt)
    samples = args.samples or header.get("samples")
    if samples and not Path(samples).is_dir():
        raise SonolatentError(f"sample folder {samples} (from {'--samples' if args.samples else 'the log'}) not found")
    y = bounce(args.log, StreamingSynth(bundle), samples_dir=samples,
               safety=config_from_args(args, SafetyConfig.from_dict(header.get("safety"))))
    rate = int(header.get("output_rate") or bundle.sample_rate)
    write_audio(args.output, y, rate, fmt=args.format)
    print(f"{args.output}: {len(y) / rate:.2f} s at {rate} Hz", flush=True)
    return 0
