"""Growing and shrinking a ``wallaroo-nb run`` app from the command line.

Wallaroo's workers took ``--external HOST:PORT``, an external channel that its
``cluster_shrinker`` tool talked to. ``wallaroo-nb run --external HOST:PORT``
serves the same role: ``wallaroo-nb scale --external HOST:PORT N`` (or
``--grow-by K``, ``--shrink-by K``, Wallaroo's flag) asks the running app to go to
N workers and prints what it did. The channel speaks one line of text each way:
``scale N`` / ``status`` in, one JSON object out. It binds where it is told
(127.0.0.1 unless you say otherwise) and takes no code, only numbers.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
import threading
from typing import Any, Callable, Optional


def parse_addr(addr: str) -> tuple:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--external: expected host:port, got {addr!r}")
    return host or "127.0.0.1", int(port)


def answer(app: Any, line: str) -> dict:
    """One request of the channel, answered."""
    words = line.split()
    try:
        if words == ["status"]:
            return {"workers": app.worker_count, "running": app.running}
        if len(words) == 2 and words[0] == "scale" and words[1].isdigit():
            return app.scale(int(words[1]))
        return {"error": f"unknown request {line.strip()!r}: say 'scale N' or 'status'"}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def serve(app: Any, addr: str, log: Callable[[str], None]) -> Callable[[], None]:
    """Serve the channel for ``app`` on ``addr`` in a thread; returns a stop function."""
    host, port = parse_addr(addr)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                reply = answer(app, raw.decode(errors="replace"))
                if "error" not in reply and "slots_moved" in reply:
                    log(f"external: scaled to {reply['workers']} workers "
                        f"({reply['slots_moved']} slots moved in {reply['seconds']}s)")
                self.wfile.write((json.dumps(reply) + "\n").encode())
                self.wfile.flush()

    server = socketserver.ThreadingTCPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="wallaroo_nb-external",
                     daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


def request(addr: str, line: str, timeout: float = 180.0) -> dict:
    """Send one request to a running app's channel; its JSON reply."""
    with socket.create_connection(parse_addr(addr), timeout=timeout) as s:
        s.sendall(line.encode() + b"\n")
        data = s.makefile("rb").readline()
    if not data:
        raise ConnectionError(f"{addr}: the app closed the channel without an answer")
    return json.loads(data)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--external", "-e", required=True, metavar="HOST:PORT",
                   help="the app's external channel (wallaroo-nb run --external HOST:PORT)")
    p.add_argument("workers", nargs="?", type=int, help="the number of workers to go to")
    p.add_argument("--grow-by", type=int, metavar="K", help="add K workers")
    p.add_argument("--shrink-by", type=int, metavar="K", help="remove K workers (Wallaroo's)")


def main(args: argparse.Namespace) -> int:
    given = [x for x in (args.workers, args.grow_by, args.shrink_by) if x is not None]
    if len(given) != 1:
        print("wallaroo-nb scale: give one of N, --grow-by K, --shrink-by K", file=sys.stderr)
        return 2
    target: Optional[int] = args.workers
    try:
        if target is None:
            now = request(args.external, "status")["workers"]
            target = now + (args.grow_by or 0) - (args.shrink_by or 0)
        reply = request(args.external, f"scale {target}")
    except (OSError, ValueError) as e:
        print(f"wallaroo-nb scale: {e}", file=sys.stderr)
        return 2
    print(json.dumps(reply))
    return 1 if "error" in reply else 0
