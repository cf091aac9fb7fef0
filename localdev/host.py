"""A local Azure Functions host for `function_app.py`, where Core Tools (`func start`) is missing.

It reads everything from the app itself (`app.get_functions()`) and from `host.json`, so the same
app runs unchanged under `func start` and in Azure. What it reproduces:

- HTTP triggers behind uvicorn: the route prefix (extensions.http.routePrefix), route templates with
  parameters, constraints (int, long, bool, guid, alpha, double, float, decimal, datetime,
  min/max/range, minlength/maxlength/length, regex), optional, default and catch-all parameters,
  ASP.NET precedence (literals before parameters), case-insensitive literals, methods (405/404),
  HttpRequest/HttpResponse as the Python worker builds and renders them, None -> 204, an
  exception -> 500 with an empty body and the traceback in the log.
- Queue triggers with extensions.queues and the Storage extension's defaults (batchSize 16,
  newBatchThreshold batchSize/2, maxDequeueCount 5, visibilityTimeout 0, maxPollingInterval 1 min,
  messageEncoding base64): exponential polling backoff from 100 ms, a 10-minute renewed lease
  while the function runs, delete on success, retry after visibilityTimeout, `<queue>-poison`
  after maxDequeueCount attempts (the original text, unchanged), concurrent batches.
- Timer triggers: six-field NCRONTAB (five fields get second 0) or a TimeSpan interval,
  %Setting% schedules, runOnStartup, no overlapping runs, past_due when a run starts more than
  a second late (several missed occurrences collapse into one run), no retries on failure,
  UTC or WEBSITE_TIME_ZONE when it is an IANA name.
- Queue output bindings (func.Out and $return), sent only when the function succeeds.
- `POST /admin/functions/{name}` {"input": "..."} runs a queue or timer function once (202);
  `GET /admin/host/status` answers {"state": "Running"}.
- local.settings.json Values go into the environment without overriding what is already set.

What the real host does that this one does not:

- triggers other than HTTP, queue and timer (blob, Service Bus, Event Hubs, Cosmos DB, Event
  Grid, durable functions, ...); output bindings other than queues and HTTP `$return` (their
  values are dropped with a warning); input bindings (the parameter gets None);
- function keys and authLevel (never enforced locally, as with `func start`), Easy Auth
  (X-MS-CLIENT-PRINCIPAL is passed through only if the caller sends it), CORS, proxies;
- identity-based connections (`<name>__queueServiceUri`), Key Vault references;
- host.json beyond extensions.http.routePrefix and extensions.queues: functionTimeout,
  retry policies, logging levels, singleton locks, concurrency (dynamic or per-function),
  HTTP maxConcurrentRequests / maxOutstandingRequests / dynamicThrottles;
- the timer schedule monitor (missed runs while the host was down are not fired past due),
  `useMonitor`, Windows time zone names;
- scale-out (one process), blob-lease based singletons, Application Insights.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import FrameType

import azure.functions as func

from localdev.funchost.config import (
    HostConfigError,
    HostOptions,
    load_host_json,
    load_settings,
    local_http_port,
    parse_timespan,
)
from localdev.funchost.process import HostProcess, free_port
from localdev.funchost.queues import DEFAULT_LEASE
from localdev.funchost.runtime import LocalHost

__all__ = [
    "HostConfigError",
    "HostOptions",
    "HostProcess",
    "LocalHost",
    "free_port",
    "load_app",
    "load_host_json",
    "load_settings",
    "main",
    "parse_timespan",
]

log = logging.getLogger("localdev.host")
# Signals this soon after the first are the same stop (a group signal and its parent's echo).
_SAME_STOP_SECONDS = 2.0


class _UtcFormatter(logging.Formatter):
    """Log lines like Core Tools: [2024-05-01T10:00:00.123Z] message."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def configure_logging(level: str = "INFO") -> None:
    """Send the host's and the functions' logs to stderr with UTC timestamps."""
    handler = logging.StreamHandler()
    handler.setFormatter(_UtcFormatter("[%(asctime)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDKs log every HTTP exchange at INFO; polling would drown everything else.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def load_app(reference: str) -> func.FunctionApp:
    """Import `module:attribute` or `path/file.py:attribute`; the attribute defaults to `app`."""
    module_name, _, attribute = reference.partition(":")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise HostConfigError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, func.FunctionApp):
        raise HostConfigError(f"{reference} is not an azure.functions.FunctionApp")
    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.host",
        description="Serve a Python v2 Functions app locally with the Functions host's semantics.",
    )
    parser.add_argument(
        "--app", default="function_app:app", help="module:attribute of the FunctionApp"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--port", type=int, default=None, help="HTTP port (default: Host.LocalHttpPort or 7071)"
    )
    parser.add_argument(
        "--settings", default="local.settings.json", help="local.settings.json path"
    )
    parser.add_argument("--host-json", default="host.json", help="host.json path")
    parser.add_argument("--no-queues", action="store_true", help="do not poll queue triggers")
    parser.add_argument("--no-timers", action="store_true", help="do not fire timer triggers")
    parser.add_argument(
        "--shutdown-grace", type=float, default=30.0, help="seconds to let runs finish"
    )
    parser.add_argument(
        "--queue-lease-seconds",
        type=float,
        default=DEFAULT_LEASE.total_seconds(),
        help="how long a received message stays invisible while it runs (renewed; tests shorten "
        "it so a killed host's message comes back quickly)",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOCALHOST_LOG_LEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the host until SIGINT or SIGTERM; returns the exit code."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    # Like `func start`: settings first (the environment wins), then the app import sees them.
    load_settings(args.settings)
    port = args.port if args.port is not None else local_http_port(args.settings) or 7071
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app = load_app(args.app)
        host = LocalHost(
            app,
            load_host_json(args.host_json),
            host=args.host,
            port=port,
            queues=not args.no_queues,
            timers=not args.no_timers,
            shutdown_grace=args.shutdown_grace,
            message_lease=timedelta(seconds=args.queue_lease_seconds),
        )
    except HostConfigError as error:
        log.error("The host cannot start: %s", error)
        return 2

    stopping = threading.Event()
    first_signal_at = 0.0

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal first_signal_at
        if stopping.is_set():
            # A group signal reaches us and our parent, which passes its own on: repeats within
            # a moment are that same stop. A Ctrl-C pressed again later means "now".
            late = time.monotonic() - first_signal_at > _SAME_STOP_SECONDS
            if signum == signal.SIGINT and late:
                log.warning("Second Ctrl-C: exiting without waiting")
                os._exit(1)
            log.info("%s received: already stopping", signal.Signals(signum).name)
            return
        log.info("%s received: stopping", signal.Signals(signum).name)
        first_signal_at = time.monotonic()
        stopping.set()

    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, request_stop)
    try:
        host.start()
    except (HostConfigError, OSError, RuntimeError) as error:
        log.error("The host cannot start: %s", error)
        host.stop()
        return 2
    # Event.wait with a timeout keeps the main thread responsive to signals.
    while not stopping.wait(1.0):
        pass
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
