"""The driver's side of checkpoints: manifests, the committed-results log, recovery points.

An epoch is committed when its manifest is on disk: the manifest names every
worker's snapshot file with its SHA-256, the sources' replay positions and how
far the committed-results log (results_log.py) reaches. Everything is written write-fsync-rename
with checksums, so a damaged file is detected and the previous committed epoch
is used instead, with a message saying so.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Optional

import msgpack

from ..engine.epochs import CorruptCheckpoint, read_checked, write_atomic
from ..protocol import Restore, SourcePosition
from .results_log import ResultsLog

KEEP_EPOCHS = 2  # committed epochs kept on disk: the newest and one to fall back on
_MANIFEST = re.compile(r"manifest-(\d+)\.ckpt$")


class CheckpointDir:
    """One app's checkpoint directory."""

    def __init__(self, path: str, keep: Optional[int] = None):
        self.path = os.path.abspath(path)
        if not os.path.isdir(self.path):
            os.makedirs(self.path, mode=0o700)  # snapshots hold pickles: owner only
            os.chmod(self.path, 0o700)  # whatever the umask
        self.results = ResultsLog(self.path, keep)

    def clear(self) -> None:
        """Forget earlier runs (a fresh start must never resume from them by mistake)."""
        for pattern in ("manifest-*.ckpt", "epoch-*-worker-*.ckpt", "results*.log", "*.tmp*"):
            for f in glob.glob(os.path.join(self.path, pattern)):
                os.unlink(f)

    def commit(self, epoch: int, acks: list, results: list, table: Optional[dict] = None) -> dict:
        """Append the epoch's results (sink step id, count, payload), then write its
        manifest: from then on it is committed."""
        self.results.append(results)
        manifest = {
            "epoch": epoch,
            "workers": len(acks),
            "files": {a.file: a.sha256 for a in acks},
            # source id -> [[worker, position, done, watermark], ...] (several for a
            # parallel source: one per worker reading a share of it)
            "positions": _positions(acks),
            **self.results.fields(),
            "table": table or {},  # the slot table after this epoch: workers, owners, version
        }
        write_atomic(self._manifest(epoch), _pack(manifest))
        self._collect_garbage(epoch)
        return manifest

    def latest(self) -> tuple[Optional[dict], list]:
        """The newest committed epoch whose files all check out, and notes on any skipped."""
        notes = []
        for path in sorted(glob.glob(os.path.join(self.path, "manifest-*.ckpt")), reverse=True):
            try:
                manifest = _unpack(read_checked(path))
                for name, sha in manifest["files"].items():
                    read_checked(os.path.join(self.path, name), sha)
                self.results.check(manifest)
            except (CorruptCheckpoint, OSError, ValueError, KeyError, TypeError) as e:
                notes.append(f"checkpoint {os.path.basename(path)} is unusable ({e}); "
                             "falling back to the previous committed checkpoint")
                continue
            return manifest, notes
        return None, notes

    def restore_info(self, manifest: dict) -> Restore:
        """What a worker needs to load the epoch: directory, files, and per source the
        position to seek to (a parallel source's shares merged: each worker seeks its own)."""
        return Restore(self.path, manifest["epoch"], manifest["files"],
                       {sid: _merged(entries) for sid, entries in manifest["positions"].items()})

    def _collect_garbage(self, epoch: int) -> None:
        epochs = sorted(int(m.group(1)) for f in os.listdir(self.path)
                        if (m := _MANIFEST.match(f)))
        keep = set(epochs[-KEEP_EPOCHS:])
        for f in os.listdir(self.path):
            m = _MANIFEST.match(f) or re.match(r"epoch-(\d+)-worker-\d+\.ckpt$", f)
            if m and int(m.group(1)) not in keep and int(m.group(1)) < epoch:
                os.unlink(os.path.join(self.path, f))
        in_use = set()
        for e in keep:
            try:
                in_use.add(_unpack(read_checked(self._manifest(e)))["results_file"])
            except (CorruptCheckpoint, OSError, ValueError, KeyError):
                continue
        self.results.collect_garbage(in_use)

    def _manifest(self, epoch: int) -> str:
        return os.path.join(self.path, f"manifest-{epoch:012d}.ckpt")


def _positions(acks: list) -> dict:
    out: dict = {}
    for a in acks:
        for sid, pos in a.positions.items():
            out.setdefault(sid, []).append([a.worker, *pos])
    return out


def merged_positions(acks: list) -> dict:
    """Source id -> its position over every worker's ack (a parallel source's shares
    merged), as a restore or a rescaling seeks it."""
    return {sid: _merged(entries) for sid, entries in _positions(acks).items()}


def _merged(entries: list) -> SourcePosition:
    if len(entries) == 1:
        return SourcePosition(*entries[0][1:])
    merged: dict = {}
    for _w, position, _done, _wm in sorted(entries, key=lambda e: e[0]):
        merged.update(position or {})
    return SourcePosition(merged, all(e[2] for e in entries), min(e[3] for e in entries))


def _pack(manifest: dict) -> bytes:
    """Manifests are plain data (msgpack), never pickles: reading one runs no code."""
    return msgpack.packb(manifest)


def _unpack(payload: bytes) -> dict:
    return msgpack.unpackb(payload, strict_map_key=False)


def describe(manifest: Optional[dict]) -> str:
    return "the start (no committed checkpoint)" if manifest is None else f"epoch {manifest['epoch']}"
