"""run(low_latency=True): idle CPUs are kept quick to wake (Linux PM QoS through
/dev/cpu_dma_latency) exactly while the app runs; where that file cannot be written the
run is refused with an error that names it; results are the same either way."""

from __future__ import annotations

import collections
import os
import random

import pytest
from apps import first, running_sum

import wallaroo_nb as w
from wallaroo_nb.cluster import cpu_wakeup


def sums(events):
    return (w.source("sums", w.IterableSourceConfig("events", events))
            .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig()))


EVENTS = [(f"k{random.Random(i).randrange(50)}", i % 7) for i in range(5000)]


def expected():
    out, totals = collections.defaultdict(list), collections.Counter()
    for k, v in EVENTS:
        totals[k] += v
        out[k].append(totals[k])
    return dict(out)


def per_key(results):
    out = collections.defaultdict(list)
    for k, total in results:
        out[k].append(total)
    return dict(out)


@pytest.mark.skipif(not os.access(cpu_wakeup.PATH, os.W_OK),
                    reason=f"{cpu_wakeup.PATH} is not writable here (the refusal is tested)")
def test_idle_cpus_are_kept_quick_to_wake_while_the_app_runs(start):
    before = cpu_wakeup.current()
    assert before is not None and before > 0  # nobody else holds it at 0 now
    app = start(sums(EVENTS), workers=2, low_latency=True)
    app.wait(timeout=60)
    assert cpu_wakeup.current() == 0
    assert per_key(app.results()) == expected()
    app.stop()
    assert cpu_wakeup.current() == before


def test_where_the_file_cannot_be_written_the_run_is_refused_naming_it(monkeypatch, tmp_path):
    missing = str(tmp_path / "no" / "cpu_dma_latency")
    monkeypatch.setattr(cpu_wakeup, "PATH", missing)
    with pytest.raises(OSError, match="cpu_dma_latency.*run without low_latency"):
        w.run(sums(EVENTS), workers=2, low_latency=True)


def test_low_latency_is_refused_with_a_cluster():
    with pytest.raises(ValueError, match="low_latency=True"):
        w.run(sums(EVENTS), workers=2, low_latency=True, cluster="tcp://127.0.0.1:1")
