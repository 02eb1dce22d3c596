"""The ``sceneleap`` command: one argparse tree, each subcommand in its own module.

A subcommand is a module ``sceneleap_core/cli/<name>_cmd.py`` exposing ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed namespace and returning an
exit code. Modules are discovered by name, so adding a command touches no other file; they import
heavy dependencies inside ``func`` so ``sceneleap --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from sceneleap_core import __version__


def _subcommand_modules() -> list:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sceneleap",
        description="SceneLeapUltra: dexterous grasps for the LEAP Hand from depth point clouds.",
    )
    parser.add_argument("--version", action="version", version=f"sceneleap {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _subcommand_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # bad input: a clear one-line message, no traceback
        print(f"sceneleap {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
