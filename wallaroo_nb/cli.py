"""The ``wallaroo-nb`` command: subcommands, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable

# name -> (target, help). A target "module" has add_arguments(parser) and main(args);
# "module:prefix" has prefix_add_arguments and prefix_main instead. A module with
# ACCEPTS_APP_ARGS = True gets the arguments it does not know too, in args.argv.
COMMANDS = {
    "run": ("wallaroo_nb.runner", "run a Wallaroo application module (application_setup(args))"),
    "send": ("wallaroo_nb.tools.sendrecv:send", "send framed records to a TCP source"),
    "receive": ("wallaroo_nb.tools.sendrecv:receive",
                "listen for a TCP sink and write what arrives"),
    "scale": ("wallaroo_nb.tools.external",
              "grow or shrink a running `wallaroo-nb run --external HOST:PORT` app"),
    "demo": ("wallaroo_nb.demo", "run a word count on worker processes and print the results"),
    "install-kernel": ("wallaroo_nb.notebook.kernelspec",
                       "install the 'Python 3 (wallaroo_nb)' Jupyter kernel"),
}


def _resolve(target: str) -> tuple[Any, Callable, Callable]:
    """(module, add_arguments, main) for a COMMANDS target."""
    name, _, prefix = target.partition(":")
    mod = importlib.import_module(name)
    pre = f"{prefix}_" if prefix else ""
    return mod, getattr(mod, pre + "add_arguments"), getattr(mod, pre + "main")


def main(argv: list | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="wallaroo-nb", description="Wallaroo's API on worker processes")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (target, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, allow_abbrev=False)
        sp.set_defaults(_target=target)
        _resolve(target)[1](sp)
    args, extra = p.parse_known_args(argv)
    mod, _, run = _resolve(args._target)
    if extra and not getattr(mod, "ACCEPTS_APP_ARGS", False):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    # everything after the subcommand's name, as the application would see it
    args.argv = argv[argv.index(args.command) + 1:]
    return run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
