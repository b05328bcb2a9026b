"""Build-time behaviour of the window API: specs, names, and the errors a user sees."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

import wallaroo_nb.windows as w


class Total(w.Aggregation):
    def initial_accumulator(self):
        return 0

    def update(self, v, acc):
        return acc + v

    def combine(self, a, b):
        return a + b

    def output(self, key, acc):
        return (key, acc)


class Named(Total):
    def name(self):
        return "running total"


class Windowed(Total):
    def output(self, key, acc, window):
        return (key, window.start, acc)


class Duck:
    """Not a subclass: duck typing is enough."""

    def initial_accumulator(self):
        return 0

    def update(self, v, acc):
        return acc + v

    def combine(self, a, b):
        return a + b

    def output(self, key, acc):
        return acc


def test_time_units_are_int_nanoseconds():
    assert w.nanoseconds(7) == 7
    assert w.microseconds(2) == 2_000
    assert w.milliseconds(3) == 3_000_000
    assert w.seconds(1.5) == 1_500_000_000 and isinstance(w.seconds(1.5), int)
    assert w.seconds(0.3) == 300_000_000  # rounded, not truncated (0.3 * 1e9 < 3e8)
    assert w.minutes(2) == 120 * 10**9
    assert w.hours(1) == 3600 * 10**9
    with pytest.raises(TypeError, match="seconds"):
        w.seconds("5")


def test_a_range_spec_is_plain_data():
    spec = (w.range_windows(w.seconds(10)).with_slide(w.seconds(4))
            .with_delay(w.seconds(1)).with_late_data_policy("fire_per_message").over(Total))
    assert (spec.kind, spec.name) == ("range", "Total")
    assert (spec.range_ns, spec.slide_ns, spec.delay_ns) == (10 * 10**9, 4 * 10**9, 10**9)
    assert spec.pane_ns == 2 * 10**9 and spec.needs_watermarks
    assert spec.late_data_policy == "fire-per-message"  # Wallaroo's spelling
    assert isinstance(spec.agg, Total) and not spec.output_takes_window
    assert spec.is_window_spec
    again = cloudpickle.loads(cloudpickle.dumps(spec))
    assert (again.kind, again.range_ns, again.name) == ("range", spec.range_ns, "Total")


@pytest.mark.parametrize("given, spelled", [
    ("drop", "drop"), ("fire-per-message", "fire-per-message"),
    ("place-in-oldest-window", "place-in-oldest-window"),
    ("fire_per_message", "fire-per-message"), ("place_in_oldest_window", "place-in-oldest-window"),
])
def test_late_data_policies_as_wallaroo_spells_them_with_underscore_aliases(given, spelled):
    spec = w.range_windows(10).with_late_data_policy(given).over(Total)
    assert spec.late_data_policy == spelled


def test_defaults_tumbling_no_delay_drop():
    spec = w.range_windows(100).over(Total)
    assert (spec.slide_ns, spec.delay_ns, spec.late_data_policy) == (100, 0, "drop")
    assert spec.pane_ns == 100


def test_builders_are_immutable():
    base = w.range_windows(10)
    sliding = base.with_slide(5)
    assert base.over(Total).slide_ns == 10 and sliding.over(Total).slide_ns == 5
    ev = w.event_windows()
    fired = ev.fire_when(bool, include=False)
    assert ev.over(Total).fire_when is None
    spec = fired.over(Total)
    assert spec.fire_when is bool and spec.trigger_in_closing_window is False


def test_class_or_instance_and_the_step_name():
    assert w.count_windows(3).over(Total).name == "Total"
    assert w.count_windows(3).over(Total()).name == "Total"
    assert w.count_windows(3).over(Named).name == "running total"
    assert w.event_windows().over(Duck()).name == "Duck"
    assert w.event_windows().over(Windowed).output_takes_window


def test_instance_keeps_its_configuration():
    class Threshold(Total):
        def __init__(self, limit):
            self.limit = limit

    spec = w.count_windows(2).over(Threshold(5))
    assert spec.agg.limit == 5
    with pytest.raises(ValueError, match=r"Threshold.*pass an instance"):
        w.count_windows(2).over(Threshold)


@pytest.mark.parametrize("build, match", [
    (lambda: w.range_windows(10).with_slide(20), r"'Total'.*slide \(20 ns\) is larger than the range \(10 ns\)"),
    (lambda: w.range_windows(0), r"'Total'.*range.*must be positive"),
    (lambda: w.range_windows(-5), r"'Total'.*range.*must be positive"),
    (lambda: w.range_windows(10).with_slide(0), r"'Total'.*slide.*must be positive"),
    (lambda: w.range_windows(10).with_delay(-1), r"'Total'.*delay must be an int >= 0"),
    (lambda: w.range_windows(2.5), r"'Total'.*must be an int.*seconds"),
    (lambda: w.range_windows(10).with_late_data_policy("fire"),
     r"'Total'.*unknown late data policy 'fire'.*'drop', 'fire-per-message', 'place-in-oldest-window'"),
    (lambda: w.count_windows(0), r"'Total'.*count must be positive"),
    (lambda: w.count_windows(True), r"'Total'.*count must be an int"),
    (lambda: w.event_windows().fire_when("yes"), r"'Total'.*fire_when\(\) takes a function"),
])
def test_bad_window_parameters_name_the_step_and_the_fix(build, match):
    with pytest.raises(ValueError, match=match):
        build().over(Total)


def test_an_aggregation_missing_a_method():
    class NoCombine(w.Aggregation):
        def initial_accumulator(self):
            return 0

        def update(self, v, acc):
            return acc + v

        def output(self, key, acc):
            return acc

    class NoOutput:
        def initial_accumulator(self):
            return 0

        def update(self, v, acc):
            return acc

        def combine(self, a, b):
            return a

    with pytest.raises(ValueError, match=r"'NoCombine'.*NoCombine has no combine\(\)"):
        w.range_windows(10).over(NoCombine)
    with pytest.raises(ValueError, match=r"NoOutput has no output\(\)"):
        w.count_windows(2).over(NoOutput)


def test_wrong_method_signatures():
    class OneArgOutput(Total):
        def output(self, acc):
            return acc

    class BadUpdate(Total):
        def update(self, v):
            return v

    with pytest.raises(ValueError, match=r"OneArgOutput.output\(\) must take 2 or 3"):
        w.count_windows(2).over(OneArgOutput)
    with pytest.raises(ValueError, match=r"BadUpdate.update\(\) must take 2"):
        w.count_windows(2).over(BadUpdate)


def test_not_an_aggregation():
    def summer(v, acc):
        return v + acc

    with pytest.raises(ValueError, match=r"function 'summer'.*Aggregation class or instance"):
        w.range_windows(10).over(summer)
    with pytest.raises(ValueError, match="name"):
        class Blank(Total):
            def name(self):
                return ""

        w.count_windows(1).over(Blank)


def test_validate_can_be_called_again():
    spec = w.range_windows(10).over(Total)
    spec.validate()
    bad = pickle.loads(pickle.dumps(spec))
    object.__setattr__(bad, "slide_ns", 11)
    with pytest.raises(ValueError, match="slide"):
        bad.validate()


def test_a_name_attribute_also_names_the_step():
    class Attr(Total):
        name = "by attribute"

    assert w.count_windows(1).over(Attr).name == "by attribute"
