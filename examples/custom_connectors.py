"""Your own sources and sinks: a replayable file source, an async-generator source,
and a JSON-lines file sink (exactly once with resilience), written against
wallaroo_nb.connectors.base.

Use them like the built-in ones:

    from custom_connectors import FileSourceConfig, AsyncGenSourceConfig, JSONLinesSinkConfig
    p = (w.source("lines", FileSourceConfig("book", "book.txt"))
         .to(split).key_by(word).to(count)
         .to_sink(JSONLinesSinkConfig("counts-{worker}.jsonl")))

docs/connectors.md explains the contract these follow.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
from typing import Any, Callable, Optional

from wallaroo_nb.connectors.base import Sink, SinkConfig, Source, SourceConfig

# -- a file source: one message per line, replayable by byte offset ----------------


class FileSource(Source):
    def __init__(self, path: str):
        self.path = path
        self.f: Any = None

    def open(self, worker: int) -> None:
        self.f = open(self.path, "rb")

    def read(self, max_n: int) -> Optional[list]:
        lines = []
        for _ in range(max_n):
            raw = self.f.readline()
            if not raw:
                break
            lines.append(raw.decode().rstrip("\n"))
        return lines or None  # None: the file is exhausted

    def position(self) -> int:
        return self.f.tell()  # the offset after the last line read

    def seek(self, position: int) -> None:
        if self.f is None:
            self.open(0)
        self.f.seek(position)

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


class FileSourceConfig(SourceConfig):
    """Each line of a text file (without its newline), in order."""

    replayable = True

    def __init__(self, name: str, path: str, event_time: Optional[Callable] = None):
        self.name, self.path, self.event_time = name, path, event_time

    def check(self) -> None:
        with open(self.path, "rb"):
            pass  # fails at build time, naming the file, if it cannot be read

    def make_source(self) -> Source:
        return FileSource(self.path)


# -- a source from an async generator ----------------------------------------------


_DONE = object()


class AsyncGenSource(Source):
    """Runs the async generator on an event loop in a thread of the worker; the
    worker loop takes what it produced from a bounded queue (so a fast generator
    waits instead of filling memory)."""

    def __init__(self, make_agen: Callable[[], Any], capacity: int):
        self.make_agen = make_agen
        self.q: queue.Queue = queue.Queue(capacity)
        self.done = False
        self.error: Optional[BaseException] = None
        self.stop = threading.Event()

    def open(self, worker: int) -> None:
        threading.Thread(target=asyncio.run, args=(self._pump(),), daemon=True).start()

    async def _pump(self) -> None:
        try:
            async for item in self.make_agen():
                while not self.stop.is_set():
                    try:
                        self.q.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        await asyncio.sleep(0.001)
                if self.stop.is_set():
                    return
        except Exception as e:  # reported through drain_errors
            self.error = e
        self.q.put(_DONE)

    def read(self, max_n: int) -> Optional[list]:
        if self.done:
            return None
        out = []
        while len(out) < max_n:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                break
            if item is _DONE:
                self.done = True
                break
            out.append(item)
        return out if out or not self.done else None

    def wait_hint(self) -> Optional[float]:
        return 0.0 if not self.q.empty() else 0.002

    def drain_errors(self) -> list:
        if self.error is None:
            return []
        e, self.error = self.error, None
        return [{"where": "async generator", "input": "", "error": f"{type(e).__name__}: {e}",
                 "traceback": ""}]

    def close(self) -> None:
        self.stop.set()


class AsyncGenSourceConfig(SourceConfig):
    """Messages from ``make_agen()``, an async generator function (not replayable:
    after a crash, what it produced since the last checkpoint is lost)."""

    def __init__(self, name: str, make_agen: Callable[[], Any], capacity: int = 10_000):
        self.name, self.make_agen, self.capacity = name, make_agen, capacity

    def make_source(self) -> Source:
        return AsyncGenSource(self.make_agen, self.capacity)


# -- a sink: JSON lines, one file per worker, exactly once with resilience ---------


class JSONLinesSink(Sink):
    """Without resilience each batch is appended and flushed as it comes. With
    resilience (``commits = True``) outputs are held until their epoch commits, then
    appended and fsynced; a checkpoint records the file's length and the epochs not
    yet written, and a restore cuts the file back to that length and writes those
    epochs again: every output exactly once, even if a worker died mid-line."""

    commits = True

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.path = ""
        self.f: Any = None
        self.holding = False
        self.held: list = []
        self.pending: list = []  # (epoch, outputs) checkpointed, not yet committed

    def open(self, worker: int) -> None:
        self.path = self.pattern.format(worker=worker)
        self.f = open(self.path, "ab")

    def write(self, batch: list) -> None:
        if self.holding:
            self.held.extend(batch)
            return
        self._append(batch)
        self.f.flush()

    def _append(self, batch: list) -> None:
        self.f.writelines(json.dumps(item).encode() + b"\n" for item in batch)

    # the exactly-once contract (wallaroo_nb.connectors.base.Sink)

    def hold(self) -> None:
        self.holding = True

    def epoch_state(self, epoch: int) -> dict:
        if self.held:
            self.pending.append((epoch, self.held))
            self.held = []
        return {"length": self.f.tell(), "pending": list(self.pending)}

    def commit(self, epoch: int) -> None:
        for _, outs in [p for p in self.pending if p[0] <= epoch]:
            self._append(outs)
        self.pending = [p for p in self.pending if p[0] > epoch]
        self._sync()

    def restore(self, state: dict) -> None:
        # a worker that rolls back in place keeps this object: what it held or had
        # checkpointed since the restored epoch is void
        self.held, self.pending = [], []
        self.f.close()
        os.truncate(self.path, state["length"])  # what came after the checkpoint goes
        self.f = open(self.path, "ab")
        for _, outs in state["pending"]:  # the restored epoch is committed: so are these
            self._append(outs)
        self._sync()

    def _sync(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class JSONLinesSinkConfig(SinkConfig):
    """Each output as a JSON line in ``pattern.format(worker=N)`` (one file per worker);
    exactly once with resilience (see JSONLinesSink)."""

    def __init__(self, pattern: str, name: str = "jsonl"):
        if "{worker}" not in pattern:
            raise ValueError(f"JSONLinesSinkConfig: {pattern!r} needs a {{worker}} field: "
                             "every worker writes its own file")
        self.pattern, self.name = pattern, name

    def make_sink(self) -> Sink:
        return JSONLinesSink(self.pattern)
