"""Barrier alignment for consistent checkpoints (Chandy-Lamport over the step graph).

Workers are all linked to each other, so alignment is per keyed step, not per
worker: for epoch E a worker sends ``barrier(E, S)`` to every peer once nothing
on this worker can still produce pre-E input for step S (its sources have
passed the barrier and every keyed step feeding S here is aligned), and S is
aligned once every peer's barrier for S has arrived too. Input for S from a
peer after that peer's barrier is held back until the whole epoch is done
here; sources pause from the barrier until then. Keyed steps are aligned in
topological order, so one pass per event is enough and there is no cycle.

Snapshots are files: a header (magic, length, SHA-256) and a cloudpickle
payload, written to a temporary name, fsynced and renamed.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Optional

from ..plan import Topology

MAGIC = b"WNBCKPT1"
_HEADER = struct.Struct(">8sQ32s")


class Aligner:
    """The barrier bookkeeping of one worker. One epoch is in flight at a time, so a
    barrier that arrives before this worker began the epoch is for that epoch."""

    def __init__(self, topology: Topology, me: int, n_workers: int):
        self.order = topology.keyed
        self.key_ups = topology.upstream_keyed
        self.peers = frozenset(p for p in range(n_workers) if p != me)
        self.epoch: Optional[int] = None
        self.got: dict = {s: set() for s in self.order}
        self.sent: set = set()
        self.aligned: set = set()
        self.held: list = []  # (sender, group) in arrival order
        self.closed = 0  # epochs up to this one are finished or aborted here

    @property
    def active(self) -> bool:
        return self.epoch is not None

    @property
    def busy(self) -> bool:
        """An epoch is in flight here, or a peer's barrier for the next one arrived."""
        return self.epoch is not None or bool(self.held) or any(self.got.values())

    def begin(self, epoch: int) -> None:
        self.epoch = epoch
        self.sent = set()
        self.aligned = set()

    def on_barrier(self, peer: int, step: int, epoch: int) -> None:
        if epoch > self.closed:  # a late barrier of an aborted epoch is stale
            self.got[step].add(peer)

    def holds(self, peer: int, step: int) -> bool:
        """Is data for ``step`` from ``peer`` past that peer's barrier (so: held)?"""
        return peer in self.got[step]

    def advance(self) -> list:
        """Steps whose barrier should now go to every peer; aligns what can be."""
        to_send = []
        for s in self.order:
            if s in self.aligned:
                continue
            if not self.key_ups[s] <= self.aligned:
                break  # topological order: nothing after this can be ready either
            if s not in self.sent:
                self.sent.add(s)
                to_send.append(s)
            if self.got[s] >= self.peers:
                self.aligned.add(s)
        return to_send

    @property
    def complete(self) -> bool:
        return self.active and len(self.aligned) == len(self.order)

    def finish(self) -> list:
        """End the epoch; return the held (sender, group) pairs to process now."""
        held = self.held
        self.closed = max(self.closed, self.epoch or 0)
        self.epoch = None
        self.got = {s: set() for s in self.order}
        self.held = []
        return held

    def abort(self, epoch: int) -> list:
        """Drop ``epoch`` (begun here or not); return held pairs to process now."""
        self.epoch = self.epoch if self.epoch is not None else epoch
        return self.finish()


def write_atomic(path: str, payload: bytes) -> str:
    """Write header + payload to ``path`` durably; return the payload's SHA-256 hex."""
    digest = hashlib.sha256(payload).digest()
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(_HEADER.pack(MAGIC, len(payload), digest))
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hex()


class CorruptCheckpoint(ValueError):
    """A checkpoint file that is truncated, altered or not a checkpoint at all."""


def read_checked(path: str, sha256: Optional[str] = None) -> bytes:
    """The payload of a checkpoint file, after checking its length and checksum."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise CorruptCheckpoint(f"{path}: truncated header ({len(head)} bytes)")
        magic, length, digest = _HEADER.unpack(head)
        if magic != MAGIC:
            raise CorruptCheckpoint(f"{path}: not a wallaroo_nb checkpoint (bad magic)")
        payload = f.read(length + 1)
    if len(payload) != length:
        raise CorruptCheckpoint(f"{path}: truncated: {len(payload)} of {length} payload bytes")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpoint(f"{path}: checksum mismatch (the file was altered or damaged)")
    if sha256 is not None and digest.hex() != sha256:
        raise CorruptCheckpoint(f"{path}: not the file the manifest committed (checksum differs)")
    return payload
