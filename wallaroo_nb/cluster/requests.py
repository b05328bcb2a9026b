"""Requests from user threads to the workers, and their replies.

A user thread (a notebook cell) queues a Request and waits on its future; the
driver's I/O thread sends queued requests and files replies as they come. A
recovery or a stop cancels what is pending, so nobody waits forever.
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Iterator, Optional

from ..protocol import Reply, Request


class Pending:
    """A future for one request sent to several workers."""

    def __init__(self, n: int):
        self.values: dict = {}
        self.n = n
        self.error: Optional[BaseException] = None
        self.done = threading.Event()

    def put(self, worker: int, reply: Reply) -> None:
        self.values[worker] = reply
        if len(self.values) >= self.n:
            self.done.set()

    def cancel(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class Requests:
    """The queue of requests to send and the futures of those sent."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.pending: dict = {}
        self.ids = itertools.count(1)

    def ask(self, op: str, args: dict, targets: list) -> tuple[int, Pending]:
        """(from a user thread) Queue ``op`` for ``targets``; the I/O thread sends it."""
        req_id = next(self.ids)
        future = self.pending[req_id] = Pending(len(targets))
        self.queue.put((Request(req_id, op, args), targets))
        return req_id, future

    def forget(self, req_id: int) -> None:
        self.pending.pop(req_id, None)

    def queued(self) -> Iterator[tuple]:
        """(on the I/O thread) The requests to send now, with their targets."""
        while not self.queue.empty():
            yield self.queue.get_nowait()

    def cancel(self, req_id: int, error: BaseException) -> None:
        future = self.pending.pop(req_id, None)
        if future is not None:
            future.cancel(error)

    def cancel_all(self, error: BaseException) -> None:
        for future in list(self.pending.values()):
            future.cancel(error)
        self.pending.clear()

    def on_reply(self, w: int, reply: Reply) -> None:
        future = self.pending.get(reply.req_id)
        if future is not None:
            future.put(w, reply)
            if future.done.is_set():
                self.pending.pop(reply.req_id, None)
