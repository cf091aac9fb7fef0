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
from shared.services.access import FUNCTION_KEY, PUBLIC, Action, allow
from shared.services.health import Health, check_health

bp = func.Blueprint()
_openapi: dict[str, Any] | None = None


class HealthQuery(WireModel):
    """`deep=1`: also poison queues and stuck records (distributor admins only)."""

    deep: bool = Field(False, description="Add poison-queue depths and records stuck in flight.")


def _health(deep: bool) -> Reply:
    """The health report (deep: with poison queues and stuck records); 503 when failing."""
    c = container()
    report = check_health(
        {"tableStorage": c.store.ping, "queueStorage": c.queues.ping},
        operations=(lambda: housekeeping.operations(c.housekeeping)) if deep else None,
    )
    return Reply(
        report, status=200 if report.status == "ok" else 503, headers={"Cache-Control": "no-store"}
    )


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
    deep = call.query(HealthQuery).deep
    if deep:
        # What is stuck where is for the distributor's operators, not for anyone.
        authorize(call.req, allow(Action.READ_OPERATIONS))
    return _health(deep)


@http(
    bp,
    "health/deep",
    ["GET"],
    name="http_health_deep",
    summary="The deep health report for monitors and operators holding a function key.",
    response=Health,
    tags=("meta",),
    errors=(503,),
    access=FUNCTION_KEY,
)
def health_deep(call: Call) -> Reply:
    """The same report as `health?deep=1`; the host has checked the function key."""
    return _health(deep=True)


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
