"""Load-testing harness for Outpost: open- and closed-loop gRPC load, HdrHistogram latency, a bare baseline server.

Banks use it (``outpost-loadtest``) to size a deployment; ``bench`` uses it to measure Outpost
against the bare Python gRPC limit on the same machine. See docs/loadtest.md.
"""

from loadtest._baseline import FIXED_RESPONSE, BaselineServer
from loadtest._config import LoadTestConfig, Method
from loadtest._data import load_transactions, simulated_transactions
from loadtest._errors import ConfigError, DataError, LoadTestError, TargetError
from loadtest._health import is_serving, wait_serving
from loadtest._report import LoadReport
from loadtest._requests import RequestPool, frame_to_requests, row_to_request
from loadtest._runner import run_load_test

__all__ = [
    "FIXED_RESPONSE",
    "BaselineServer",
    "ConfigError",
    "DataError",
    "LoadReport",
    "LoadTestConfig",
    "LoadTestError",
    "Method",
    "RequestPool",
    "TargetError",
    "frame_to_requests",
    "is_serving",
    "load_transactions",
    "row_to_request",
    "run_load_test",
    "simulated_transactions",
    "wait_serving",
]
