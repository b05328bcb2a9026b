"""Wallaroo's Python examples, both API generations, unchanged under ``wallaroo-nb run``.

For each example of Wallaroo's examples/python (0.6.1 and the development head) that
needs only TCP or Kafka, tests/e2e/wallaroo_apps/ holds our own module written in that
generation's style (``*_06.py``: 0.6.0/0.6.1, ``*_head.py``: the head). Each runs in
real processes (``wallaroo-nb receive``, ``run``, ``send``, a Kafka-protocol broker),
fed as Wallaroo's giles senders fed it (framed lines, framed binary files, connector
protocols), and its output is compared with a plain-Python computation.
"""

from __future__ import annotations

import random
import re
import signal
import string
import struct
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for kafka_broker

from cli_procs import free_port, pid_alive, procs, wait_until  # noqa: E402, F401 (procs: a fixture)
from kafka_broker import kafka_broker_fixture  # noqa: E402, F401 (a fixture)

pytestmark = pytest.mark.timeout(120)

APPS = Path(__file__).resolve().parent / "wallaroo_apps"
GENERATIONS = ["06", "head"]


# -- running -------------------------------------------------------------------------


def in_arg(generation: str, *addrs: tuple) -> str:
    """``--in`` in the generation's form: host:port (0.6) or name@host:port (head)."""
    return ",".join(f"{a[0]}@127.0.0.1:{a[1]}" if generation == "head" else f"127.0.0.1:{a[1]}"
                    for a in addrs)


def run(procs, module: str, *args: object, workers: int = 1):  # noqa: F811
    runner = procs.start("run", "--application-module", APPS / module, "--workers", workers,
                         "--status-interval", "0.2", *args)
    runner.wait_for(r"pids [\d ]+\n")
    return runner


def stop(runner) -> None:
    """SIGTERM; the runner must exit cleanly, leave no worker and record no error."""
    workers = runner.worker_pids()
    runner.signal(signal.SIGTERM)
    assert runner.wait(20) == 0, runner.stderr()
    assert not [p for p in workers if pid_alive(p)], "workers outlived the runner"
    assert "error:" not in runner.stderr(), runner.stderr()


def receive(procs, out: Path, *extra: object) -> int:  # noqa: F811
    proc = procs.start("receive", "127.0.0.1:0", "--out", out, *extra)
    return int(proc.wait_for(r"receiving on [\d.]+:(\d+)").group(1))


def lines_of(path: Path) -> list:
    return [x for x in path.read_text().splitlines() if x] if path.exists() else []


def wait_lines(path: Path, n: int, timeout: float = 30) -> list:
    wait_until(lambda: len(lines_of(path)) >= n, timeout, f"{n} lines in {path.name}")
    return lines_of(path)


def send(procs, port: int, data: Path, *extra: object) -> None:  # noqa: F811
    sender = procs.start("send", f"127.0.0.1:{port}", data, *extra)
    assert sender.wait(30) == 0, sender.stderr()


def framed_file(path: Path, records: list) -> Path:
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in records))
    return path


def per_key(lines: list, sep: str) -> dict:
    out = defaultdict(list)
    for line in lines:
        out[line.rsplit(sep, 1)[0]].append(line)
    return out


# -- word count and alphabet: TCP in, TCP out ---------------------------------------


STRIP = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def word_count_reference(lines: list) -> list:
    seen: Counter = Counter()
    out = []
    for line in lines:
        for token in line.lower().strip(STRIP).split(" "):
            word = token.strip(STRIP)
            seen[word] += 1
            out.append(f"{word} => {seen[word]}")
    return out


@pytest.mark.parametrize("generation", GENERATIONS)
def test_word_count(procs, tmp_path, generation):  # noqa: F811
    rng = random.Random(5)
    words = ["Stream", "key", "state", "Window", "worker", "epoch", "sink"]
    lines = [" ".join(rng.choice(words) + rng.choice(["", ",", "!"])
                      for _ in range(rng.randint(1, 8))) for _ in range(300)]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n")
    expected = word_count_reference(lines)
    out = tmp_path / "out.txt"
    port, in_port = receive(procs, out, "--lines"), free_port()
    runner = run(procs, f"word_count_{generation}.py", "--in", in_arg(generation, ("words", in_port)),
                 "--out", f"127.0.0.1:{port}", workers=2)
    send(procs, in_port, tmp_path / "text.txt")
    got = wait_lines(out, len(expected))
    stop(runner)
    assert Counter(got) == Counter(expected)
    assert per_key(got, " => ") == per_key(expected, " => ")  # each word's counts in order


@pytest.mark.parametrize("generation", GENERATIONS)
def test_alphabet_fed_a_framed_binary_file(procs, tmp_path, generation):  # noqa: F811
    """Votes ">sI" in a framed file, sent twice over (giles' framed-file sender with a
    repeat; the head's alphabet_partitioned data has this form)."""
    rng = random.Random(9)
    votes = [(rng.choice(string.ascii_lowercase[:8]), rng.randint(1, 9999)) for _ in range(200)]
    data = framed_file(tmp_path / "votes.msg", [struct.pack(">sI", c.encode(), v) for c, v in votes])
    totals: Counter = Counter()
    expected = []
    for c, v in votes * 2:
        totals[c] += v
        expected.append(f"{c} => {totals[c]}")
    out = tmp_path / "out.txt"
    port, in_port = receive(procs, out, "--lines"), free_port()
    runner = run(procs, f"alphabet_{generation}.py", "--in", in_arg(generation, ("alphabet", in_port)),
                 "--out", f"127.0.0.1:{port}", workers=2)
    send(procs, in_port, data, "--framed-file", "--repeat", 2)
    got = wait_lines(out, len(expected))
    stop(runner)
    assert per_key(got, " => ") == per_key(expected, " => ")


# -- the alerts family: generator sources ----------------------------------------------


def stateless_alerts():
    tid, amount = 0, 1
    while True:
        if amount > 1000:
            yield f"Deposit Alert for {tid}: {amount}"
        elif amount < -1000:
            yield f"Withdrawal Alert for {tid}: {amount}"
        tid, amount = tid + 1, (amount * 2305843009213693951 + 7) % 2500 - 1250


USERS = ["Fido", "Rex", "Dr. Whiskers", "Feathers", "Mountaineer"]


def bank_transactions(limit=None):
    """The alerts examples' generator: (user, amount), the first ("Fido", 1)."""
    totals, turn, last, n = [1, 0, 0, 0, 0], 0, ("Fido", 1), 1
    yield last
    while limit is None or n < limit:
        amount = (last[1] * 2305843009213693951 + 7) % 2500 - 1250
        turn = (turn + 1) % 5
        if totals[turn] > 5000:
            amount = -6000
        elif totals[turn] < -5000:
            amount = 6000
        totals[turn] += amount
        last, n = (USERS[turn], amount), n + 1
        yield last


def alert(user, total):
    if total > 2000:
        return f"Deposit Alert for {user}: {total}"
    if total < -2000:
        return f"Withdrawal Alert for {user}: {total}"
    return None


def stateful_alerts_by_user(n_per_user: int) -> dict:
    totals: Counter = Counter()
    out = defaultdict(list)
    for user, amount in bank_transactions():
        totals[user] += amount
        a = alert(user, totals[user])
        if a:
            out[user].append(a)
        if all(len(out[u]) >= n_per_user for u in USERS):
            return out


@pytest.mark.parametrize("generation", GENERATIONS)
def test_alerts_stateless(procs, tmp_path, generation):  # noqa: F811
    out = tmp_path / "out.txt"
    port = receive(procs, out, "--lines")
    runner = run(procs, f"alerts_stateless_{generation}.py", "--out", f"127.0.0.1:{port}")
    wait_lines(out, 300)
    stop(runner)
    got = lines_of(out)
    ref = stateless_alerts()
    assert got == [next(ref) for _ in got]  # one worker: the generator's order


@pytest.mark.parametrize("generation", GENERATIONS)
def test_alerts_stateful(procs, tmp_path, generation):  # noqa: F811
    out = tmp_path / "out.txt"
    port = receive(procs, out, "--lines")
    runner = run(procs, f"alerts_stateful_{generation}.py", "--out", f"127.0.0.1:{port}",
                 workers=2)
    wait_lines(out, 300)
    stop(runner)
    got = defaultdict(list)
    for line in lines_of(out):
        got[line.split(" for ")[1].rsplit(": ", 1)[0]].append(line)
    assert sum(map(len, got.values())) >= 300 and set(got) <= set(USERS)
    ref = stateful_alerts_by_user(max(map(len, got.values())))
    for user, mine in got.items():
        assert mine == ref[user][:len(mine)], user  # each user's alerts, in order


@pytest.mark.parametrize("generation", GENERATIONS)
def test_alerts_windowed(procs, tmp_path, generation):  # noqa: F811
    """9 s windows sliding by 3 s, on ingest time. The generator's 1047 transactions
    come within a few ms: each user's windows start at their first transaction (as
    Wallaroo aligns them), so all of a user's transactions fall in the same three
    windows, which fire when the generator ends: three alerts per alerting user."""
    n = 1047
    totals: Counter = Counter()
    for user, amount in bank_transactions(limit=n):
        totals[user] += amount
    expected = [a for u in USERS for a in [alert(u, totals[u])] * 3 if a]
    assert len(expected) == 12  # four users alert
    out = tmp_path / "out.txt"
    port = receive(procs, out, "--lines")
    runner = run(procs, f"alerts_windowed_{generation}.py", "--out", f"127.0.0.1:{port}",
                 "--transactions", n)
    wait_lines(out, len(expected))
    runner.wait_for(rf"in {n:,} \(")
    stop(runner)
    assert Counter(lines_of(out)) == Counter(expected)


# -- celsius: Kafka, and the experimental connectors ----------------------------------


def fahrenheit_text(celsius: float) -> str:
    return "%.6f" % (celsius * 1.8 + 32)


def test_celsius_kafka(procs, kafka_broker, tmp_path):  # noqa: F811
    """The same module is both generations' form (the Default Kafka CLI parsers)."""
    pytest.importorskip("confluent_kafka")
    from confluent_kafka import Consumer, Producer, TopicPartition

    values = [f"{v / 4}" for v in range(-80, 400, 7)] + ["not a number"]
    expected = [fahrenheit_text(float(v)) if v[0] != "n" else fahrenheit_text(0.0)
                for v in values]
    src, dst = kafka_broker.create_topic(partitions=1), kafka_broker.create_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for v in values:
        producer.produce(src, v.encode())
    assert producer.flush(30) == 0
    runner = run(procs, "celsius_kafka.py", "--kafka_source_topic", src,
                 "--kafka_source_brokers", kafka_broker.bootstrap, "--kafka_sink_topic", dst,
                 "--kafka_sink_brokers", kafka_broker.bootstrap)
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "celsius",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(dst, 0, 0)])
    got: list = []
    try:
        wait_until(lambda: _poll_into(consumer, got) >= len(expected), 30, "the conversions")
    finally:
        consumer.close()
    stop(runner)
    assert got == expected


def _poll_into(consumer, got) -> int:
    msg = consumer.poll(0.2)
    if msg is not None and msg.error() is None:
        got.append(msg.value().decode())
    return len(got)


def celsius_feed(path: Path) -> tuple:
    """A framed file of ">f" readings (like Wallaroo's celsius.msg) and the Fahrenheit
    values the app computes from them (float32 readings, as the decoder reads them)."""
    readings = [struct.pack(">f", c / 2) for c in range(-40, 160, 3)]
    framed_file(path, readings)
    return path, [str(struct.unpack(">f", r)[0] * 1.8 + 32) for r in readings]


def test_celsius_connectors_06(procs, tmp_path):  # noqa: F811
    """0.6's SourceConnectorConfig reads 0.6 stream messages; its SinkConnectorConfig
    writes them (as the udp_source/udp_sink connector programs did)."""
    data, expected = celsius_feed(tmp_path / "celsius.msg")
    out = tmp_path / "out.txt"
    port = receive(procs, out, "--stream-frames", "0.6")
    feed = free_port()
    run(procs, "celsius_connectors_06.py", "--feed-port", feed, "--conversion-port", port)
    send(procs, feed, data, "--framed-file", "--stream-frames", "0.6")
    assert wait_lines(out, len(expected)) == expected


def test_celsius_connectors_head(procs, tmp_path):  # noqa: F811
    """The head's at-least-once SourceConnectorConfig (cookie, credits) fed by a
    connector; the TCP sink sends the head's stream messages."""
    data, expected = celsius_feed(tmp_path / "celsius.msg")
    out = tmp_path / "out.txt"
    port, feed = receive(procs, out, "--stream-frames", "head"), free_port()
    runner = run(procs, "celsius_connectors_head.py", "--in", f"127.0.0.1:{feed}",
                 "--out", f"127.0.0.1:{port}")
    send(procs, feed, data, "--framed-file", "--at-least-once", "Dragons-Love-Tacos")
    assert wait_lines(out, len(expected)) == expected
    stop(runner)


# -- market spread: two sources ---------------------------------------------------------


def market_data(rng, symbols) -> tuple:
    """Market data records and each symbol's reject flag after them (or no record)."""
    records, reject = [], {}
    for _ in range(300):
        sym = rng.choice(symbols[:-3])  # the last three symbols never get market data
        bid = round(rng.uniform(10, 100), 2)
        offer = bid + rng.choice([0.01, 0.02, 0.5, 3.0])
        records.append(struct.pack(">B4s21sdd", 2, sym, b"20240101-00:00:00.000", bid, offer))
        spread = offer - bid
        reject[sym] = (spread >= 0.05 or spread / ((bid + offer) / 2) >= 0.05, bid, offer)
    return records, reject


def orders(rng, symbols) -> list:
    return [(rng.choice([1, 2]), i, f"o{i:05d}".encode(), rng.choice(symbols),
             float(rng.randint(1, 500)), round(rng.uniform(10, 100), 2)) for i in range(400)]


@pytest.mark.parametrize("generation", GENERATIONS)
def test_market_spread_two_sources(procs, tmp_path, generation):  # noqa: F811
    """Market data first (the runner's status line says when all of it was read), then
    orders; every order for a symbol whose latest spread is wide, or that never had
    market data, comes out as a 55-byte order result."""
    rng = random.Random(11)
    symbols = [f"S{i:03d}".encode() for i in range(30)]
    nbbo, reject = market_data(rng, symbols)
    order_list = orders(rng, symbols)
    expected = Counter()
    for side, account, oid, sym, qty, price in order_list:
        flag, bid, offer = reject.get(sym, (True, 0.0, 0.0))
        if flag:
            expected[(side, account, oid, sym, qty, price, bid, offer)] += 1
    order_file = framed_file(tmp_path / "orders.msg", [
        struct.pack(">BBI6s4sdd21s", 1, side, account, oid, sym, qty, price, b"t" * 21)
        for side, account, oid, sym, qty, price in order_list])
    nbbo_file = framed_file(tmp_path / "nbbo.msg", nbbo)
    out = tmp_path / "out.bin"
    port = receive(procs, out, "--framed")
    orders_port, nbbo_port = free_port(), free_port()
    runner = run(procs, f"market_spread_{generation}.py", "--in",
                 in_arg(generation, ("Orders", orders_port), ("Market Data", nbbo_port)),
                 "--out", f"127.0.0.1:{port}", workers=2)
    send(procs, nbbo_port, nbbo_file, "--framed-file")
    runner.wait_for(rf"in {len(nbbo):,} \(")
    send(procs, orders_port, order_file, "--framed-file")
    n = sum(expected.values())
    wait_until(lambda: out.exists() and out.stat().st_size >= 56 * n, 30, f"{n} order results")
    stop(runner)
    blob = out.read_bytes()
    assert len(blob) == 56 * n  # 55-byte results, each followed by the receiver's newline
    got = Counter(struct.unpack(">BI6s4sddddQ", blob[i:i + 55])[:8] for i in range(0, len(blob), 56))
    assert got == expected


def test_the_runner_help_names_both_forms_of_in(procs):  # noqa: F811
    helper = procs.start("run", "--help")
    helper.wait(30)
    assert re.search(r"name@host:port\s+gives\s+\(name, host, port\)", helper.stdout())
