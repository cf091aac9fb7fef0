"""Calling the app's real HTTP triggers with a fake container behind them."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from tests.app_index import functions


def trigger(name: str) -> Any:
    """The HTTP trigger function `name` as the host calls it."""
    for f in functions():
        if f.get_function_name() == name:
            return f.get_user_function()
    raise KeyError(name)


def call(
    name: str,
    method: str,
    path: str,
    *,
    route: dict[str, str] | None = None,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> func.HttpResponse:
    """Call trigger `name` with a request (JSON body, bearer token) and return its response."""
    all_headers = {**(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    raw = b"" if body is None else json.dumps(body).encode()
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    req = func.HttpRequest(
        method,
        f"http://127.0.0.1:7071/api/{path}",
        headers=all_headers,
        params=params or {},
        route_params=route or {},
        body=raw,
    )
    resp: func.HttpResponse = trigger(name)(req)
    return resp


def json_of(resp: func.HttpResponse) -> Any:
    """The response body as JSON."""
    return json.loads(resp.get_body())
