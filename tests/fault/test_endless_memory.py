"""An endless, unpaced source into a collector with the default keep: the driver (the
user's kernel) stays flat after warm-up. Runs bench/soak.py in a fresh process, so
that nothing else this test session holds is counted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
pytestmark = pytest.mark.timeout(120)


def test_driver_memory_is_flat_under_an_endless_stream():
    out = subprocess.run([sys.executable, str(SOAK), "--seconds", "16", "--every", "2",
                          "--warmup", "6"], capture_output=True, text=True, timeout=100)
    print(out.stdout)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [tuple(float(x.replace(",", "")) for x in line.split())
            for line in out.stdout.splitlines() if re.match(r"^\s+\d+\s+\d", line)]
    assert len(rows) >= 6, out.stdout
    after = [r for r in rows if r[0] >= 6]
    growth = after[-1][1] - after[0][1]
    assert rows[-1][3] > 1_000_000, "the source did not run at full speed"
    assert rows[-1][4] == 100_000, "the collector must keep exactly its default keep"
    assert growth < 60, f"driver grew {growth:.0f} MiB in {after[-1][0] - after[0][0]:.0f} s"
