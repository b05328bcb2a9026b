"""A real Kafka-protocol broker (Tansu, in memory) on 127.0.0.1 for tests.

Install the binary once with ``.ci/install-kafka-broker.sh`` (it lands in
``.venv/bin/tansu``; ``WALLAROO_NB_TANSU`` may point elsewhere). Use it from a test
module with::

    from kafka_broker import kafka_broker_fixture  # noqa: F401 (after putting tests/ on sys.path)

    def test_x(kafka_broker):
        topic = kafka_broker.create_topic(partitions=3)
        ... KafkaSourceConfig(topic, kafka_broker.bootstrap) ...

What Tansu 0.6.0 does, as these tests rely on it: idempotent producers; consumer-group
offset commits and fetches (OffsetCommit/OffsetFetch, also through the admin API's
list_consumer_group_offsets) for a consumer that never joins the group; listing and
describing such a group (state EMPTY). Its high watermark (ListOffsets "latest") is
the base offset of the partition's last record batch plus one, not the end of the log,
so a lag computed against it reads low by up to a batch: tests compare committed
offsets with known message counts, never with the watermark.

One broker serves the whole session. It is killed when the session ends, when
the test process exits, and (Linux) when the test process dies, so no broker
is ever left behind. Without the binary the Kafka tests skip, unless
``WALLAROO_NB_REQUIRE_KAFKA=1`` (set it in CI) turns that into a failure.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0


def tansu_path() -> Optional[str]:
    """The broker binary: $WALLAROO_NB_TANSU, the project's .venv/bin/tansu, or PATH."""
    for cand in (os.environ.get("WALLAROO_NB_TANSU"), str(ROOT / ".venv" / "bin" / "tansu")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return shutil.which("tansu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the test process dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class KafkaBroker:
    """A running Tansu broker; ``bootstrap`` is its ``host:port``."""

    def __init__(self, binary: str) -> None:
        self.port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self.log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)

    def wait_ready(self) -> None:
        """Return once the broker answers a metadata request; raise (and stop) if it never does."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
                return
            except Exception:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not start on {self.bootstrap}:\n{self.log_tail()}")

    def create_topic(self, name: Optional[str] = None, partitions: int = 1) -> str:
        """Create a topic (a fresh unique name by default) and wait until it is visible."""
        from confluent_kafka.admin import AdminClient, NewTopic

        name = name or f"t-{uuid.uuid4().hex[:12]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=5).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                return name
            time.sleep(0.05)
        raise RuntimeError(f"topic {name} did not appear")

    def log_tail(self, n: int = 2000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-n:]

    def stop(self) -> None:
        """Kill the broker and remove its log; safe to call more than once."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        if self.log is not None:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
            self.log = None


def start_broker() -> KafkaBroker:
    """Start a broker, retrying on a fresh port if the first one was taken meanwhile."""
    binary = tansu_path()
    if binary is None:
        msg = "no tansu broker: run .ci/install-kafka-broker.sh"
        if os.environ.get("WALLAROO_NB_REQUIRE_KAFKA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    for attempt in range(3):
        broker = KafkaBroker(binary)
        try:
            broker.wait_ready()
            return broker
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


_shared: Optional[KafkaBroker] = None


@pytest.fixture(scope="session", name="kafka_broker")
def kafka_broker_fixture():
    """One Tansu broker for the session (shared by every module that imports this)."""
    global _shared
    if _shared is None or _shared.proc is None:
        _shared = start_broker()
    yield _shared
    _shared.stop()


def read_topic(bootstrap: str, topic: str, want: int, timeout: float = 60.0) -> list:
    """Every message value (str) of ``topic``: at least ``want`` of them, then read on
    until the topic has been quiet for a second (never trust the broker's watermark)."""
    from wallaroo_nb.connectors.kafka import KafkaSourceConfig

    src = KafkaSourceConfig(topic, bootstrap, decoder=bytes.decode).make_source()
    src.open(0)
    out, deadline, quiet = [], time.monotonic() + timeout, 0
    try:
        while time.monotonic() < deadline and (len(out) < want or quiet < 20):
            got = src.read(5000)
            out += got
            quiet = 0 if got else quiet + 1
            if not got:
                time.sleep(0.05)
    finally:
        src.close()
    return out
