"""The HTTP frontend and the invoker, in process: the worker's request and response rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
import pytest

from localdev.funchost.http_app import HttpFrontend, build_route_table
from localdev.funchost.invocation import FunctionSpec, Invoker, index_functions

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="text")
def http_text(req: func.HttpRequest) -> str:
    return "plain"


@app.route(route="json")
def http_json(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse('{"a":1}', mimetype="application/json", status_code=201)


@app.route(route="html")
def http_html(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("<p>", mimetype="text/html", charset="iso-8859-2")


@app.route(route="explicit")
def http_explicit(req: func.HttpRequest) -> func.HttpResponse:
    response = func.HttpResponse(b"\x00\x01", headers={"Content-Type": "application/x-thing"})
    response.headers.add("Set-Cookie", "a=1")
    response.headers.add("Set-Cookie", "b=2")
    return response


@app.route(route="dict")
def http_dict(req: func.HttpRequest) -> Any:
    return {"not": "allowed"}


@app.route(route="ctx/{name}", methods=["POST"])
def http_context(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    body = {
        "function": context.function_name,
        "invocation": context.invocation_id,
        "name": req.route_params["name"],
        "json": req.get_json(),
        "params": dict(req.params),
        "header": req.headers.get("X-Multi"),
        "method": req.method,
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@app.queue_trigger(arg_name="msg", queue_name="in", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
def queue_forward(msg: func.QueueMessage, out: func.Out[str]) -> None:
    out.set(msg.get_body().decode())
    if msg.get_body() == b"fail":
        raise RuntimeError("outputs must be dropped")


@app.queue_trigger(arg_name="msg", queue_name="in2", connection="AzureWebJobsStorage")
async def queue_async(msg: func.QueueMessage) -> None:
    await asyncio.sleep(0)
    if msg.get_body() == b"fail":
        raise RuntimeError("async failure")


SPECS = index_functions(app)
SENT: list[tuple[str, list[str | bytes]]] = []


def _send(binding: Mapping[str, Any], values: list[str | bytes]) -> None:
    SENT.append((str(binding["queueName"]), values))


INVOKER = Invoker(_send)
ADMIN_CALLS: list[tuple[str, str | None]] = []


def _admin(name: str, text: str | None) -> str | None:
    ADMIN_CALLS.append((name, text))
    return None if name == "queue_forward" else "not found"


FRONTEND = HttpFrontend(build_route_table(SPECS, "api"), INVOKER, ThreadPoolExecutor(2), _admin)


def call(
    method: str,
    path: str,
    body: bytes = b"",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[str, list[str]], bytes]:
    """One request through the ASGI app; returns status, headers (all values) and body."""
    messages: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "server": ("testserver", 80),
        "scheme": "http",
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(FRONTEND(scope, receive, send))
    start, payload = messages
    found: dict[str, list[str]] = {}
    for key, value in start["headers"]:
        found.setdefault(key.decode(), []).append(value.decode())
    return start["status"], found, payload["body"]


def spec(name: str) -> FunctionSpec:
    return next(s for s in SPECS if s.name == name)


def test_a_returned_string_is_200_text_plain_utf8() -> None:
    status, headers, body = call("GET", "/api/text")
    assert (status, body) == (200, b"plain")
    assert headers["content-type"] == ["text/plain; charset=utf-8"]


def test_mimetype_becomes_content_type_with_charset_only_for_text() -> None:
    status, headers, body = call("GET", "/api/json")
    assert (status, headers["content-type"], body) == (201, ["application/json"], b'{"a":1}')
    assert call("GET", "/api/html")[1]["content-type"] == ["text/html; charset=iso-8859-2"]


def test_explicit_headers_win_and_repeated_headers_survive() -> None:
    _, headers, body = call("GET", "/api/explicit")
    assert headers["content-type"] == ["application/x-thing"]
    assert headers["set-cookie"] == ["a=1", "b=2"]
    assert headers["content-length"] == ["2"]
    assert body == b"\x00\x01"


def test_an_unsupported_return_type_is_a_500() -> None:
    assert call("GET", "/api/dict")[0] == 500


def test_request_carries_route_query_headers_body_and_context() -> None:
    status, _, body = call(
        "POST",
        "/api/ctx/alice",
        body=b'{"x": 1}',
        query=b"a=1&a=2&b=",
        headers=[(b"x-multi", b"one"), (b"X-Multi", b"two")],
    )
    assert status == 200
    data = json.loads(body)
    assert data["function"] == "http_context"
    assert data["invocation"]
    assert data["name"] == "alice"
    assert data["json"] == {"x": 1}
    assert data["params"] == {"a": "1,2", "b": ""}
    assert data["header"] == "one, two"
    assert data["method"] == "POST"


def test_admin_status_and_admin_invoke() -> None:
    status, _, body = call("GET", "/admin/host/status")
    assert (status, json.loads(body)["state"]) == (200, "Running")
    assert call("POST", "/admin/functions/queue_forward", body=b'{"input": "hi"}')[0] == 202
    assert ADMIN_CALLS[-1] == ("queue_forward", "hi")
    assert call("POST", "/admin/functions/nothing", body=b"{}")[0] == 404
    assert call("POST", "/admin/functions/queue_forward", body=b"not json")[0] == 400


def test_index_reads_triggers_and_bindings_from_the_app() -> None:
    forward = spec("queue_forward")
    assert forward.trigger_type == "queueTrigger"
    assert forward.trigger_name == "msg"
    assert [b["name"] for b in forward.output_bindings] == ["out"]
    assert spec("http_text").return_binding is not None
    assert spec("queue_async").is_async
    assert spec("http_context").wants_context


def test_queue_output_is_sent_on_success_and_dropped_on_failure() -> None:
    SENT.clear()
    message = func.QueueMessage(body=b"hello")
    assert INVOKER.invoke(spec("queue_forward"), message, "test").succeeded
    assert SENT == [("%OUT_QUEUE%", ["hello"])]
    SENT.clear()
    outcome = INVOKER.invoke(spec("queue_forward"), func.QueueMessage(body=b"fail"), "test")
    assert not outcome.succeeded
    assert isinstance(outcome.error, RuntimeError)
    assert SENT == []


@pytest.mark.parametrize(("body", "ok"), [(b"fine", True), (b"fail", False)])
def test_async_functions_run_outside_the_event_loop_too(body: bytes, ok: bool) -> None:
    outcome = INVOKER.invoke(spec("queue_async"), func.QueueMessage(body=body), "test")
    assert outcome.succeeded is ok
