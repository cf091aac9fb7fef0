"""Health and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions._http import Call, Reply, http
from functions._openapi import build_openapi
from shared.bootstrap import container
from shared.services.access import PUBLIC
from shared.services.health import Health, check_health

bp = func.Blueprint()
_openapi: dict[str, Any] | None = None


@http(
    bp,
    "health",
    ["GET"],
    name="http_health",
    summary="Is the app up and its storage reachable.",
    response=Health,
    tags=("meta",),
    errors=(503,),
    access=PUBLIC,
)
def health(call: Call) -> Reply:
    """Health: 200 when storage answers, 503 otherwise."""
    c = container()
    report = check_health({"tableStorage": c.store.ping, "queueStorage": c.queues.ping})
    return Reply(
        report, status=200 if report.status == "ok" else 503, headers={"Cache-Control": "no-store"}
    )


@http(
    bp,
    "openapi.json",
    ["GET"],
    name="http_openapi",
    summary="The OpenAPI 3.1 document.",
    tags=("meta",),
    access=PUBLIC,
)
def openapi(call: Call) -> dict[str, Any]:
    """The OpenAPI document (built once per process)."""
    global _openapi
    if _openapi is None:
        _openapi = build_openapi()
    return _openapi
