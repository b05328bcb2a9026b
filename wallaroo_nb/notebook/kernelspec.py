"""The "Python 3 (wallaroo_nb)" Jupyter kernel spec: ipykernel with the extension loaded.

`install_kernel` writes it with the current interpreter, so a kernel started from it
sees the same wallaroo_nb that installed it. `wallaroo-nb install-kernel` calls `main`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

KERNEL_NAME = "wallaroo_nb"
DISPLAY_NAME = "Python 3 (wallaroo_nb)"
EXTENSION = "wallaroo_nb.notebook.extension"


def kernel_spec(python: str = sys.executable, with_extension: bool = True) -> dict[str, Any]:
    """The kernel.json contents for a kernel run by `python`.

    `extra_extensions` (not `extensions`) adds ours without replacing the user's own list.
    Without the extension it is the plain "Python 3 (ipykernel)" kernel (tests use it to
    show that the tutorials need nothing more).
    """
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if not with_extension:
        return {"argv": argv, "display_name": "Python 3 (ipykernel)", "language": "python",
                "metadata": {"debugger": True}}
    return {
        "argv": argv + [f"--InteractiveShellApp.extra_extensions={EXTENSION}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }


def write_kernel_spec(directory: str | Path, python: str = sys.executable,
                      with_extension: bool = True) -> Path:
    """Write kernel.json into `directory` (created if needed); return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(kernel_spec(python, with_extension), indent=1) + "\n"
    (directory / "kernel.json").write_text(text, encoding="utf-8")
    return directory


def install_kernel(user: bool = False, sys_prefix: bool = False, prefix: str | None = None) -> str:
    """Install the spec as `wallaroo_nb`; return where it went.

    Default is system-wide, like `python -m ipykernel install`; `user` targets the
    user's data dir, `sys_prefix` this environment, `prefix` any other prefix.
    """
    if sum([user, sys_prefix, prefix is not None]) > 1:
        raise ValueError("choose at most one of user, sys_prefix, prefix")
    from jupyter_client.kernelspec import KernelSpecManager

    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory() as tmp:
        source = write_kernel_spec(Path(tmp) / KERNEL_NAME)
        return KernelSpecManager().install_kernel_spec(
            str(source), KERNEL_NAME, user=user, prefix=prefix
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the install-kernel options (--user, --sys-prefix, --prefix) to `parser`."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument(
        "--sys-prefix", action="store_true", help=f"install into this environment ({sys.prefix})"
    )
    where.add_argument("--prefix", default=None, help="install under this prefix")


def main(args: argparse.Namespace) -> int:
    """Run `install-kernel` with parsed `args`; print where the spec went."""
    path = install_kernel(user=args.user, sys_prefix=args.sys_prefix, prefix=args.prefix)
    print(f"Installed kernel spec {KERNEL_NAME!r} ({DISPLAY_NAME}) in {path}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
