"""The function index (from app.get_functions()) and the one place that invokes and logs."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from localdev.funchost.config import HostConfigError

log = logging.getLogger("localdev.host")

HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER)
HOST_API_REASON = "This function was programmatically called via the host APIs."

# Sends the values a function left in a queue output binding: (binding JSON, values).
OutputSender = Callable[[Mapping[str, Any], list[str | bytes]], None]


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: its trigger JSON, bindings and the user's callable."""

    name: str
    trigger: Mapping[str, Any]
    bindings: tuple[Mapping[str, Any], ...]
    user_function: Callable[..., Any]
    is_async: bool
    wants_context: bool
    script_file: str

    @property
    def trigger_type(self) -> str:
        """The trigger binding's type, e.g. httpTrigger."""
        return str(self.trigger["type"])

    @property
    def trigger_name(self) -> str:
        """The parameter name the trigger value is passed as."""
        return str(self.trigger["name"])

    @property
    def output_bindings(self) -> tuple[Mapping[str, Any], ...]:
        """Output bindings passed as func.Out parameters (not $return)."""
        return tuple(
            b
            for b in self.bindings
            if str(b.get("direction", "")).upper() == "OUT" and b.get("name") != "$return"
        )

    @property
    def return_binding(self) -> Mapping[str, Any] | None:
        """The $return output binding, if any."""
        return next((b for b in self.bindings if b.get("name") == "$return"), None)

    @property
    def input_bindings(self) -> tuple[Mapping[str, Any], ...]:
        """Input bindings other than the trigger (none are supported locally)."""
        return tuple(
            b
            for b in self.bindings
            if str(b.get("direction", "")).upper() == "IN" and b is not self.trigger
        )


def index_functions(app: func.FunctionApp) -> list[FunctionSpec]:
    """Read every function from the app the way the worker indexes it (app.get_functions())."""
    specs: list[FunctionSpec] = []
    # get_functions() remembers the names it indexed and refuses a second call (the worker calls
    # it once); tests may index the same app again, so index from a clean slate, leave no trace.
    indexed_before = getattr(app, "functions_bindings", None)
    app.functions_bindings = {}
    try:
        functions = app.get_functions()
    finally:
        app.functions_bindings = indexed_before
    for function in functions:
        description = json.loads(function.get_function_json())
        bindings = tuple(description.get("bindings", []))
        trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
        if trigger is None:
            raise HostConfigError(f"function {function.get_function_name()} has no trigger")
        user_function = function.get_user_function()
        parameters = inspect.signature(user_function).parameters
        specs.append(
            FunctionSpec(
                name=str(function.get_function_name()),
                trigger=trigger,
                bindings=bindings,
                user_function=user_function,
                is_async=inspect.iscoroutinefunction(user_function),
                wants_context="context" in parameters,
                script_file=str(description.get("scriptFile", "function_app.py")),
            )
        )
    names = [s.name.lower() for s in specs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise HostConfigError(f"function names must be unique: {sorted(duplicates)}")
    return specs


class InvocationContext(func.Context):
    """The `context` parameter a function may declare."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        """This invocation's id (also in the host's log lines)."""
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        """Thread-local storage, as the worker offers it."""
        return self._local

    @property
    def function_name(self) -> str:
        """The function's name."""
        return self._function_name

    @property
    def function_directory(self) -> str:
        """The directory of the function's script."""
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        """Distributed tracing is not propagated locally."""
        return None

    @property
    def retry_context(self) -> Any:
        """Retry policies are not applied locally."""
        return None


class OutValue(func.Out[Any]):
    """A func.Out that keeps what the function set."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        """Remember the value to send when the function succeeds."""
        self._value = val

    def get(self) -> Any:
        """The value set so far."""
        return self._value


@dataclass
class Outcome:
    """What one invocation did."""

    invocation_id: str
    succeeded: bool
    value: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0
    outputs: dict[str, OutValue] = field(default_factory=dict)


def queue_output_values(value: Any) -> list[str | bytes]:
    """Flatten what a function gave a queue output binding into message bodies."""
    if value is None:
        return []
    if isinstance(value, str | bytes):
        return [value]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, Iterable):
        return [v for item in value for v in queue_output_values(item)]
    raise TypeError(f"cannot send {type(value).__name__} to a queue output binding")


def encode_message(body: str | bytes, encoding: str) -> str:
    """The text a queue message carries under host.json messageEncoding."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8")


class Invoker:
    """Calls user functions with the host's logging and output-binding rules."""

    def __init__(
        self, send_output: OutputSender | None = None, *, worker_threads: int | None = None
    ) -> None:
        self._send_output = send_output
        # The Python worker runs sync functions on a pool of PYTHON_THREADPOOL_THREAD_COUNT
        # threads: however many messages the host hands over (batchSize + newBatchThreshold per
        # queue), at most that many queue and timer functions run at once; the rest wait.
        self._slots = threading.BoundedSemaphore(worker_threads) if worker_threads else None

    def _prepare(
        self, spec: FunctionSpec, trigger_value: Any, invocation_id: str
    ) -> tuple[dict[str, Any], dict[str, OutValue]]:
        kwargs: dict[str, Any] = {spec.trigger_name: trigger_value}
        outputs = {str(b["name"]): OutValue() for b in spec.output_bindings}
        kwargs.update(outputs)
        for binding in spec.input_bindings:
            kwargs[str(binding["name"])] = None
        if spec.wants_context:
            directory = str(Path(spec.script_file).parent)
            kwargs["context"] = InvocationContext(invocation_id, spec.name, directory)
        return kwargs, outputs

    @staticmethod
    def _log_start(spec: FunctionSpec, reason: str, invocation_id: str) -> None:
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)

    def _finish(self, spec: FunctionSpec, outcome: Outcome, started: float) -> Outcome:
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        if outcome.succeeded:
            try:
                self._flush_outputs(spec, outcome)
            except Exception as error:  # a failed output binding fails the invocation, as in Azure
                outcome.succeeded, outcome.error = False, error
        if not outcome.succeeded:
            log.error(
                "Exception while executing function: Functions.%s",
                spec.name,
                exc_info=outcome.error,
            )
        log.info(
            "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
            spec.name,
            "Succeeded" if outcome.succeeded else "Failed",
            outcome.invocation_id,
            round(outcome.duration_ms),
        )
        return outcome

    def _flush_outputs(self, spec: FunctionSpec, outcome: Outcome) -> None:
        # Outputs are sent only after success: the host drops them when the function raises.
        pending: list[tuple[Mapping[str, Any], Any]] = [
            (binding, outcome.outputs[str(binding["name"])].get())
            for binding in spec.output_bindings
        ]
        returned = spec.return_binding
        if returned is not None and returned.get("type") != "http":
            pending.append((returned, outcome.value))
        for binding, value in pending:
            if binding.get("type") == "queue" and self._send_output is not None:
                values = queue_output_values(value)
                if values:
                    self._send_output(binding, values)
            elif value is not None:
                log.warning(
                    "Functions.%s: output binding %s (%s) is not supported locally; value dropped",
                    spec.name,
                    binding.get("name"),
                    binding.get("type"),
                )

    def invoke(self, spec: FunctionSpec, trigger_value: Any, reason: str) -> Outcome:
        """Run a function in this thread (a coroutine function on a fresh event loop)."""
        invocation_id = str(uuid.uuid4())
        kwargs, outputs = self._prepare(spec, trigger_value, invocation_id)
        self._log_start(spec, reason, invocation_id)
        started = time.perf_counter()
        outcome = Outcome(invocation_id, succeeded=True, outputs=outputs)
        try:
            if spec.is_async:
                outcome.value = asyncio.run(spec.user_function(**kwargs))
            elif self._slots is None:
                outcome.value = spec.user_function(**kwargs)
            else:
                with self._slots:
                    outcome.value = spec.user_function(**kwargs)
        except Exception as error:
            outcome.succeeded, outcome.error = False, error
        return self._finish(spec, outcome, started)

    async def invoke_async(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        reason: str,
        run_sync: Callable[[Callable[[], Any]], Any],
    ) -> Outcome:
        """Run a function from the event loop: coroutines awaited here, sync ones via run_sync."""
        invocation_id = str(uuid.uuid4())
        kwargs, outputs = self._prepare(spec, trigger_value, invocation_id)
        self._log_start(spec, reason, invocation_id)
        started = time.perf_counter()
        outcome = Outcome(invocation_id, succeeded=True, outputs=outputs)
        try:
            if spec.is_async:
                outcome.value = await spec.user_function(**kwargs)
            else:
                outcome.value = await run_sync(lambda: spec.user_function(**kwargs))
        except Exception as error:
            outcome.succeeded, outcome.error = False, error
        if outcome.succeeded and (spec.output_bindings or self._has_non_http_return(spec)):
            # Sending outputs does blocking I/O: keep it off the event loop.
            return await run_sync(lambda: self._finish(spec, outcome, started))  # type: ignore[no-any-return]
        return self._finish(spec, outcome, started)

    @staticmethod
    def _has_non_http_return(spec: FunctionSpec) -> bool:
        returned = spec.return_binding
        return returned is not None and returned.get("type") != "http"
