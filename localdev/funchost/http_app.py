"""The HTTP side of the host: an ASGI app that routes to httpTrigger functions and the admin API."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import Executor
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from localdev.funchost.invocation import HOST_API_REASON, HTTP_TRIGGER, FunctionSpec, Invoker
from localdev.funchost.routes import RouteTable, compile_route

log = logging.getLogger("localdev.host")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# (name, input) -> whether a non-HTTP function of that name exists and was queued to run.
AdminInvoke = Callable[[str, str | None], str | None]

_ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")


def build_route_table(specs: Iterable[FunctionSpec], route_prefix: str) -> RouteTable[FunctionSpec]:
    """Compile every httpTrigger's route (default: the function name) under the route prefix."""
    routes = []
    for spec in specs:
        if spec.trigger_type != HTTP_TRIGGER:
            continue
        template = str(spec.trigger.get("route") or spec.name)
        methods = spec.trigger.get("methods") or None
        routes.append(compile_route(template, spec, methods, route_prefix))
    return RouteTable(routes)


def describe_routes(table: RouteTable[FunctionSpec], base_url: str, route_prefix: str) -> list[str]:
    """Lines like `func start` prints: name: [GET,POST] http://127.0.0.1:7071/api/route."""
    lines = []
    for route in sorted(table.routes, key=lambda r: r.target.name.lower()):
        methods = ",".join(sorted(route.methods or _ALL_METHODS))
        path = "/".join(p for p in (route_prefix, route.template.strip("/")) if p)
        lines.append(f"{route.target.name}: [{methods}] {base_url}/{path}")
    return lines


def _header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in raw:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def _query_map(query: bytes) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        # ASP.NET's StringValues join repeated keys with commas.
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def _render(value: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The worker's rules for an HTTP function's return value."""
    if value is None:
        return 204, [], b""
    if isinstance(value, str):
        return 200, [(b"content-type", b"text/plain; charset=utf-8")], value.encode("utf-8")
    if isinstance(value, func.HttpResponse):
        headers = [
            (k.lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in value.headers.items()
        ]
        if not any(k == b"content-type" for k, _ in headers):
            mimetype = value.mimetype
            content_type = (
                f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
            )
            headers.append((b"content-type", content_type.encode("latin-1")))
        return int(value.status_code), headers, value.get_body() or b""
    raise TypeError(f"an HTTP function returned {type(value).__name__}, not HttpResponse or str")


class HttpFrontend:
    """ASGI app: function routes under the prefix, plus the /admin endpoints of Core Tools."""

    def __init__(
        self,
        table: RouteTable[FunctionSpec],
        invoker: Invoker,
        executor: Executor,
        admin_invoke: AdminInvoke,
    ) -> None:
        self._table = table
        self._invoker = invoker
        self._executor = executor
        self._admin_invoke = admin_invoke

    async def _run_sync(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.lower().startswith("/admin/"):
            await self._admin(scope, receive, send, method, path)
            return
        match = self._table.match(method, path)
        if match.route is None:
            extra = [(b"allow", ", ".join(sorted(match.allowed)).encode())] if match.allowed else []
            await _respond(send, match.status, extra, b"")
            return
        body = await _read_body(receive)
        request_headers = _header_map(scope["headers"])
        host = request_headers.get("host") or "{}:{}".format(*scope["server"])
        query: bytes = scope.get("query_string", b"")
        raw_path = scope.get("raw_path") or path.encode()
        url = f"{scope.get('scheme', 'http')}://{host}{raw_path.decode('latin-1')}"
        if query:
            url += "?" + query.decode("latin-1")
        request = func.HttpRequest(
            method,
            url,
            headers=request_headers,
            params=_query_map(query),
            route_params=match.values,
            body=body,
        )
        outcome = await self._invoker.invoke_async(
            match.route.target, request, HOST_API_REASON, self._run_sync
        )
        if not outcome.succeeded:
            # Like the host: a bare 500, the details only in the log.
            await _respond(send, 500, [], b"")
            return
        try:
            status, headers, payload = _render(outcome.value)
        except Exception:
            log.exception("Functions.%s: bad HTTP response", match.route.target.name)
            await _respond(send, 500, [], b"")
            return
        await _respond(send, status, headers, b"" if method == "HEAD" else payload)

    async def _admin(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        parts = [p for p in path.split("/") if p]
        if parts[1:] == ["host", "status"] and method == "GET":
            body = json.dumps({"state": "Running", "version": "localdev"}).encode()
            await _respond(send, 200, [(b"content-type", b"application/json")], body)
            return
        if len(parts) == 3 and parts[1].lower() == "functions" and method == "POST":
            raw = await _read_body(receive)
            try:
                payload = json.loads(raw or b"{}")
                text = payload.get("input") if isinstance(payload, dict) else None
            except ValueError:
                await _respond(send, 400, [], b"")
                return
            error = await self._run_sync(lambda: self._admin_invoke(parts[2], text))
            if error is None:
                await _respond(send, 202, [], b"")
            else:
                status = 404 if error == "not found" else 400
                await _respond(send, status, [(b"content-type", b"text/plain")], error.encode())
            return
        await _respond(send, 404, [], b"")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [h for h in headers if h[0] != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
