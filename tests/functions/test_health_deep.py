"""The deep health report (poison queues, stuck records): `GET /api/health?deep=1` for
distributor admins, `GET /api/health/deep` for whoever holds a function key."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from functions._openapi import build_openapi
from shared import bootstrap
from tests.customer_bodies import new_customer_body
from tests.fakes import install_customers
from tests.functions.helpers import call, json_of
from tests.functions.world import World, build_world
from tests.order_fakes import install_orders


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    install_customers(w.container)
    install_orders(w.container)
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def health(world: World, role: str | None = None, deep: bool = True):  # type: ignore[no-untyped-def]
    return call(
        "http_health",
        "GET",
        "health",
        token=world.token(role) if role else None,
        params={"deep": "1"} if deep else {},
    )


def stuck_customer_and_poison(world: World) -> None:
    world.container.queues.poison = {"provision-customer-poison": 2, "notifications-poison": 0}
    call(
        "http_create_customer",
        "POST",
        "resellers/demo/customers",
        route={"r": "demo"},
        token=world.token("Sales"),
        body=new_customer_body("stuckfirm"),
    )
    world.clock.advance(minutes=31)


def test_plain_health_stays_public_and_says_nothing_about_operations(world):
    resp = health(world, deep=False)
    assert resp.status_code == 200 and json_of(resp).get("operations") is None


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("AccountManager", 403)])
def test_deep_health_is_refused_to_anyone_but_distributor_admins(world, role, status):
    resp = health(world, role)
    assert resp.status_code == status and resp.mimetype == "application/problem+json"


def test_deep_health_reports_poison_queues_and_stuck_provisioning_and_logs_poison(world, caplog):
    stuck_customer_and_poison(world)
    caplog.set_level(logging.ERROR)
    resp = health(world, "DistributorAdmin")
    assert resp.status_code == 200, resp.get_body()
    ops = json_of(resp)["operations"]
    assert ops["poisonQueues"]["provision-customer-poison"] == 2
    assert ops["inFlight"] == {"customer": 1, "order": 0, "subscription-change": 0, "sync-run": 0}
    assert ops["stale"] == {"customer": 1, "order": 0, "subscription-change": 0, "sync-run": 0}
    assert "provision-customer-poison" in caplog.text


def test_deep_health_with_a_function_key_needs_no_sign_in_and_reports_what_admins_see(world):
    stuck_customer_and_poison(world)
    # The host has checked the key before the trigger runs: the app asks for no token.
    keyed = call("http_health_deep", "GET", "health/deep")
    assert keyed.status_code == 200, keyed.get_body()
    assert keyed.headers["Cache-Control"] == "no-store"
    admin = json_of(health(world, "DistributorAdmin"))
    assert json_of(keyed)["operations"] == admin["operations"]
    stale = json_of(keyed)["operations"]["stale"]
    assert stale == {"customer": 1, "order": 0, "subscription-change": 0, "sync-run": 0}


def test_openapi_says_the_keyed_deep_health_takes_an_x_functions_key():
    doc = build_openapi()
    op = doc["paths"]["/api/health/deep"]["get"]
    assert op["security"] == [{"functionKey": []}]
    assert doc["components"]["securitySchemes"]["functionKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "A function key of the Function App (checked in Azure only).",
    }
    # The host, not the app, answers a missing key: no problem+json body is promised.
    assert "content" not in op["responses"]["401"]
    assert "security" not in doc["paths"]["/api/health"]["get"]


def test_deep_health_that_cannot_read_the_operations_says_failing_not_500(world):
    def unreadable() -> dict[str, int]:
        raise PermissionError("the identity may not read this queue")

    world.container.queues.poison_depths = unreadable  # type: ignore[method-assign]
    resp = health(world, "DistributorAdmin")
    assert resp.status_code == 503, resp.get_body()
    body = json_of(resp)
    assert body["status"] == "failing" and body["checks"]["operations"]["status"] == "failing"
    assert body["operations"] is None
