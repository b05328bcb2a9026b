"""The committed-results log stays within about twice the collector's keep, and a resume
reads only that, with the global index of what it has."""

from __future__ import annotations

import os
import pickle

import pytest

from wallaroo_nb.cluster.checkpoints import CheckpointDir
from wallaroo_nb.cluster.results_log import ResultsLog
from wallaroo_nb.engine.epochs import CorruptCheckpoint
from wallaroo_nb.protocol import EpochAck


def batch(start: int, n: int) -> tuple:
    return (3, n, pickle.dumps(list(range(start, start + n))))


def test_compaction_keeps_the_newest_keep_results_and_counts_the_rest(tmp_path):
    log = ResultsLog(str(tmp_path), keep=100)
    total = 0
    for _ in range(50):  # 50 commits of 30 results
        log.append([batch(total, 10), batch(total + 10, 20)])
        total += 30
        assert log.count <= 2 * 100 + 30  # compacted once past twice keep
    base, batches = ResultsLog(str(tmp_path), keep=100).resume(log.fields())
    values = [v for _sid, vs in batches for v in vs]
    assert base + len(values) == total == 1500
    assert values == list(range(base, total)) and len(values) >= 100
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".log")]) >= 1


def test_an_unbounded_collector_keeps_everything(tmp_path):
    log = ResultsLog(str(tmp_path), keep=None)
    for i in range(20):
        log.append([batch(i * 50, 50)])
    base, batches = ResultsLog(str(tmp_path), keep=None).resume(log.fields())
    assert base == 0 and [v for _s, vs in batches for v in vs] == list(range(1000))


def test_a_commit_cut_short_is_truncated_and_damage_is_detected(tmp_path):
    log = ResultsLog(str(tmp_path), keep=None)
    log.append([batch(0, 5)])
    fields = log.fields()
    with open(log.path(), "ab") as f:
        f.write(b"half a record")  # a crash before the manifest named it
    base, batches = ResultsLog(str(tmp_path), keep=None).resume(fields)
    assert [v for _s, vs in batches for v in vs] == [0, 1, 2, 3, 4]
    assert os.path.getsize(log.path()) == fields["results_offset"]
    with open(log.path(), "r+b") as f:
        f.seek(20)
        f.write(b"X")
    with pytest.raises(CorruptCheckpoint, match="damaged"):
        ResultsLog(str(tmp_path), keep=None).resume(fields)


def ack(epoch: int, worker: int) -> EpochAck:
    return EpochAck(epoch, worker, f"epoch-{epoch}-worker-{worker}.ckpt", "0" * 64, 0, {})


def test_old_log_files_go_once_no_kept_manifest_names_them(tmp_path):
    ckpt = CheckpointDir(str(tmp_path / "c"), keep=10)
    assert oct(os.stat(ckpt.path).st_mode & 0o777) == "0o700"
    names = []
    for epoch in range(1, 30):
        for w in (0, 1):  # the snapshot files the manifest names
            open(os.path.join(ckpt.path, f"epoch-{epoch}-worker-{w}.ckpt"), "wb").close()
        manifest = ckpt.commit(epoch, [ack(epoch, 0), ack(epoch, 1)], [batch(epoch * 7, 7)])
        names.append(manifest["results_file"])
    logs = sorted(f for f in os.listdir(ckpt.path) if f.endswith(".log"))
    assert len(set(names)) > 3 and set(logs) <= set(names[-2:]), (logs, names[-2:])
