"""Resilience without crashes: wait() sees every result at once, checkpoints are durable."""

from __future__ import annotations

import glob
import os

import pytest
from apps import running_sum

import wallaroo_nb as w


@pytest.mark.parametrize("rep", range(3))
def test_wait_returns_with_every_result_released(start, tmp_path, rep):
    # results are released at commits; wait() must not return between a commit and
    # the delivery of its results (a race seen with large final epochs)
    events = [(f"k{i % 1000}", 1) for i in range(300_000)]
    p = (w.source("s", w.IterableSourceConfig("e", events)).key_by(lambda e: e[0])
         .to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.05 + 0.1 * rep)
    app.wait(timeout=120)
    assert len(app.results()) == len(events)


def test_checkpoint_files_are_checksummed_and_old_epochs_collected(start, tmp_path):
    events = [(f"k{i % 50}", 1) for i in range(50_000)]
    p = (w.source("s", w.IterableSourceConfig("e", events, rate=50_000)).key_by(lambda e: e[0])
         .to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.1)
    app.wait(timeout=60)
    assert app._driver.committed_epoch >= 5
    manifests = glob.glob(os.path.join(tmp_path, "manifest-*.ckpt"))
    assert len(manifests) == 2  # the newest and one to fall back on
    epochs = {int(os.path.basename(f).split("-")[1]) for f in glob.glob(str(tmp_path / "epoch-*"))}
    assert epochs <= {app._driver.committed_epoch, app._driver.committed_epoch - 1}
    with open(manifests[0], "rb") as f:
        assert f.read(8) == b"WNBCKPT1"


def test_unreplayable_source_warns_under_resilience(tmp_path):
    from wallaroo_nb.connectors.tcp import TCPSourceConfig

    p = w.source("t", TCPSourceConfig("in", "127.0.0.1", 0, lambda b: b)).to_sink(
        w.CollectorSinkConfig(keep=None))
    with pytest.warns(UserWarning, match="cannot replay"):
        app = w.run(p, workers=1, resilience=True, checkpoint_dir=str(tmp_path))
    app.stop()
