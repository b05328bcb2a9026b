"""Invalid applications fail at build time with a message naming the step and the fix."""

from __future__ import annotations

import pytest

import wallaroo_nb as w
from wallaroo_nb import BuildError


def src():
    return w.source("p", w.IterableSourceConfig("x", [1, 2, 3]))


def test_no_sink():
    with pytest.raises(BuildError, match=r"does not end in a sink; add \.to_sink"):
        w.build_application("no sink", src().to(w.computation("inc")(lambda x: x + 1)))


def test_run_pipeline_without_sink():
    with pytest.raises(BuildError, match="does not end in a sink"):
        w.run(src())


def test_wrong_arity_computation():
    with pytest.raises(BuildError, match=r"@computation\('two'\).*must take 1 argument"):
        @w.computation("two")
        def two(a, b):
            return a


def test_wrong_arity_state_computation():
    class S:
        pass

    with pytest.raises(BuildError, match=r"'count'.*must take 2 arguments: f\(data, state\)"):
        @w.state_computation("count", state=S)
        def count(x):
            return x


def test_state_class_needs_no_arguments():
    class NeedsArg:
        def __init__(self, start):
            self.n = start

    with pytest.raises(BuildError, match="NeedsArg cannot be built with no arguments"):
        w.state_computation("s", state=NeedsArg)


def test_to_requires_a_computation():
    def plain(x):
        return x

    with pytest.raises(BuildError, match=r'decorate plain with @computation\("name"\)'):
        src().to(plain)
    with pytest.raises(BuildError, match="to\\(\\) takes a computation"):
        src().to(42)


def test_decorator_needs_a_name():
    with pytest.raises(BuildError, match="needs a name"):
        @w.computation
        def f(x):
            return x


def test_sink_must_be_a_sink_config():
    with pytest.raises(BuildError, match="takes a sink config"):
        src().to_sink(print)


def test_a_driver_sink_must_collect_or_have_a_function():
    class Nowhere(w.SinkConfig):
        to_driver = True
        name = "nowhere"

    with pytest.raises(BuildError, match="sink 'nowhere' runs in the driver .* set collects"):
        src().to_sink(Nowhere())

    class Printer(Nowhere):
        def fn(self, batch):
            print(batch)

    src().to_sink(Printer())  # a driver-side callback: fine
    src().to_sink(w.CollectorSinkConfig())


def test_source_config_errors():
    with pytest.raises(ValueError, match="generator/iterator cannot be shipped"):
        w.IterableSourceConfig("g", (i for i in range(3)))
    with pytest.raises(ValueError, match="rate must be a positive number"):
        w.IterableSourceConfig("g", [1], rate=0)


def test_merge_of_differently_keyed_streams_needs_key_by():
    class S:
        pass

    st = w.state_computation("after merge", state=S)(lambda x, s: x)
    a = src().key_by(lambda x: x)
    b = w.source("q", w.IterableSourceConfig("y", [1])).key_by(lambda x: -x)
    with pytest.raises(BuildError, match="'after merge' follows a merge.*add .key_by"):
        w.build_application("m", a.merge(b).to(st).to_sink(w.CollectorSinkConfig()))


def test_run_argument_errors():
    p = src().to_sink(w.CollectorSinkConfig())
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        w.run(p, workers=0)
    with pytest.raises(ValueError, match="on_error must be one of"):
        w.run(p, on_error="ignore")
