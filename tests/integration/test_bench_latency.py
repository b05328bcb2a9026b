"""bench/latency.py runs end to end on both local transports: every event reaches the
driver exactly once (the bench checks it) and each line prints numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "latency.py")


def test_latency_bench_runs_on_both_transports():
    out = subprocess.run([sys.executable, BENCH, "--seconds", "0.5", "--rates", "2000"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "engine data over Unix stream sockets (default)" in text
    assert "engine data over ZeroMQ ipc:// (as before)" in text
    for label in ("read -> driver", "due -> driver", "one Unix-socket hop (no engine)",
                  "one ZeroMQ hop (no engine)", "engine: due -> driver (visible)"):
        rows = [ln for ln in text.splitlines() if re.split(r"\s{2,}", ln.strip())[0] == label]
        assert len(rows) == 2, (label, text)  # one per transport
        for row in rows:
            p50 = float(re.split(r"\s{2,}", row.strip())[1])
            assert 0 < p50 < 1e6, row
    assert text.count("1,000 events, engine counted 1,000 messages") == 2, text
