"""The ``wallaroo-nb`` command: subcommands, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help); each module has add_arguments(parser) and main(args)
COMMANDS = {
    "demo": ("wallaroo_nb.demo", "run a word count on worker processes and print the results"),
    "install-kernel": ("wallaroo_nb.notebook.kernelspec",
                       "install the 'Python 3 (wallaroo_nb)' Jupyter kernel"),
}


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="wallaroo-nb", description="Wallaroo's API on worker processes")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (mod, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(_module=mod)
        importlib.import_module(mod).add_arguments(sp)
    args = p.parse_args(argv)
    return importlib.import_module(args._module).main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
