"""``sonolatent bridge``: play the daemon from a MIDI controller (or a MIDI file).

Torch-free: everything heavy is imported inside :func:`run`, and only from
``sonolatent.midi``.
"""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  sonolatent bridge --list
  sonolatent bridge --map patches/midi/modwheel_morph.toml --in "Keystation"
  sonolatent bridge --patch patches/morph_modwheel.toml --in "Keystation"   (the patch's [midi] map)
  sonolatent bridge --patch patches/mpe.toml --in "Seaboard"   (MPE: per-note bend, pressure, slide)
  sonolatent bridge --map patches/midi/drone_knobs.toml --api jack --virtual
  sonolatent bridge --map my.toml --learn /sono/latent/0/norm     (move a knob: bound and saved)
  sonolatent bridge --map patches/midi/modwheel_morph.toml --midi-file song.mid
  oscsend localhost 9001 /sono/midi/learn s /sono/morph             (learn while running)

Mapping files are TOML ([osc], [notes], [pitchbend], [program], [[cc]], [[nrpn]],
[[aftertouch]]); see docs/midi.md."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bridge",
        help="MIDI-to-OSC bridge for playing the daemon",
        description="Map MIDI controls (CC, 14-bit CC, NRPN, keys, pitch bend, aftertouch, program "
                    "change) to the daemon's OSC addresses, live from a port or from a MIDI file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--map", metavar="FILE", help="mapping file (TOML), e.g. patches/midi/modwheel_morph.toml")
    p.add_argument("--patch", metavar="FILE",
                   help="a patch (e.g. patches/morph_modwheel.toml): use the mapping its [midi] map names")
    p.add_argument("--in", dest="port", metavar="PORT",
                   help="MIDI input port: its full name or a unique part of it (default: the first one)")
    p.add_argument("--to", action="append", metavar="HOST:PORT",
                   help="where OSC goes (repeatable; default: the mapping's [osc] host:port, 127.0.0.1:9000)")
    p.add_argument("--api", choices=("alsa", "jack"),
                   help="MIDI system (default: alsa on Linux); jack needs a running JACK server")
    p.add_argument("--virtual", action="store_true",
                   help="make a virtual input port (NAME:midi_in) for other programs to connect to")
    p.add_argument("--name", default="sonolatent-bridge", metavar="NAME",
                   help="MIDI client name (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list MIDI input ports and exit")
    p.add_argument("--learn", metavar="ADDRESS",
                   help="bind the next control that moves to ADDRESS, save --map, keep running")
    p.add_argument("--control", metavar="HOST:PORT",
                   help="OSC control port for /sono/midi/learn (default: 127.0.0.1:9001 from [osc]; "
                        "off with --midi-file unless given)")
    p.add_argument("--no-control", action="store_true", help="do not open the OSC control port")
    p.add_argument("--allow", action="append", metavar="CIDR",
                   help="also accept control messages from these addresses, e.g. 192.168.1.0/24 (repeatable; "
                        "loopback is always accepted unless --no-loopback)")
    p.add_argument("--no-loopback", action="store_true",
                   help="do not accept control messages from this machine unless --allow names it")
    p.add_argument("--midi-file", metavar="SONG.mid", help="play a standard MIDI file through the mapping")
    p.add_argument("--freewheel", action="store_true", help="with --midi-file: as fast as possible")
    p.add_argument("--verbose", "-v", action="store_true", help="print every MIDI message and what it sent")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import SonolatentError
    from ..midi.bridge import Bridge, BridgeOptions, stderr_log
    from ..midi.mapping import Mapping, load_mapping
    from ..midi.osc_out import parse_hostport
    from ..midi.ports import MidiInput, default_api, list_inputs

    api = args.api or default_api()
    if args.list:
        names = list_inputs(api, quiet=not args.verbose)
        print(f"MIDI inputs ({api or 'default'} API):")
        for name in names:
            print(f"  {name}")
        if not names:
            print("  (none)")
        return 0
    if args.patch:
        if args.map:
            raise SonolatentError("--map and --patch both name a mapping: give one")
        args.map = str(patch_mapping(args.patch))
    if not args.map:
        raise SonolatentError("bridge: --map FILE is required (a mapping file, e.g. patches/midi/modwheel_morph.toml, "
                              "or --patch with a patch that names one)")
    if args.freewheel and not args.midi_file:
        raise SonolatentError("--freewheel only goes with --midi-file")
    if args.midi_file and (args.port or args.virtual):
        raise SonolatentError("--midi-file plays a file; it does not go with --in or --virtual")
    if args.port and args.virtual:
        raise SonolatentError("--in opens an existing port, --virtual makes a new one: pick one")
    if args.control and args.no_control:
        raise SonolatentError("--control and --no-control contradict each other")

    map_path = Path(args.map)
    if not map_path.exists() and args.learn:
        mapping = Mapping()
        stderr_log(f"{map_path} does not exist yet; MIDI learn will create it")
    else:
        mapping = load_mapping(map_path)

    destinations = [parse_hostport(t, "--to") for t in args.to] if args.to else [(mapping.osc.host, mapping.osc.port)]
    for host, port in destinations:
        if port == 0:
            raise SonolatentError(f"--to {host}:{port}: port 0 is not a destination")
    if args.no_control:
        control = None
    elif args.control:
        control = parse_hostport(args.control, "--control")
    elif args.midi_file:
        control = None
    else:
        control = (mapping.osc.control_host, mapping.osc.control_port)

    if control is not None:
        from ..control.guard import parse_allow
        parse_allow(args.allow, not args.no_loopback)   # a bad --allow is a one-line error before anything opens
    options = BridgeOptions(mapping_path=map_path, destinations=destinations, control=control,
                            allow=args.allow, loopback=not args.no_loopback,
                            learn=args.learn, verbose=args.verbose)
    bridge = Bridge(mapping, options)
    if args.midi_file:
        return bridge.play_file(Path(args.midi_file), freewheel=args.freewheel)
    return bridge.run_live(lambda on_bytes: MidiInput(api, args.port, args.virtual, on_bytes,
                                                      client_name=args.name, quiet=not args.verbose))


def patch_mapping(path: str) -> "Path":
    """The mapping file a patch names in ``[midi] map`` (the patch is checked whole; torch-free)."""
    from pathlib import Path

    from ..engine.patch import load_patch
    from ..errors import ConfigError

    patch = load_patch(Path(path))
    mapping = patch.midi_map_path()
    if mapping is None:
        raise ConfigError(f"{patch.source}: the patch names no mapping ([midi] map = \"midi/NAME.toml\")")
    if not mapping.is_file():
        raise ConfigError(f"{patch.where('midi', 'map')}: mapping file {mapping} not found")
    return mapping
