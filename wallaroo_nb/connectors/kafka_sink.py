"""Kafka sink over confluent-kafka (imported lazily, on the worker).

The producer is idempotent (the broker drops a retried duplicate) and every call
returns at once: outputs go into librdkafka's queue as far as it has room, the rest
waits here (and ``ready()`` is False meanwhile, so the worker stops reading its
sources); deliveries are counted as the broker acknowledges them.

With resilience the sink is exactly once: outputs wait for their epoch to commit,
are checkpointed with it, and carry an id header; a checkpoint also keeps what was
committed before but is not yet acknowledged. After a recovery the sink reads its
partitions from the offsets it had reached at the checkpoint and sends again only
the outputs whose ids it does not find there.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from functools import partial
from typing import Any, Optional

from .base import Sink, SinkConfig
from .framing import ErrorLog, encoder_fn
from .kafka_client import LOG_LEVELS, Brokers, bootstrap_servers, client_config

log = logging.getLogger(__name__)

ID_HEADER = "wallaroo_nb-id"  # "worker:epoch:index" on messages of committed epochs
RESTORE_SCAN_QUIET_S = 1.0  # a partition is read to its end once it is quiet this long
_COUNTERS = ("accepted", "delivered", "failed", "too_large")
PRODUCE_PER_TURN = 5000  # outputs produced per call at most (a few ms of the loop)
ROOM_POLL_S = 0.002  # outputs wait for room in librdkafka's queue: try again this soon
REPORT_POLL_S = 0.05  # deliveries outstanding: serve their reports this often


class KafkaSinkConfig(SinkConfig):
    """Produce outputs to ``topic``; ``encoder(output)`` gives ``(value, key, partition)``.

    ``key`` and ``partition`` may be None (the producer's partitioner decides), and
    an encoder may return just ``value``; str is sent as UTF-8. A message whose
    value plus key exceeds ``max_message_size`` bytes is not sent: it is counted
    (``stats()['too_large']``) and recorded. ``max_produce_buffer_ms`` is how long
    the producer may hold messages to batch them (librdkafka ``linger.ms``). The
    producer is idempotent (``enable.idempotence``). Outputs go into librdkafka's
    local queue as far as it has room, at most 5,000 per call; the rest waits in the
    sink and the worker stops reading its sources meanwhile (backpressure); messages the broker never acknowledges within
    ``message.timeout.ms`` (30 s here unless ``config`` says otherwise) are counted
    as failed and recorded. ``close`` waits up to ``flush_timeout`` seconds for
    outstanding deliveries. ``config`` is passed to librdkafka as is (it wins).
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

    def producer_config(self, errors: ErrorLog) -> dict:
        """librdkafka's settings for this sink's producer (the user's ``config`` last)."""
        conf = client_config(self.brokers, self.log_level, errors)
        conf.update({
            "enable.idempotence": True,  # retries never write a message twice
            "linger.ms": self.max_produce_buffer_ms,
            # Room for one max-size message plus record overhead in a request.
            "message.max.bytes": max(1000, self.max_message_size + 1024),
            "message.timeout.ms": 30_000,
        })
        conf.update(self.config)
        return conf


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


class _Epoch:
    """A committed epoch's outputs on their way to the broker: ``objs[k]`` has index
    ``ids[k]`` in its epoch; those before ``pos`` were produced, and the produced ones
    the broker has not acknowledged yet are in ``unacked`` (index -> output)."""

    __slots__ = ("objs", "ids", "pos", "unacked")

    def __init__(self, objs: list, ids: Any) -> None:
        self.objs, self.ids, self.pos, self.unacked = objs, ids, 0, {}

    def waiting(self) -> bool:
        return self.pos < len(self.objs)

    def done(self) -> bool:
        return not self.waiting() and not self.unacked

    def unsent(self) -> list:
        """(index, output) of every output not known to be in Kafka."""
        return (list(self.unacked.items())
                + [(self.ids[k], self.objs[k]) for k in range(self.pos, len(self.objs))])


class KafkaSink(Sink):
    """A live Kafka sink: one idempotent producer, fed without ever blocking.

    ``held`` / ``pending``: outputs of epochs not yet committed (resilience);
    ``delivering``: committed epochs being produced (``_Epoch``); ``loose``: outputs
    without resilience waiting for room in librdkafka's queue.
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
        self.delivering: dict = {}  # epoch -> _Epoch, in epoch order
        self.loose: deque = deque()
        self.next_offsets: dict = {}  # partition -> offset after our last delivered message
        self.worker = 0
        self.last_pump = 0.0

    def open(self, worker: int) -> None:
        from confluent_kafka import Producer

        self.worker = worker
        self.producer = Producer(self.config.producer_config(self.errors))

    # -- resilience: hold until commit; checkpoint what is not known to be in Kafka

    def hold(self) -> None:
        self.holding = True

    def epoch_state(self, epoch: int) -> dict:
        """Close the held outputs into ``epoch``; keep them, the committed outputs not
        yet acknowledged, and where our messages end in each partition."""
        if self.held:
            self.pending.append((epoch, self.held))
            self.held = []
        self._serve()
        unsent = [(e, d.unsent()) for e, d in self.delivering.items()]
        return {"pending": list(self.pending), "unsent": [(e, u) for e, u in unsent if u],
                "offsets": dict(self.next_offsets)}

    def commit(self, epoch: int) -> None:
        """The app committed ``epoch``: start delivering every epoch up to it."""
        due = [(e, outs) for e, outs in self.pending if e <= epoch]
        self.pending = [(e, outs) for e, outs in self.pending if e > epoch]
        for e, outs in due:
            self.delivering[e] = _Epoch(outs, range(len(outs)))
        self._pump()

    def restore(self, state: dict) -> None:
        """Deliver the restored (committed) outputs that are not already in the topic."""
        self.held, self.pending = [], []  # a rollback in place: they are of a void era
        self.next_offsets = {int(p): int(o) for p, o in state["offsets"].items()}
        todo = [(e, list(items)) for e, items in state.get("unsent", ())]
        todo += [(e, list(enumerate(outs))) for e, outs in state["pending"]]
        if not todo:
            return
        found = self._ids_in_topic(self.next_offsets)
        for e, items in sorted(todo, key=lambda t: t[0]):
            keep = [(i, obj) for i, obj in items if f"{self.worker}:{e}:{i}" not in found]
            self.counts["skipped_delivered"] += len(items) - len(keep)
            if keep:
                self.delivering[e] = _Epoch([obj for _, obj in keep], [i for i, _ in keep])
        self._pump()

    def _ids_in_topic(self, offsets: dict) -> set:
        """Ids this worker's messages carry, from the checkpoint's offsets to the end."""
        from confluent_kafka import Consumer, TopicPartition

        c = self.config
        conf = client_config(c.brokers, c.log_level, self.errors)
        conf.update({"group.id": f"{c.name}-restore-{self.worker}", "enable.auto.commit": False})
        consumer = Consumer(conf)
        found: set = set()
        try:
            meta = consumer.list_topics(c.topic, timeout=10)
            parts = sorted(meta.topics[c.topic].partitions)
            consumer.assign([TopicPartition(c.topic, p, offsets.get(p, 0)) for p in parts])
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

    # -- writing: never blocks

    def write(self, batch: list) -> None:
        """Hold the outputs (resilience) or produce them as far as librdkafka takes them."""
        if self.holding:
            self.held.extend(batch)
            return
        if self.loose:
            self.loose.extend(batch)
            self._pump()
            return
        for k, obj in enumerate(batch):
            if not self._write_one(obj, None):
                self.loose.extend(batch[k:])
                break
        self.producer.poll(0)
        self.last_pump = time.monotonic()

    def _pump(self) -> None:
        """Produce what waits, in order, until librdkafka's queue is full or this turn's
        budget is spent (a big epoch goes out over several loop turns); serve reports."""
        self.last_pump = time.monotonic()
        loose = self.loose
        budget = PRODUCE_PER_TURN
        while loose and budget and self._write_one(loose[0], None):
            loose.popleft()
            budget -= 1
        if not loose and budget:
            self._produce_epochs(budget)
        self._serve()

    def _produce_epochs(self, budget: int) -> None:
        prefix = f"{self.worker}:"
        for epoch, d in self.delivering.items():
            objs, ids, unacked = d.objs, d.ids, d.unacked
            # delivery reports carry no headers: each message's callback knows its index
            report = partial(self._delivered_id, unacked)
            while d.pos < len(objs):
                i, obj = ids[d.pos], objs[d.pos]
                header = [(ID_HEADER, f"{prefix}{epoch}:{i}".encode())]
                if not budget or not self._write_one(obj, header, partial(report, i)):
                    return
                unacked[i] = obj
                d.pos += 1
                budget -= 1

    def _serve(self) -> None:
        """Run delivery callbacks, then forget the epochs that are wholly in Kafka."""
        if self.producer is not None:
            self.producer.poll(0)
        done = [e for e, d in self.delivering.items() if d.done()]
        for e in done:
            del self.delivering[e]

    def _write_one(self, obj: Any, headers: Optional[list], report: Any = None) -> bool:
        """Encode and produce one output; False (nothing done) if the queue is full."""
        try:
            value, key, partition = split_encoded(self.fn(obj))
        except Exception as e:
            self.errors.record("encoder", obj, e, with_traceback=True)
            return True
        size = len(value or b"") + len(key or b"")
        if size > self.config.max_message_size:
            self.counts["too_large"] += 1
            self.errors.record("size", obj, f"message of {size} bytes exceeds "
                                            f"max_message_size={self.config.max_message_size}")
            return True
        kw = {} if partition is None else {"partition": partition}
        if headers:
            kw["headers"] = headers
        try:
            self.producer.produce(self.config.topic, value, key,
                                  on_delivery=report or self._delivered, **kw)
        except BufferError:
            self.counts["queue_full"] += 1
            return False
        except Exception as e:  # e.g. unknown partition: this message only
            self.errors.record("produce", obj, e)
            return True
        self.counts["accepted"] += 1
        return True

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.counts["delivered"] += 1
            p, nxt = msg.partition(), msg.offset() + 1
            if nxt > self.next_offsets.get(p, 0):
                self.next_offsets[p] = nxt
        else:
            self.counts["failed"] += 1
            self.errors.record("delivery", msg.value(), f"{err.name()}: {err.str()}")

    def _delivered_id(self, unacked: dict, index: int, err: Any, msg: Any) -> None:
        """The report on a message of a committed epoch: it is no longer unacknowledged
        (a failure is counted and recorded, and not retried)."""
        unacked.pop(index, None)
        self._delivered(err, msg)

    # -- the worker's loop

    def backlog(self) -> int:
        """Outputs waiting for room in librdkafka's queue."""
        return len(self.loose) + sum(len(d.objs) - d.pos for d in self.delivering.values())

    def ready(self) -> bool:
        """False while outputs wait for room in librdkafka's queue (backpressure)."""
        return not self.loose and not any(d.waiting() for d in self.delivering.values())

    def wait_hint(self) -> Optional[float]:
        """Seconds until the sink wants ``flush``: soon while outputs wait for room,
        every 50 ms while deliveries are due (their reports), else None."""
        if not self.ready():
            wait = ROOM_POLL_S
        elif self.producer is not None and (len(self.producer) or self.delivering):
            wait = REPORT_POLL_S
        else:
            return None
        return max(0.0, self.last_pump + wait - time.monotonic())

    def flush(self) -> None:
        """Produce what waits as far as there is room, and serve delivery reports."""
        if self.producer is not None:
            self._pump()

    def close(self) -> None:
        """Up to ``flush_timeout`` to deliver what waits; count what is left as failed."""
        if self.producer is None:
            return
        deadline = time.monotonic() + self.config.flush_timeout
        while not self.ready() and time.monotonic() < deadline:
            self._pump()
            self.producer.poll(0.01)
        left = self.producer.flush(max(0.0, deadline - time.monotonic())) + self.backlog()
        if left:
            self.counts["undelivered_at_close"] += left
            self.errors.record("delivery", "", f"{left} messages undelivered at close")
        self.counts["uncommitted_at_close"] += len(self.held) + sum(len(o) for _, o in self.pending)
        self.producer = None

    # -- reporting

    def drain_errors(self) -> list:
        """Recent error records since the last drain (see ErrorLog)."""
        return self.errors.drain()

    def stats(self) -> dict:
        """Counters: accepted, delivered, failed, too_large, in flight, waiting, held."""
        out = self.errors.stats(self.counts, _COUNTERS)
        out["in_flight"] = len(self.producer) if self.producer is not None else 0
        out["waiting"] = self.backlog()
        out["held_messages"] = len(self.held) + sum(len(o) for _, o in self.pending)
        return out
