"""The pieces of ``wallaroo-nb run`` that need no processes: the alias, argument handling."""

from __future__ import annotations

import sys
import types

import cloudpickle
import pytest

import wallaroo_nb as wn
from wallaroo_nb import cli, compat, runner
from wallaroo_nb.testing import run_local


@pytest.fixture
def alias():
    """``import wallaroo`` works inside the test, and not after it."""
    had = sys.modules.get("wallaroo")
    yield compat.install_alias()
    if had is None:
        sys.modules.pop("wallaroo", None)


def test_alias_is_idempotent_and_marked(alias):
    import wallaroo

    assert wallaroo is alias is compat.install_alias()
    assert wallaroo.__wallaroo_nb_alias__ is True
    for name in ("source", "build_application", "computation", "state_computation",
                 "key_extractor", "decoder", "encoder", "TCPSourceConfig", "TCPSinkConfig",
                 "KafkaSourceConfig", "KafkaSinkConfig", "GenSourceConfig",
                 "tcp_parse_input_addrs", "tcp_parse_output_addrs",
                 "DefaultKafkaSourceCLIParser", "CustomKafkaSinkCLIParser", "seconds",
                 "Aggregation"):
        assert hasattr(wallaroo, name), name
    assert wallaroo.seconds(2) == 2_000_000_000
    assert hasattr(wallaroo, "range_windows") and hasattr(wallaroo, "count_windows")


def test_alias_refuses_to_shadow_another_wallaroo_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "wallaroo", types.ModuleType("wallaroo"))
    with pytest.raises(RuntimeError, match="different module named 'wallaroo'"):
        compat.install_alias()


def test_wallaroo_style_update_keeps_the_accumulator_and_pickles(alias):
    import wallaroo

    class Total(wallaroo.Aggregation):
        def initial_accumulator(self):
            return [0]

        def update(self, x, acc):  # Wallaroo style: change acc, return nothing
            acc[0] += x

        def combine(self, a, b):
            return [a[0] + b[0]]

        def output(self, key, acc):
            return acc[0]

    agg = cloudpickle.loads(cloudpickle.dumps(Total()))  # as it travels to a worker
    pipeline = (wallaroo.source("n", wn.IterableSourceConfig("n", [5, 1, 2, 3]))
                .key_by(lambda x: "all").to(wallaroo.count_windows(2).over(agg))
                .to_sink(wn.CollectorSinkConfig()))
    assert run_local(wallaroo.build_application("t", pipeline)) == [6, 5]


def test_tcp_source_config_takes_both_wallaroo_forms(alias):
    import wallaroo

    dec = wallaroo.decoder(header_length=4, length_fmt=">I")(bytes.decode)
    named = wallaroo.TCPSourceConfig("words", "127.0.0.1", "7000", dec)
    old = wallaroo.TCPSourceConfig("127.0.0.1", "7000", dec)
    assert (named.name, named.host, named.port) == ("words", "127.0.0.1", "7000")
    assert (old.name, old.host, old.port) == ("127.0.0.1:7000", "127.0.0.1", "7000")


def parse(argv: list):
    """What cli.main would hand to runner.main, without running it."""
    seen = {}
    real = runner.main
    runner.main = lambda args: seen.setdefault("args", args) and 0
    try:
        cli.main(argv)
    finally:
        runner.main = real
    return seen["args"]


def test_run_hands_every_argument_after_run_to_the_app():
    argv = ["run", "--application-module", "app.py", "--in", "a@127.0.0.1:7000",
            "--workers", "2", "--kafka_source_topic", "t", "--my-own", "x", "-t"]
    args = parse(argv)
    assert args.argv == argv[1:]
    assert args.workers == 2 and args.application_module == "app.py"
    assert runner.ignored_flags(args) == ["--cluster-initializer"]
    assert compat.tcp_parse_input_addrs(args.argv) == [("a", "127.0.0.1", "7000")]


def test_run_options_are_not_abbreviated_into_the_runners():
    # --work must stay the app's, not become --workers
    args = parse(["run", "--application-module", "m", "--work", "3"])
    assert args.workers == 1 and args.argv[-2:] == ["--work", "3"]


def test_other_subcommands_reject_unknown_arguments(capsys):
    with pytest.raises(SystemExit):
        cli.main(["send", "127.0.0.1:1", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("argv, problem", [
    (["--workers", "0"], "--workers must be >= 1"),
    (["--resume"], "--resume needs the --resilience-dir"),
    (["--time-between-checkpoints", "0"], "positive number of nanoseconds"),
    (["--driver-address", "10.0.0.1"], "--driver-address is where engines on a Dask cluster"),
    (["--cluster", "tcp://10.0.0.9:8786", "--run-with-resilience"],
     "--cluster with --run-with-resilience needs --resilience-dir"),
])
def test_bad_runner_options_are_named(argv, problem):
    args = parse(["run", "--application-module", "m"] + argv)
    assert problem in runner.check_args(args)


def test_format_error_names_step_key_and_input():
    row = {"step": "count", "where": "", "key": "w", "worker": 1, "error": "KeyError: 'x'",
           "input": "'x'", "traceback": "Traceback...\n  line\nKeyError: 'x'"}
    text = runner.format_error(row, with_traceback=True)
    assert text.startswith("error: step 'count' key='w' on worker 1: KeyError: 'x'; input 'x'")
    assert "\n    Traceback..." in text
