"""The committed-results log: what collector sinks got, appended at each commit.

A resumed app starts with the results its collectors had committed. The log is
a file of records (sink step id, result count, payload length, CRC-32, then the
pickled batch as the worker sent it); a manifest names the file and how far it
reaches. With a bounded collector (``keep``) the log is compacted once it holds
twice that many results: the newest records holding at least ``keep`` results
go to a new file, written and fsynced before any manifest names it, and the
old file goes once no kept manifest names it. So the log stays within about
twice ``keep`` results, and a resume reads no more than that.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import zlib
from typing import Optional

from ..engine.epochs import CorruptCheckpoint

_RECORD = struct.Struct(">IIII")  # sink step id, results, payload length, crc32 of the payload
LOG_NAME = re.compile(r"results-(\d+)\.log$")


class ResultsLog:
    """The log of one checkpoint directory; ``fields()`` go into each manifest."""

    def __init__(self, directory: str, keep: Optional[int]):
        self.dir = directory
        self.keep = keep
        self.name = "results-0.log"
        self.offset = 0  # bytes committed in the current file
        self.count = 0  # results committed in the current file
        self.base = 0  # global index of the file's first result

    def fields(self) -> dict:
        return {"results_file": self.name, "results_offset": self.offset,
                "results_count": self.count, "results_base": self.base}

    def path(self, name: Optional[str] = None) -> str:
        return os.path.join(self.dir, name or self.name)

    def append(self, batches: list) -> None:
        """``batches``: (sink step id, result count, pickled values), fsynced."""
        with open(self.path(), "ab") as f:
            f.seek(self.offset)
            f.truncate()  # anything after the committed offset is from a commit cut short
            for sid, n, payload in batches:
                f.write(_RECORD.pack(sid, n, len(payload), zlib.crc32(payload)))
                f.write(payload)
                self.count += n
            f.flush()
            os.fsync(f.fileno())
            self.offset = f.tell()
        if self.keep is not None and self.count > 2 * self.keep:
            self._compact()

    def _compact(self) -> None:
        records = self._records(self.name, self.offset, decode=False)
        tail, held = [], 0
        for rec in reversed(records):
            if held >= self.keep:
                break
            tail.append(rec)
            held += rec[1]
        tail.reverse()
        name = f"results-{int(LOG_NAME.match(self.name).group(1)) + 1}.log"
        tmp = self.path(name) + ".tmp"
        with open(tmp, "wb") as f:
            for sid, n, payload in tail:
                f.write(_RECORD.pack(sid, n, len(payload), zlib.crc32(payload)))
                f.write(payload)
            f.flush()
            os.fsync(f.fileno())
            offset = f.tell()
        os.replace(tmp, self.path(name))
        self.base += self.count - held
        self.name, self.offset, self.count = name, offset, held

    def resume(self, fields: dict) -> tuple[int, list]:
        """Take up the log as ``fields`` (a manifest's) left it; return the global index
        of its first result and its (sink step id, values) batches."""
        self.name = fields["results_file"]
        self.offset = fields["results_offset"]
        self.count = fields["results_count"]
        self.base = fields["results_base"]
        if _size(self.path()) > self.offset:
            with open(self.path(), "r+b") as f:
                f.truncate(self.offset)  # a commit cut short
        return self.base, [(sid, values) for sid, _n, values in
                           self._records(self.name, self.offset, decode=True)]

    def check(self, fields: dict) -> None:
        """CorruptCheckpoint unless the file ``fields`` names reaches its offset."""
        path = self.path(fields["results_file"])
        if fields["results_offset"] and _size(path) < fields["results_offset"]:
            raise CorruptCheckpoint(f"{path}: shorter than its manifest committed")

    def _records(self, name: str, offset: int, decode: bool) -> list:
        out: list = []
        if offset == 0:
            return out
        path = self.path(name)
        with open(path, "rb") as f:
            while f.tell() < offset:
                sid, n, length, crc = _RECORD.unpack(f.read(_RECORD.size))
                payload = f.read(length)
                if zlib.crc32(payload) != crc:
                    raise CorruptCheckpoint(f"{path}: a committed record is damaged")
                out.append((sid, n, pickle.loads(payload) if decode else payload))
        return out

    def collect_garbage(self, in_use: set) -> None:
        """Delete log files no kept manifest names (never the current one)."""
        for f in os.listdir(self.dir):
            if LOG_NAME.match(f) and f != self.name and f not in in_use:
                os.unlink(os.path.join(self.dir, f))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
