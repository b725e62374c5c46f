"""``sonolatent``: the command-line entry point.

Each subcommand lives in its own module under ``sonolatent.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
function ``(args) -> int``. Modules are imported lazily by name, so a command
that never touches torch (the MIDI bridge) does not import it.

Every :class:`~sonolatent.errors.SonolatentError` becomes one line on stderr
and exit status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import textwrap

from .. import __version__
from ..errors import SonolatentError

#: (command, module, one-line help). Order is the order shown in --help.
COMMANDS = [
    ("reconstruct", "reconstruct", "write what the model makes of a sound file"),
    ("morph", "morph", "render a morph between two sound files"),
    ("render", "render", "render a morph score (TOML)"),
    ("transfer", "transfer", "move a recording toward a sample's timbre (the live input's path)"),
    ("map", "plots", "picture a folder of sounds in the latent space"),
    ("traverse", "plots", "picture spectrograms along one latent coordinate"),
    ("serve", "serve", "run the real-time daemon controlled over OSC"),
    ("bounce", "serve", "re-render a logged OSC performance offline"),
    ("bridge", "bridge", "MIDI-to-OSC bridge for playing the daemon"),
    ("eval", "evaluate", "measure reconstruction quality and speed against Griffin-Lim"),
    ("dataset", "dataset", "build a training set (soundfont renders or a folder)"),
    ("train", "train", "train the VAE or the vocoder"),
    ("recipe", "recipe", "reproduce the shipped checkpoints from scratch"),
]

EPILOG = """\
Data flow: sound file -> mel -> VAE encoder -> latent trajectory -> (morph,
OSC, MIDI) -> VAE decoder -> mel -> vocoder -> audio. Every command that uses a
model takes --checkpoint DIR (default: the shipped checkpoints/default).
Run 'sonolatent COMMAND --help' for a command's options."""


class Parser(argparse.ArgumentParser):
    """The class of every sonolatent parser (sub-commands inherit it): the description is wrapped to
    the terminal, one paragraph at a time, whatever the command's formatter; a paragraph with an
    indented line (a list, a table) is kept as written, and so is the epilog (examples, formats)."""

    def format_help(self) -> str:
        text = self.description
        if text:
            width = max(40, shutil.get_terminal_size().columns - 2)
            paragraphs = [p if any(line[:1].isspace() for line in p.splitlines()) else
                          textwrap.fill(" ".join(p.split()), width) for p in text.strip().split("\n\n")]
            self.description = "\n\n".join(paragraphs)
        try:
            return super().format_help()
        finally:
            self.description = text


class _TopFormatter(argparse.RawDescriptionHelpFormatter):
    """Room for the longest command name beside its help line."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)
        self._action_max_length = 17


def _wanted(argv: list[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="sonolatent",
        description="sonolatent: morph between sounds through a learned latent space, offline or live.",
        epilog=EPILOG,
        formatter_class=_TopFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sonolatent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = {c for c, _, _ in COMMANDS}
    wanted = _wanted(argv or [])
    # Running one command: import only its module (a torch-free command stays torch-free).
    # Otherwise (top-level --help): import every module once, in the listed order.
    modules = [m for c, m, _ in COMMANDS if c == wanted] if wanted in names else [m for _, m, _ in COMMANDS]
    for module in dict.fromkeys(modules):
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(f"{__package__}.{module}"):
                continue  # command not built
            raise
        mod.register(sub)
    for name, _, helptext in COMMANDS:
        if name not in sub.choices:  # listed by name only; its module is not imported
            sub.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        return int(args.func(args) or 0)
    except SonolatentError as e:
        print(f"sonolatent: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sonolatent: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
