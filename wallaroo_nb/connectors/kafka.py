"""Kafka source and sink over confluent-kafka (imported lazily, on the worker).

The source assigns its partitions explicitly (no consumer-group rebalancing):
it starts at offsets it chooses, reports ``position()`` as ``{partition: next
offset}`` and can ``seek`` back to any position, which is what checkpoint replay
needs. It does not rely on the broker's high watermark or on "latest" lookups
being exact. The sink produces each encoder result ``(value, key, partition)``
and counts every delivery and failure.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Callable, Optional, Union

from .base import Sink, SinkConfig, Source, SourceConfig
from .framing import ErrorLog, decoder_parts, encoder_fn

log = logging.getLogger(__name__)

# Wallaroo's --kafka_*_log_level names -> librdkafka syslog levels.
LOG_LEVELS = {"Fine": 7, "Info": 6, "Warn": 4, "Error": 3}
OFFSET_BEGINNING = -2  # librdkafka's logical offsets, also used in positions
OFFSET_END = -1

Brokers = Union[str, list]


def bootstrap_servers(brokers: Brokers) -> str:
    """librdkafka's ``host:port,...`` from a string, a list of strings, or (host, port) pairs."""
    if isinstance(brokers, str):
        items = [b.strip() for b in brokers.split(",")]
    else:
        items = [f"{b[0]}:{b[1]}" if isinstance(b, (tuple, list)) else str(b).strip()
                 for b in brokers]
    items = [b for b in items if b and not b.startswith(":")]
    if not items:
        raise ValueError(f"no Kafka brokers given (got {brokers!r})")
    return ",".join(items)


def _client_config(brokers: Brokers, log_level: str, errors: ErrorLog) -> dict:
    """Settings shared by consumer and producer (the caller adds the user's ``config`` last)."""
    if log_level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {sorted(LOG_LEVELS)}, got {log_level!r}")

    def on_error(err: Any) -> None:
        errors.record("kafka", "", f"{err.name()}: {err.str()}")

    conf = {
        "bootstrap.servers": bootstrap_servers(brokers),
        "log_level": LOG_LEVELS[log_level],
        "logger": logging.getLogger(__name__ + ".rdkafka"),
        "error_cb": on_error,
    }
    return conf


# -- source --------------------------------------------------------------------


class KafkaSourceConfig(SourceConfig):
    """Read ``topic`` from ``brokers``; each message value goes through ``decoder``.

    ``start_offset``: "earliest" (default), "latest", "committed" (the group's
    committed offsets, else earliest), an int for every partition, or a dict
    ``{partition: offset}`` (others earliest). ``partitions`` limits which
    partitions are read (default: all). ``decoder`` is a ``@decoder`` object or a
    plain function ``bytes -> message | None``; None keeps the raw value bytes.
    ``group`` names the consumer group offsets are committed under (``commit``);
    the source never joins the group, so there is no rebalancing. ``config`` is
    passed to librdkafka as is (it wins over ours). ``poll_interval`` is how long
    the worker may sleep when nothing arrived (librdkafka has no fd to poll).
    """

    replayable = True  # positions are per-partition offsets: recovery rewinds to them

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

    def set_share(self, index: int, count: int) -> None:
        """Read only partitions p with ``p % count == index`` (several workers, one topic)."""
        if not 0 <= index < count:
            raise ValueError(f"share index {index} out of range for count {count}")
        self.share = (index, count)

    # -- lifecycle

    def open(self, worker: int) -> None:
        from confluent_kafka import Consumer

        c = self.config
        conf = _client_config(c.brokers, c.log_level, self.errors)
        conf.update({
            "group.id": c.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "latest" if c.start_offset == "latest" else "earliest",
            # Only matter if a group is ever joined; Tansu needs them to be quick.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
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

    def read(self, max_n: int) -> list:
        """Up to ``max_n`` decoded messages; never blocks, never None (unbounded)."""
        msgs = self.consumer.consume(num_messages=max_n, timeout=0)
        self._busy = len(msgs) >= max_n
        out = []
        for m in msgs:
            err = m.error()
            if err is not None:
                self.errors.record("kafka", f"partition {m.partition()}", f"{err.name()}: {err.str()}")
                continue
            self.offsets[m.partition()] = m.offset() + 1
            self.counts["messages"] += 1
            self._decode(m.value(), out)
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

    def commit(self, position: dict) -> None:
        """Store ``position`` as the group's committed offsets (e.g. after a checkpoint)."""
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(self.config.topic, int(p), int(o))
               for p, o in position.items() if int(o) >= 0]
        if tps:
            self.consumer.commit(offsets=tps, asynchronous=False)

    # -- reporting

    def drain_errors(self) -> list:
        """Recent error records since the last drain (see ErrorLog)."""
        return self.errors.drain()

    def stats(self) -> dict:
        """Counters: messages read, dropped (decoder None), errors by kind."""
        return self.errors.stats(self.counts, ("messages", "dropped"))


# -- sink ----------------------------------------------------------------------


class KafkaSinkConfig(SinkConfig):
    """Produce outputs to ``topic``; ``encoder(output)`` gives ``(value, key, partition)``.

    ``key`` and ``partition`` may be None (the producer's partitioner decides), and
    an encoder may return just ``value``; str is sent as UTF-8. A message whose
    value plus key exceeds ``max_message_size`` bytes is not sent: it is counted
    (``stats()['too_large']``) and recorded. ``max_produce_buffer_ms`` is how long
    the producer may hold messages to batch them (librdkafka ``linger.ms``). When
    librdkafka's local queue is full, ``write`` waits for room (backpressure);
    messages the broker never acknowledges within ``message.timeout.ms`` (30 s
    here unless ``config`` says otherwise) are counted as failed. ``close`` waits
    up to ``flush_timeout`` seconds for outstanding deliveries.
    """

    def __init__(
        self,
        topic: str,
        brokers: Brokers,
        encoder: Any,
        max_message_size: int = 100_000,
        max_produce_buffer_ms: int = 0,
        name: str = "kafka_sink",
        log_level: str = "Warn",
        flush_timeout: float = 10.0,
        config: Optional[dict] = None,
    ) -> None:
        self.topic = topic
        self.brokers = brokers
        self.encoder = encoder
        self.max_message_size = max_message_size
        self.max_produce_buffer_ms = max_produce_buffer_ms
        self.name = name
        self.log_level = log_level
        self.flush_timeout = flush_timeout
        self.config = dict(config or {})

    def check(self) -> None:
        """Raise ValueError naming the problem (topic, brokers, sizes, encoder)."""
        where = f"KafkaSinkConfig {self.name!r}"
        if not self.topic or not isinstance(self.topic, str):
            raise ValueError(f"{where}: a topic name is required")
        if not (isinstance(self.max_message_size, int) and self.max_message_size > 0):
            raise ValueError(f"{where}: max_message_size must be a positive int")
        if not (isinstance(self.max_produce_buffer_ms, int) and self.max_produce_buffer_ms >= 0):
            raise ValueError(f"{where}: max_produce_buffer_ms must be an int >= 0")
        try:
            bootstrap_servers(self.brokers)
            encoder_fn(self.encoder)
            if self.log_level not in LOG_LEVELS:
                raise ValueError(f"log_level must be one of {sorted(LOG_LEVELS)}")
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def make_sink(self) -> "KafkaSink":
        self.check()
        return KafkaSink(self)


def _to_bytes(x: Any) -> Optional[bytes]:
    if x is None or isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"expected bytes or str, got {type(x).__name__}")


def split_encoded(encoded: Any) -> tuple:
    """(value, key, partition) from an encoder result: a 3- or 2-tuple, or a bare value."""
    if isinstance(encoded, tuple):
        if len(encoded) == 3:
            value, key, partition = encoded
        elif len(encoded) == 2:
            (value, key), partition = encoded, None
        else:
            raise TypeError(f"encoder returned a {len(encoded)}-tuple; "
                            "expected (value, key, partition)")
    else:
        value, key, partition = encoded, None, None
    if partition is not None and not isinstance(partition, int):
        raise TypeError(f"partition must be an int or None, got {partition!r}")
    return _to_bytes(value), _to_bytes(key), partition


ID_HEADER = "wallaroo_nb-id"  # "worker:epoch:index" on messages of committed epochs
RESTORE_SCAN_QUIET_S = 1.0  # a partition is read to its end once it is quiet this long


class KafkaSink(Sink):
    """A live Kafka sink: one producer; deliveries are counted as the broker acks them.

    With resilience it is exactly once: outputs wait for their epoch to commit,
    are checkpointed with it, and carry an id; after a recovery the sink reads its
    partitions from the offsets it had reached at the checkpoint and re-sends only
    the committed outputs whose ids it does not find.
    """

    commits = True

    def __init__(self, config: KafkaSinkConfig) -> None:
        self.config = config
        self.fn = encoder_fn(config.encoder)
        self.errors = ErrorLog(config.name, log)
        self.counts: Counter = Counter()
        self.producer: Any = None
        self.holding = False
        self.held: list = []
        self.pending: list = []  # (epoch, outputs) checkpointed but not yet committed
        self.next_offsets: dict = {}  # partition -> offset after our last delivered message
        self.worker = 0

    def hold(self) -> None:
        self.holding = True

    def epoch_state(self, epoch: int) -> dict:
        if self.held:
            self.pending.append((epoch, self.held))
            self.held = []
        return {"pending": list(self.pending), "offsets": dict(self.next_offsets)}

    def commit(self, epoch: int) -> None:
        due = [(e, outs) for e, outs in self.pending if e <= epoch]
        self.pending = [(e, outs) for e, outs in self.pending if e > epoch]
        self._send_epochs(due, skip=set())

    def restore(self, state: dict) -> None:
        """Deliver the restored (committed) epochs' outputs not already in the topic."""
        self.next_offsets = dict(state["offsets"])
        if state["pending"]:
            self._send_epochs(state["pending"], skip=self._ids_in_topic(state["offsets"]))

    def _send_epochs(self, epochs: list, skip: set) -> None:
        for epoch, outs in epochs:
            for i, obj in enumerate(outs):
                ident = f"{self.worker}:{epoch}:{i}"
                if ident in skip:
                    self.counts["skipped_delivered"] += 1
                    continue
                self._write_one(obj, [(ID_HEADER, ident.encode())])
        left = self.producer.flush(self.config.flush_timeout)
        if left:
            raise RuntimeError(f"Kafka sink {self.config.name!r}: {left} committed outputs not "
                               f"delivered within {self.config.flush_timeout}s")

    def _ids_in_topic(self, offsets: dict) -> set:
        """Ids this worker's messages carry, from the checkpoint's offsets to the end."""
        from confluent_kafka import Consumer, TopicPartition

        c = self.config
        conf = _client_config(c.brokers, c.log_level, self.errors)
        conf.update({"group.id": f"{c.name}-restore-{self.worker}", "enable.auto.commit": False})
        consumer = Consumer(conf)
        found: set = set()
        try:
            meta = consumer.list_topics(c.topic, timeout=10)
            parts = sorted(meta.topics[c.topic].partitions)
            consumer.assign([TopicPartition(c.topic, p, int(offsets.get(p, offsets.get(str(p), 0))))
                             for p in parts])
            prefix = f"{self.worker}:"
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < RESTORE_SCAN_QUIET_S:
                msgs = consumer.consume(1000, 0.1)
                if msgs:
                    quiet_since = time.monotonic()
                for m in msgs:
                    if m.error() is None:
                        for k, v in m.headers() or ():
                            if k == ID_HEADER and v.decode().startswith(prefix):
                                found.add(v.decode())
        finally:
            consumer.close()
        return found

    def open(self, worker: int) -> None:
        from confluent_kafka import Producer

        self.worker = worker
        c = self.config
        conf = _client_config(c.brokers, c.log_level, self.errors)
        conf.update({
            "linger.ms": c.max_produce_buffer_ms,
            # Room for one max-size message plus record overhead in a request.
            "message.max.bytes": max(1000, c.max_message_size + 1024),
            "message.timeout.ms": 30_000,
        })
        conf.update(c.config)
        self.producer = Producer(conf)

    def write(self, batch: list) -> None:
        """Encode and produce each output; waits only while librdkafka's queue is full."""
        if self.holding:
            self.held.extend(batch)
            return
        for obj in batch:
            self._write_one(obj, None)
        self.producer.poll(0)

    def _write_one(self, obj: Any, headers: Optional[list]) -> None:
        try:
            value, key, partition = split_encoded(self.fn(obj))
        except Exception as e:
            self.errors.record("encoder", obj, e, with_traceback=True)
            return
        size = len(value or b"") + len(key or b"")
        if size > self.config.max_message_size:
            self.counts["too_large"] += 1
            self.errors.record("size", obj, f"message of {size} bytes exceeds "
                                            f"max_message_size={self.config.max_message_size}")
            return
        self._produce(value, key, partition, obj, headers)

    def _produce(self, value: Optional[bytes], key: Optional[bytes], partition: Optional[int],
                 obj: Any, headers: Optional[list] = None) -> None:
        kw = {} if partition is None else {"partition": partition}
        if headers:
            kw["headers"] = headers
        while True:
            try:
                self.producer.produce(self.config.topic, value, key,
                                      on_delivery=self._delivered, **kw)
                self.counts["accepted"] += 1
                return
            except BufferError:
                self.counts["queue_full_waits"] += 1
                self.producer.poll(0.1)  # serve deliveries until there is room
            except Exception as e:  # e.g. unknown partition: this message only
                self.errors.record("produce", obj, e)
                return

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.counts["delivered"] += 1
            p, nxt = msg.partition(), msg.offset() + 1
            if nxt > self.next_offsets.get(p, 0):
                self.next_offsets[p] = nxt
        else:
            self.counts["failed"] += 1
            self.errors.record("delivery", msg.value(), f"{err.name()}: {err.str()}")

    def flush(self) -> None:
        """Serve delivery reports; librdkafka sends on its own within linger.ms."""
        if self.producer is not None:
            self.producer.poll(0)

    def close(self) -> None:
        """Wait up to ``flush_timeout`` for deliveries; count what is left as failed."""
        if self.producer is None:
            return
        left = self.producer.flush(self.config.flush_timeout)
        if left:
            self.counts["undelivered_at_close"] += left
            self.errors.record("delivery", "", f"{left} messages undelivered at close")
        self.producer = None

    def drain_errors(self) -> list:
        """Recent error records since the last drain (see ErrorLog)."""
        return self.errors.drain()

    def stats(self) -> dict:
        """Counters: accepted, delivered, failed, too_large, in flight, errors by kind."""
        out = self.errors.stats(self.counts, ("accepted", "delivered", "failed", "too_large"))
        out["in_flight"] = len(self.producer) if self.producer is not None else 0
        return out
