"""Health and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import azure.functions as func
from pydantic import Field

from functions._http import Call, Reply, authorize, http
from functions._openapi import build_openapi
from shared.bootstrap import container
from shared.domain.model import WireModel
from shared.services import housekeeping
from shared.services.access import PUBLIC, Action, allow
from shared.services.health import Health, check_health

bp = func.Blueprint()
_openapi: dict[str, Any] | None = None


class HealthQuery(WireModel):
    """`deep=1`: also poison queues and stuck records (distributor admins only)."""

    deep: bool = Field(False, description="Add poison-queue depths and records stuck in flight.")


@http(
    bp,
    "health",
    ["GET"],
    name="http_health",
    summary="Is the app up and its storage reachable (deep=1: poison queues, stuck records).",
    query=HealthQuery,
    response=Health,
    tags=("meta",),
    errors=(400, 401, 403, 503),
    access=PUBLIC,
)
def health(call: Call) -> Reply:
    """Health: 200 when storage answers, 503 otherwise."""
    c = container()
    deep = call.query(HealthQuery).deep
    if deep:
        # What is stuck where is for the distributor's operators, not for anyone.
        authorize(call.req, allow(Action.READ_OPERATIONS))
    report = check_health({"tableStorage": c.store.ping, "queueStorage": c.queues.ping})
    if deep:
        report.operations = housekeeping.operations(c.housekeeping)
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
