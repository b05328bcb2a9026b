"""Sources and sinks; ``base`` is the API user-defined ones implement."""
