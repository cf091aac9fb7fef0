"""LocalHost: wires the HTTP frontend, queue listeners and timers for one FunctionApp."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import azure.functions as func
import uvicorn
from azure.functions.queue import QueueMessage

from localdev.funchost.config import (
    HostOptions,
    resolve_setting_refs,
    storage_connection_string,
)
from localdev.funchost.http_app import HttpFrontend, build_route_table, describe_routes
from localdev.funchost.invocation import (
    HOST_API_REASON,
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    SUPPORTED_TRIGGERS,
    TIMER_TRIGGER,
    Invoker,
    index_functions,
)
from localdev.funchost.ncrontab import parse_schedule, time_zone
from localdev.funchost.queues import DEFAULT_LEASE, QueueListener, QueueSender
from localdev.funchost.timers import TimerRunner

log = logging.getLogger("localdev.host")

# The largest request line + headers the local host parses (the real host's limits are the web
# server's; this one only needs to be deterministic for every request a test can make).
MAX_REQUEST_HEAD_BYTES = 1024 * 1024


def _thread_pool_size() -> int:
    # The Python worker's own knob and default for sync functions.
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
    return int(configured) if configured else min(32, (os.cpu_count() or 1) + 4)


class LocalHost:
    """Serves a FunctionApp with the Functions host's semantics, in background threads."""

    def __init__(
        self,
        app: func.FunctionApp,
        host_json: Mapping[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 7071,
        queues: bool = True,
        timers: bool = True,
        message_lease: timedelta = DEFAULT_LEASE,
        shutdown_grace: float = 30.0,
    ) -> None:
        self.options = HostOptions.from_host_json(host_json or {})
        self.specs = index_functions(app)
        self._host = host
        self._requested_port = port
        self._queues_enabled = queues
        self._timers_enabled = timers
        self._message_lease = message_lease
        self._grace = shutdown_grace
        self._sender = QueueSender(self.options.queues, self._output_target)
        self._invoker = Invoker(self._sender, worker_threads=_thread_pool_size())
        self._http_pool = ThreadPoolExecutor(_thread_pool_size(), thread_name_prefix="http")
        self._admin_pool = ThreadPoolExecutor(4, thread_name_prefix="admin")
        # Built once here: per-request work is a scan of precompiled patterns.
        self.routes = build_route_table(self.specs, self.options.route_prefix)
        self.listeners: dict[str, QueueListener] = {}
        self.timers: dict[str, TimerRunner] = {}
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port: int = port
        self._warn_unsupported()

    @property
    def base_url(self) -> str:
        """http://host:port of the running host."""
        return f"http://{self._host}:{self.port}"

    def _warn_unsupported(self) -> None:
        for spec in self.specs:
            if spec.trigger_type not in SUPPORTED_TRIGGERS:
                log.warning(
                    "Functions.%s: %s triggers are not run by the local host",
                    spec.name,
                    spec.trigger_type,
                )
            for binding in spec.input_bindings:
                log.warning(
                    "Functions.%s: input binding %s (%s) is not supported locally; it gets None",
                    spec.name,
                    binding.get("name"),
                    binding.get("type"),
                )
        protected = sorted(
            s.name
            for s in self.specs
            if s.trigger_type == HTTP_TRIGGER
            and str(s.trigger.get("authLevel", "")).lower() not in ("anonymous", "")
        )
        if protected:
            log.info(
                "Function keys are not checked locally; in Azure these need a key "
                "(x-functions-key header or ?code=): %s",
                ", ".join(protected),
            )

    def _output_target(self, binding: Mapping[str, Any]) -> tuple[str, str]:
        queue_name = resolve_setting_refs(str(binding["queueName"])).lower()
        return queue_name, storage_connection_string(binding.get("connection"))

    def _build_listeners(self) -> None:
        for spec in self.specs:
            if spec.trigger_type != QUEUE_TRIGGER:
                continue
            # The Storage extension lower-cases queue names before validating them.
            queue_name = resolve_setting_refs(str(spec.trigger["queueName"])).lower()
            connection = storage_connection_string(spec.trigger.get("connection"))
            self.listeners[spec.name] = QueueListener(
                spec,
                queue_name,
                connection,
                self.options.queues,
                self._invoker,
                self._message_lease,
            )

    def _build_timers(self) -> None:
        zone = time_zone(os.environ.get("WEBSITE_TIME_ZONE"))
        for spec in self.specs:
            if spec.trigger_type != TIMER_TRIGGER:
                continue
            schedule = parse_schedule(resolve_setting_refs(str(spec.trigger["schedule"])), zone)
            self.timers[spec.name] = TimerRunner(
                spec, schedule, self._invoker, bool(spec.trigger.get("runOnStartup"))
            )

    def start(self, timeout: float = 30.0) -> LocalHost:
        """Validate every trigger, serve HTTP, then start queues and timers; returns when ready."""
        # Everything that can be wrong in the configuration fails here, before any thread starts.
        if self._queues_enabled:
            self._build_listeners()
        self._build_timers()
        for listener in self.listeners.values():
            listener.prepare()
        self._start_http(timeout)
        for line in describe_routes(self.routes, self.base_url, self.options.route_prefix):
            log.info("%s", line)
        for listener in self.listeners.values():
            listener.start()
            log.info(
                "Functions.%s: listening on queue '%s'", listener.spec.name, listener.queue_name
            )
        if self._timers_enabled:
            for runner in self.timers.values():
                runner.start()
                log.info("Functions.%s: timer started", runner.spec.name)
        log.info("Host started: %s", self.base_url)
        return self

    def _start_http(self, timeout: float) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this; without it Nagle plus delayed ACKs add ~40 ms per
        # response, because the response start and body go out as separate writes.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self._host, self._requested_port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        frontend = HttpFrontend(self.routes, self._invoker, self._http_pool, self.invoke_admin)
        config = uvicorn.Config(
            frontend,
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=max(1, int(self._grace)),
            # h11 refuses a request line or headers past this size with its own text/plain 400,
            # and only when they arrive in more than one read: below it, a long URL always
            # reaches the app, which answers with a problem naming the parameter.
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
            http="h11",  # (uvicorn would pick httptools, installed for the simulator, instead)
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._server_thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="http-server", daemon=True
        )
        self._server_thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server did not start on {self.base_url}")
            time.sleep(0.02)

    def invoke_admin(self, name: str, text: str | None) -> str | None:
        """Run a queue or timer function once in the background; None if accepted, else why not."""
        spec = next((s for s in self.specs if s.name.lower() == name.lower()), None)
        if spec is None:
            return "not found"
        if spec.trigger_type == QUEUE_TRIGGER:
            body = (text or "").encode()
            message = QueueMessage(  # type: ignore[no-untyped-call]
                id=str(uuid.uuid4()), body=body, dequeue_count=1
            )
            self._in_background(self._invoker.invoke, spec, message, HOST_API_REASON)
            return None
        if spec.name in self.timers:
            self._in_background(self.timers[spec.name].invoke_once)
            return None
        return f"{spec.trigger_type} functions cannot be run through the admin endpoint"

    def _in_background(self, call: Callable[..., Any], *args: Any) -> None:
        def run() -> None:
            try:
                call(*args)
            except Exception:
                log.exception("Admin invocation failed")

        self._admin_pool.submit(run)

    def stop(self) -> bool:
        """Stop polling and timers, let running runs finish (bounded), stop HTTP; True if clean."""
        clean = True
        deadline = time.monotonic() + self._grace
        for listener in self.listeners.values():
            clean &= listener.stop(max(0.0, deadline - time.monotonic()))
        for runner in self.timers.values():
            clean &= runner.stop(max(0.0, deadline - time.monotonic()))
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(max(1.0, deadline - time.monotonic()))
            if self._server_thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._server_thread.join(5)
        self._sender.close()
        self._admin_pool.shutdown(wait=False, cancel_futures=True)
        self._http_pool.shutdown(wait=False, cancel_futures=True)
        if self._socket is not None:
            self._socket.close()
        log.info("Host stopped%s", "" if clean else " (some invocations were still running)")
        return clean

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
