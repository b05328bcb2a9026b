"""The connector API: what a source or sink must do to run inside a worker.

A *config* (what the user writes in a notebook cell) is plain data shipped to the
workers by cloudpickle; a worker calls ``config.make_source()`` / ``make_sink()``
to get the live object. Built-in connectors use this same API, so a user-defined
one is a first-class citizen.
"""

from __future__ import annotations

from typing import Any, Callable, Optional


class Source:
    """A live source inside one worker. The worker loop calls ``read`` repeatedly.

    ``read(max_n)`` returns a list of up to ``max_n`` messages ([] when none is
    ready now) or None once the source is exhausted. It must not block: a source
    that waits on file descriptors lists them in ``fds()`` and the worker polls
    them; one that is paced says in ``wait_hint()`` how long until it has more.
    The source of a replayable config (``SourceConfig.replayable``) reports
    ``position()`` (plain, msgpack-able data: the position *after* the last
    message returned by ``read``) and can ``seek(pos)``.
    """

    def open(self, worker: int) -> None:
        """Called once on the worker before the first read."""

    def read(self, max_n: int) -> Optional[list]:
        raise NotImplementedError

    def fds(self) -> list:
        """File descriptors (or zmq sockets) to poll for readiness, if any."""
        return []

    def wait_hint(self) -> Optional[float]:
        """Seconds until ``read`` will have more, or None if unknown (use fds)."""
        return None

    def position(self) -> Any:
        return None

    def origin_ns(self) -> Optional[int]:
        """When the oldest message of the last ``read`` came to exist, in
        ``time.time_ns()`` nanoseconds: pipeline latency is measured from there (so time
        a message waits before it is read counts). None: the read itself. A paced
        source says when the message was due; a socket source when its bytes came."""
        return None

    def created_ns(self) -> Optional[int]:
        """When the oldest message of the last ``read`` was made, by a clock outside this
        machine (a Kafka broker's timestamp), or None: an extra figure (the "source"
        metrics category), since other clocks differ from ours."""
        return None

    def set_share(self, index: int, count: int) -> None:
        """A parallel source (``SourceConfig.parallel``) runs on every worker: before
        ``open`` each is told its share, ``index`` of ``count``. Its ``position()`` must
        then be a dict (the shares' positions are merged into one for a restore, and
        every worker seeks the merged dict, taking its own part)."""
        raise NotImplementedError(f"{type(self).__name__} cannot read a share of its input")

    def resilient(self) -> None:
        """Called before ``open`` when the app checkpoints: ``committed`` will be called
        after each checkpoint commits (a Kafka source then commits only those offsets)."""

    def committed(self, position: Any) -> None:
        """With resilience: the checkpoint whose replay point is ``position`` has
        committed (everything before it is safely processed). A Kafka source commits
        it to its consumer group; most sources do nothing."""

    def seek(self, position: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot seek: its config is not replayable")

    def close(self) -> None:
        """Called once when the worker stops."""

    def drain_errors(self) -> list:
        """Errors since the last call: dicts with step, where, input, error, traceback."""
        return []

    def stats(self) -> dict:
        """Counters (int values) such as dropped messages; shown in status and metrics."""
        return {}


class SourceConfig:
    """What the user passes to ``source(name, config)``.

    ``name`` names the source in errors and metrics; ``event_time`` is an optional
    function message -> int nanoseconds; ``bounded`` says whether the source ends;
    ``replayable`` whether its Source can seek (exactly-once recovery needs it);
    ``parallel`` whether every worker runs it, each reading a share (``set_share``).
    """

    name: str = "source"
    event_time: Optional[Callable[[Any], int]] = None
    bounded: bool = True
    replayable: bool = False  # can its sources seek(position)? (resilience needs it)
    parallel: bool = False  # every worker reads a share of it (Source.set_share)

    def make_source(self) -> Source:
        raise NotImplementedError

    def check(self) -> None:
        """Raise ValueError naming the problem if the config is unusable (build time)."""


class Sink:
    """A live sink inside one worker: receives output batches, in order.

    Exactly once (optional): a sink with ``commits = True``, in an app with
    resilience, is put in hold mode (``hold()``): ``write`` keeps outputs back;
    ``epoch_state(E)`` (at the worker's checkpoint) closes what was written since
    the previous checkpoint into epoch E and returns plain state to store with it;
    ``commit(E)`` delivers epochs up to E once the whole app has committed E; and
    after a recovery ``restore(state)`` delivers whatever of the restored epoch's
    state it cannot prove was delivered before the crash.
    """

    commits = False

    def hold(self) -> None:
        raise NotImplementedError

    def epoch_state(self, epoch: int) -> Any:
        raise NotImplementedError

    def commit(self, epoch: int) -> None:
        raise NotImplementedError

    def restore(self, state: Any) -> None:
        raise NotImplementedError

    def open(self, worker: int) -> None:
        """Called once on the worker before the first batch."""

    def write(self, batch: list) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Called when ``wait_hint()`` says so and when stopping; push out what is buffered."""

    def wait_hint(self) -> Optional[float]:
        """Seconds until the sink wants ``flush()`` called (0: now), or None: never."""
        return None

    def ready(self) -> bool:
        """False while the sink cannot take more (a slow or absent receiver): the
        worker stops reading its sources until it is True again (backpressure)."""
        return True

    def close(self) -> None:
        """Called once when the worker stops."""

    def drain_errors(self) -> list:
        """Errors since the last call: dicts with step, where, input, error, traceback."""
        return []

    def stats(self) -> dict:
        """Counters (int values) such as dropped messages; shown in status and metrics."""
        return {}


class SinkConfig:
    """What the user passes to ``to_sink(config)``.

    A sink with ``to_driver = True`` has no live object on the workers: the
    workers ship its batches to the driver. There, a sink with ``collects = True``
    keeps them for ``app.results()`` (and, with checkpoints, in the results log, so
    that a resumed app has them too); any other is called as ``fn(batch)``.
    """

    to_driver: bool = False
    collects: bool = False
    name: str = "sink"

    def make_sink(self) -> Sink:
        raise NotImplementedError

    def check(self) -> None:
        """Raise ValueError naming the problem if the config is unusable (build time)."""


def open_source(config: SourceConfig, worker: int, workers: tuple,
                resilient: bool = False) -> Source:
    """The live source of ``config`` on ``worker``, told its share if it is parallel
    (``workers``: every worker that runs it) and whether the app checkpoints, opened."""
    src = config.make_source()
    if config.parallel:
        src.set_share(workers.index(worker), len(workers))
    if resilient:
        src.resilient()
    src.open(worker)
    return src
