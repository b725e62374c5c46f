"""Dry run of the control surface without audio: ``python -m sonolatent.control [--port N] ...``.

Serves the full namespace over OSC and OSCQuery against a
:class:`~sonolatent.control.target.RecordingTarget` (values are stored and
answered, nothing sounds). Prints one line with where it listens, then runs
until Ctrl-C, SIGTERM or ``/sono/quit``. Torch-free.
"""

from __future__ import annotations

import argparse
import signal
import sys

from ..errors import SonolatentError
from ..params.namespace import MAX_SLOTS, build_namespace
from .surface import ControlSurface, add_control_arguments
from .target import RecordingTarget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sonolatent.control",
                                     description="Serve the OSC namespace without audio (values are stored and answered).")
    add_control_arguments(parser)
    parser.add_argument("--latent-dim", type=int, default=16, help="latent coordinates to expose (default: 16)")
    args = parser.parse_args(argv)
    try:
        if not 1 <= args.latent_dim <= 256:
            raise SonolatentError(f"--latent-dim: {args.latent_dim} is not between 1 and 256")
        target = RecordingTarget(build_namespace(args.latent_dim, MAX_SLOTS), history=1000)
        surface = ControlSurface.from_args(target, args).start()
    except SonolatentError as e:
        print(f"sonolatent: error: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: target.quit_event.set())
    print(f"sonolatent control (no audio): {surface.describe()}", flush=True)
    try:
        while not target.quit_event.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        surface.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
