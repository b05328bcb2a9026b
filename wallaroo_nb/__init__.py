"""wallaroo_nb: Wallaroo's stream processing API on ZeroMQ-linked worker processes.

Define an application with Wallaroo 0.6's Python API, then ``app = run(app_or_pipeline,
workers=2)``: results, state, errors (and latency, windows) come back to the notebook.
"""

from .api import (
    Application,
    BuildError,
    Pipeline,
    build_application,
    computation,
    computation_multi,
    decoder,
    encoder,
    hours,
    key_extractor,
    microseconds,
    milliseconds,
    minutes,
    nanoseconds,
    seconds,
    source,
    state_computation,
    state_computation_multi,
)
from .connectors.base import Sink, SinkConfig, Source, SourceConfig
from .connectors.kafka import KafkaSinkConfig, KafkaSourceConfig
from .connectors.memory import (
    CallbackSinkConfig,
    CollectorSinkConfig,
    DataFrameSourceConfig,
    GenSourceConfig,
    IterableSourceConfig,
)
from .connectors.tcp import TCPSinkConfig, TCPSourceConfig
from .errors import StepError, StepTimeout, WorkerFailure
from .windows import Aggregation, count_windows, event_windows, range_windows, session_windows

# The driver side (processes, pandas, metrics store) loads on first use: workers
# import this package too and must start fast and small.
_LAZY = {
    "App": "wallaroo_nb.cluster.app",
    "run": "wallaroo_nb.cluster.app", "running_apps": "wallaroo_nb.cluster.app",
    "tcp_parse_input_addrs": "wallaroo_nb.compat", "tcp_parse_output_addrs": "wallaroo_nb.compat",
    "DefaultKafkaSourceCLIParser": "wallaroo_nb.compat",
    "DefaultKafkaSinkCLIParser": "wallaroo_nb.compat",
    "CustomKafkaSourceCLIParser": "wallaroo_nb.compat",
    "CustomKafkaSinkCLIParser": "wallaroo_nb.compat",
}


def load_ipython_extension(ipython) -> None:
    """``%load_ext wallaroo_nb``: the ``%wallaroo`` magic, in any Python kernel."""
    from .notebook.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext wallaroo_nb``."""
    from .notebook.extension import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wallaroo_nb' has no attribute {name!r}")


__all__ = [
    "Aggregation", "count_windows", "event_windows", "range_windows", "session_windows",
    "App", "Application", "BuildError", "CallbackSinkConfig", "CollectorSinkConfig",
    "KafkaSinkConfig", "KafkaSourceConfig", "TCPSinkConfig", "TCPSourceConfig",
    "tcp_parse_input_addrs", "tcp_parse_output_addrs", "DefaultKafkaSourceCLIParser",
    "DefaultKafkaSinkCLIParser", "CustomKafkaSourceCLIParser", "CustomKafkaSinkCLIParser",
    "DataFrameSourceConfig", "GenSourceConfig", "IterableSourceConfig", "Pipeline", "Sink",
    "SinkConfig", "Source", "SourceConfig", "StepError", "StepTimeout", "WorkerFailure", "build_application",
    "computation", "computation_multi", "decoder", "encoder", "hours", "key_extractor",
    "microseconds", "milliseconds", "minutes", "nanoseconds", "run", "running_apps", "seconds",
    "source", "state_computation", "state_computation_multi",
]
