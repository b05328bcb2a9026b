"""The window timeline on a real app: it sees each range window open and fire, records
the watermark it fired under, and draws both; with a delay, windows fire later."""

from __future__ import annotations

import time

import wallaroo_nb as w
from wallaroo_nb.notebook.timeline import window_timeline
from wallaroo_nb.windows import Aggregation, range_windows


class Count(Aggregation):
    def initial_accumulator(self):
        return 0

    def update(self, value, acc):
        return acc + 1

    def combine(self, a, b):
        return a + b

    def output(self, key, acc):
        return (key, acc)


def paced_windows(window, n: int = 30, rate: float = 8):
    """Readings one event-time second apart, `rate` per processing second, three keys."""
    readings = [{"k": i % 3, "t": w.seconds(i)} for i in range(n)]
    return (w.source("r", w.IterableSourceConfig("readings", readings, rate=rate,
                                                 event_time=lambda r: r["t"]))
            .key_by(lambda r: r["k"]).to(window).to_sink(w.CollectorSinkConfig()))


def test_timeline_sees_windows_fire_when_the_watermark_passes_their_end():
    with w.run(paced_windows(range_windows(w.seconds(10)).with_delay(w.seconds(3))
                             .over(Count)), workers=2) as app:
        view = window_timeline(app, "Count", interval=0.1, load_bokehjs=False)
        app.wait(timeout=60)
        time.sleep(0.5)  # a look after the last window fired
        fired = view.fired
        windows = dict(view.windows.data)
        wm_samples = len(view.watermarks.data["t"])
        status = view.status.value
    assert view.wait_stopped(5)
    assert fired[["start_s", "end_s", "keys"]].values.tolist() == [
        [0.0, 10.0, 3], [10.0, 20.0, 3], [20.0, 30.0, 3]]
    # with a 3 s delay: fired only once the watermark reached end + 3 s (the last at the
    # end of the stream, when the watermark is infinite)
    wm = fired["watermark_s"].tolist()
    assert wm[0] >= 13.0 and wm[1] >= 23.0 and wm[2] == float("inf"), fired
    assert (fired["opened_s"] <= fired["fired_s"]).all()
    assert windows["label"] == ["[0, 10) fired", "[10, 20) fired", "[20, 30) fired"]
    assert windows["fire_at"] == [13.0, 23.0, 33.0]
    assert wm_samples > 10 and "3 fired" in status and "0 window(s) open" in status


def test_wall_clock_event_times_are_shown_from_an_origin():
    """Without an event_time function a message's event time is its ingest time."""
    numbers = w.source("n", w.IterableSourceConfig("n", list(range(60)), rate=30))
    with w.run(numbers.key_by(lambda x: x % 2).to(range_windows(w.seconds(1)).over(Count))
               .to_sink(w.CollectorSinkConfig()), workers=2) as app:
        view = window_timeline(app, "Count", interval=0.1, load_bokehjs=False)
        app.wait(timeout=60)
        time.sleep(0.5)
        fired = view.fired
        status = view.status.value
    assert len(fired) >= 2 and (fired["end_s"] - fired["start_s"] == 1.0).all(), fired
    assert fired["start_s"].between(0, 60).all(), fired  # not 1.7e9 s since 1970
    assert "event time in s since" in status
