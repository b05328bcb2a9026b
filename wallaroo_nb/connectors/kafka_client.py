"""What the Kafka source and sink share: broker lists and librdkafka's client settings."""

from __future__ import annotations

import logging
from typing import Any, Union

from .framing import ErrorLog

# Wallaroo's --kafka_*_log_level names -> librdkafka syslog levels.
LOG_LEVELS = {"Fine": 7, "Info": 6, "Warn": 4, "Error": 3}

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


def client_config(brokers: Brokers, log_level: str, errors: ErrorLog) -> dict:
    """Settings shared by consumer and producer (the caller adds the user's ``config`` last)."""
    if log_level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {sorted(LOG_LEVELS)}, got {log_level!r}")

    def on_error(err: Any) -> None:
        errors.record("kafka", "", f"{err.name()}: {err.str()}")

    return {
        "bootstrap.servers": bootstrap_servers(brokers),
        "log_level": LOG_LEVELS[log_level],
        "logger": logging.getLogger("wallaroo_nb.connectors.kafka.rdkafka"),
        "error_cb": on_error,
    }
