"""Kafka source over confluent-kafka (imported lazily, on the worker); the sink is in
kafka_sink.py, and both are importable from here.

The source is parallel: every worker runs it and reads its share of the topic's
partitions (partition p on share p mod N), assigned explicitly (no consumer-group
rebalancing). It starts at offsets it chooses, reports ``position()`` as
``{partition: next offset}`` and can ``seek`` back to any position, which is what
checkpoint replay needs. It does not rely on the broker's high watermark or on
"latest" lookups being exact. It commits offsets to its consumer group (after each
checkpoint with resilience, periodically without), so the group's lag shows in
standard Kafka tools.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Callable, Optional, Union

from .base import Source, SourceConfig
from .framing import ErrorLog, decoder_parts
from .kafka_client import LOG_LEVELS, Brokers, bootstrap_servers, client_config
from .kafka_sink import KafkaSink, KafkaSinkConfig, split_encoded

__all__ = ["KafkaSink", "KafkaSinkConfig", "KafkaSource", "KafkaSourceConfig", "LOG_LEVELS",
           "bootstrap_servers", "split_encoded"]

log = logging.getLogger(__name__)

OFFSET_BEGINNING = -2  # librdkafka's logical offsets, also used in positions
OFFSET_END = -1


# -- source --------------------------------------------------------------------


class KafkaSourceConfig(SourceConfig):
    """Read ``topic`` from ``brokers``; each message value goes through ``decoder``.

    ``start_offset``: "earliest" (default), "latest", "committed" (the group's
    committed offsets, else earliest), an int for every partition, or a dict
    ``{partition: offset}`` (others earliest). ``partitions`` limits which
    partitions are read (default: all). ``decoder`` is a ``@decoder`` object or a
    plain function ``bytes -> message | None``; None keeps the raw value bytes.
    Every worker reads a share: partition p on worker p mod N (``parallel``).
    ``group`` names the consumer group offsets are committed under; the source
    never joins the group, so there is no rebalancing. With resilience it commits
    the replay point of each committed checkpoint (``committed``); without, its
    read position every ``commit_interval`` seconds and at close (None: never), so
    the group's lag shows in standard tools. ``config`` is passed to librdkafka
    as is (it wins over ours). ``poll_interval`` is how long the worker may sleep
    when nothing arrived (librdkafka has no fd to poll).
    """

    replayable = True  # positions are per-partition offsets: recovery rewinds to them
    parallel = True  # every worker reads its share of the partitions
    bounded = False

    def __init__(
        self,
        topic: str,
        brokers: Brokers,
        group: str = "wallaroo_nb",
        start_offset: Union[str, int, dict] = "earliest",
        decoder: Any = None,
        name: Optional[str] = None,
        event_time: Optional[Callable[[Any], int]] = None,
        partitions: Optional[list] = None,
        log_level: str = "Warn",
        poll_interval: float = 0.01,
        commit_interval: Optional[float] = 5.0,
        metadata_timeout: float = 10.0,
        config: Optional[dict] = None,
    ) -> None:
        self.topic = topic
        self.brokers = brokers
        self.group = group
        self.start_offset = start_offset
        self.decoder = decoder
        self.name = name or f"kafka:{topic}"
        self.event_time = event_time
        self.partitions = partitions
        self.log_level = log_level
        self.poll_interval = poll_interval
        self.commit_interval = commit_interval
        self.metadata_timeout = metadata_timeout
        self.config = dict(config or {})

    def check(self) -> None:
        """Raise ValueError naming the problem (topic, brokers, offsets, decoder)."""
        where = f"KafkaSourceConfig {self.name!r}"
        if not self.topic or not isinstance(self.topic, str):
            raise ValueError(f"{where}: a topic name is required")
        so = self.start_offset
        ok = (so in ("earliest", "latest", "committed") or isinstance(so, (int, dict)))
        if not ok or isinstance(so, bool):
            raise ValueError(f"{where}: start_offset must be 'earliest', 'latest', 'committed', "
                             f"an int or a {{partition: offset}} dict, got {so!r}")
        try:
            bootstrap_servers(self.brokers)
            if self.decoder is not None:
                decoder_parts(self.decoder)
            if self.log_level not in LOG_LEVELS:
                raise ValueError(f"log_level must be one of {sorted(LOG_LEVELS)}")
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if self.commit_interval is not None and not self.commit_interval > 0:
            raise ValueError(f"{where}: commit_interval must be > 0 seconds or None")

    def make_source(self) -> "KafkaSource":
        self.check()
        return KafkaSource(self)


class KafkaSource(Source):
    """A live Kafka source: one consumer with an explicit partition assignment.

    ``read`` is non-blocking (it takes what librdkafka has prefetched). Offsets
    advance for every message read, decoded or not, so ``position()`` is exactly
    where a replay must resume. Errors (decoder, broker, per-message) are counted
    and recorded for ``drain_errors()``.
    """

    def __init__(self, config: KafkaSourceConfig) -> None:
        self.config = config
        self.fn = decoder_parts(config.decoder)[0] if config.decoder is not None else None
        self.errors = ErrorLog(config.name, log)
        self.counts: Counter = Counter()
        self.consumer: Any = None
        self.offsets: dict = {}  # partition -> next offset to read (or a logical offset)
        self.share = (0, 1)
        self._pending_seek: Optional[dict] = None
        self._busy = False
        self._created: Optional[int] = None  # ms, see created_ns
        # Periodic commits of the read position, until a checkpoint commit says that
        # resilience is on (then only checkpoints' replay points are committed).
        self.checkpointed = False
        self.last_committed: dict = {}
        self.next_commit = time.monotonic() + (config.commit_interval or 0)

    def set_share(self, index: int, count: int) -> None:
        """Read only partitions p with ``p % count == index`` (several workers, one topic)."""
        if not 0 <= index < count:
            raise ValueError(f"share index {index} out of range for count {count}")
        self.share = (index, count)

    # -- lifecycle

    def open(self, worker: int) -> None:
        from confluent_kafka import Consumer

        c = self.config
        conf = client_config(c.brokers, c.log_level, self.errors)
        conf.update({
            "group.id": c.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "latest" if c.start_offset == "latest" else "earliest",
            # Only matter if a group is ever joined; Tansu needs them to be quick.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "on_commit": self._on_commit,
        })
        conf.update(c.config)
        self.consumer = Consumer(conf)
        try:
            parts = self._partitions()
            start = self._pending_seek or self._start_offsets(parts)
            self.offsets = {p: int(start.get(p, OFFSET_BEGINNING)) for p in parts}
            self._assign(self.offsets)
        except BaseException:
            self.consumer.close()
            self.consumer = None
            raise

    def close(self) -> None:
        if self.consumer is not None:
            try:
                if not self.checkpointed and self.config.commit_interval is not None:
                    self._commit(self.offsets, asynchronous=False)
                self.consumer.close()
            finally:
                self.consumer = None

    def _partitions(self) -> list:
        """This source's partitions of the topic, from the broker's metadata."""
        c = self.config
        md = self.consumer.list_topics(c.topic, timeout=c.metadata_timeout)
        topic = md.topics.get(c.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            why = topic.error if topic is not None else "not in metadata"
            raise RuntimeError(f"Kafka source {c.name!r}: topic {c.topic!r} unavailable: {why}")
        parts = sorted(topic.partitions)
        if c.partitions is not None:
            missing = set(c.partitions) - set(parts)
            if missing:
                raise RuntimeError(f"Kafka source {c.name!r}: topic {c.topic!r} has no "
                                   f"partitions {sorted(missing)}")
            parts = sorted(c.partitions)
        index, count = self.share
        return [p for p in parts if p % count == index]

    def _start_offsets(self, parts: list) -> dict:
        so = self.config.start_offset
        if so == "latest":
            return dict.fromkeys(parts, OFFSET_END)
        if so == "committed":
            return self._committed(parts)
        if isinstance(so, int):
            return dict.fromkeys(parts, so)
        if isinstance(so, dict):
            return {int(p): int(o) for p, o in so.items()}
        return dict.fromkeys(parts, OFFSET_BEGINNING)

    def _committed(self, parts: list) -> dict:
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(self.config.topic, p) for p in parts]
        got = self.consumer.committed(tps, timeout=self.config.metadata_timeout)
        return {tp.partition: tp.offset if tp.offset >= 0 else OFFSET_BEGINNING for tp in got}

    def _assign(self, offsets: dict) -> None:
        from confluent_kafka import TopicPartition

        # assign() discards anything prefetched for these partitions at old offsets.
        self.consumer.assign([TopicPartition(self.config.topic, p, o) for p, o in offsets.items()])

    # -- reading

    def read(self, max_n: int) -> Optional[list]:
        """Up to ``max_n`` decoded messages; never blocks. None only for a share with no
        partitions (more workers than partitions): it ends at once, so it never holds
        event time back."""
        if not self.offsets:
            return None
        msgs = self.consumer.consume(num_messages=max_n, timeout=0)
        self._busy = len(msgs) >= max_n
        out = []
        self._created = None
        for m in msgs:
            err = m.error()
            if err is not None:
                self.errors.record("kafka", f"partition {m.partition()}", f"{err.name()}: {err.str()}")
                continue
            kind, ms = m.timestamp()
            if kind != 0 and (self._created is None or ms < self._created):  # 0: none
                self._created = ms
            self.offsets[m.partition()] = m.offset() + 1
            self.counts["messages"] += 1
            self._decode(m.value(), out)
        if (not self.checkpointed and self.config.commit_interval is not None
                and time.monotonic() >= self.next_commit):
            self.next_commit = time.monotonic() + self.config.commit_interval
            self._commit(self.offsets, asynchronous=True)
        return out

    def _decode(self, value: Any, out: list) -> None:
        if self.fn is None:
            out.append(value)
            return
        try:
            msg = self.fn(value)
        except Exception as e:
            self.errors.record("decoder", value, e, with_traceback=True)
            return
        if msg is None:
            self.counts["dropped"] += 1
        else:
            out.append(msg)

    def created_ns(self) -> Optional[int]:
        """The broker timestamp (create or log-append time) of the last read's oldest
        message: the "source" metrics category times from it to the read."""
        return None if self._created is None else self._created * 1_000_000

    def wait_hint(self) -> Optional[float]:
        """0 while messages keep coming; else ``poll_interval`` (there is no fd to poll)."""
        return 0.0 if self._busy else self.config.poll_interval

    # -- replay

    def position(self) -> dict:
        """``{partition: next offset}``; -2 / -1 mean "from the start" / "from the end"."""
        return dict(self.offsets)

    def seek(self, position: dict) -> None:
        """Resume each partition in ``position`` at its offset (keys may be int or str)."""
        pos = {int(p): int(o) for p, o in (position or {}).items()}
        if self.consumer is None:  # before open: open() starts here
            self._pending_seek = pos
            return
        pos = {p: o for p, o in pos.items() if p in self.offsets}
        self.offsets.update(pos)
        self._assign(self.offsets)
        self._busy = True

    def resilient(self) -> None:
        """The app checkpoints: commit only checkpoints' replay points, never the read
        position (the group then always names a point a recovery can resume from)."""
        self.checkpointed = True

    def committed(self, position: dict) -> None:
        """A checkpoint whose replay point is ``position`` committed: tell the group
        (asynchronously; the worker's loop never waits for the broker)."""
        self.checkpointed = True
        self._commit(position, asynchronous=True)

    def commit(self, position: dict) -> None:
        """Store ``position`` as the group's committed offsets now (waits for the broker)."""
        self._commit(position, asynchronous=False)

    def _commit(self, position: dict, asynchronous: bool) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = {int(p): int(o) for p, o in position.items() if int(o) >= 0}
        if not offsets or offsets == self.last_committed:
            return
        tps = [TopicPartition(self.config.topic, p, o) for p, o in offsets.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=asynchronous)
        except KafkaException as e:
            self.errors.record("commit", str(offsets), e)
            return
        self.last_committed = offsets
        if not asynchronous:
            self.counts["offset_commits"] += 1

    def _on_commit(self, err: Any, partitions: list) -> None:
        """librdkafka's report on an asynchronous commit (served by ``consume``)."""
        failed = [tp for tp in partitions or () if tp.error is not None]
        if err is not None or failed:
            self.counts["offset_commit_failures"] += 1
            self.last_committed = {}
            self.errors.record("commit", str([tp.partition for tp in partitions or ()]),
                               str(err or failed[0].error))
        else:
            self.counts["offset_commits"] += 1

    # -- reporting

    def drain_errors(self) -> list:
        """Recent error records since the last drain (see ErrorLog)."""
        return self.errors.drain()

    def stats(self) -> dict:
        """Counters: messages read, dropped (decoder None), errors by kind."""
        return self.errors.stats(self.counts, ("messages", "dropped", "offset_commits",
                                                "offset_commit_failures"))
