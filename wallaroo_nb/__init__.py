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
from .cluster.app import App, StepError, run, running_apps
from .cluster.driver import WorkerFailure
from .connectors.base import Sink, SinkConfig, Source, SourceConfig
from .connectors.memory import (
    CallbackSinkConfig,
    CollectorSinkConfig,
    DataFrameSourceConfig,
    GenSourceConfig,
    IterableSourceConfig,
)

__all__ = [
    "App", "Application", "BuildError", "CallbackSinkConfig", "CollectorSinkConfig",
    "DataFrameSourceConfig", "GenSourceConfig", "IterableSourceConfig", "Pipeline", "Sink",
    "SinkConfig", "Source", "SourceConfig", "StepError", "WorkerFailure", "build_application",
    "computation", "computation_multi", "decoder", "encoder", "hours", "key_extractor",
    "microseconds", "milliseconds", "minutes", "nanoseconds", "run", "running_apps", "seconds",
    "source", "state_computation", "state_computation_multi",
]
