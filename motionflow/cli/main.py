"""Root of the ``motionflow`` command.

Each subcommand lives in its own module of this package and exposes two functions:

* ``add_parser(subparsers) -> argparse.ArgumentParser`` declares its arguments;
* ``run(args) -> int`` does the work and returns the exit code.

Exit codes: 0 ok, 1 failure (a :class:`~motionflow.errors.MotionflowError` or an I/O error, printed
as one line on stderr), 2 bad usage (argparse errors, unknown method or dataset names), 130
interrupted (Ctrl-C; one line, no traceback: 128 + SIGINT, as shells report it).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from motionflow import __version__
from motionflow.errors import MotionflowError, UnknownNameError

# command name -> module in motionflow.cli (order = order in --help)
COMMANDS = {
    "estimate": "motionflow.cli.estimate",
    "sceneflow": "motionflow.cli.sceneflow",
    "eval": "motionflow.cli.eval",
    "train": "motionflow.cli.train",
    "demo": "motionflow.cli.demo",
    "list": "motionflow.cli.list",
    "export": "motionflow.cli.export",
}


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr (exit 2) that points to ``--help``, not the whole usage block.
    Subcommand parsers are of this class too (``add_subparsers`` uses the parent's class)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="motionflow",
        description="Estimate and evaluate motion: multi-frame optical flow for video, scene flow for lidar.",
    )
    parser.add_argument("--version", action="version", version=f"motionflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # this subcommand is not part of the installed package
                continue
            raise
        module.add_parser(sub).set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad usage: SystemExit(2) after one line on stderr
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except UnknownNameError as exc:
        print(f"motionflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (MotionflowError, OSError) as exc:
        print(f"motionflow {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"motionflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
