"""GET /api/health?deep=1: poison queues and stuck records, for distributor admins only."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared import bootstrap
from tests.customer_bodies import new_customer_body
from tests.fakes import install_customers
from tests.functions.helpers import call, json_of
from tests.functions.world import World, build_world


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    install_customers(w.container)
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


def test_plain_health_stays_public_and_says_nothing_about_operations(world):
    resp = health(world, deep=False)
    assert resp.status_code == 200 and json_of(resp).get("operations") is None


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("AccountManager", 403)])
def test_deep_health_is_refused_to_anyone_but_distributor_admins(world, role, status):
    resp = health(world, role)
    assert resp.status_code == status and resp.mimetype == "application/problem+json"


def test_deep_health_reports_poison_queues_and_stuck_provisioning_and_logs_poison(world, caplog):
    c = world.container
    c.queues.poison = {"provision-customer-poison": 2, "notifications-poison": 0}
    call(
        "http_create_customer",
        "POST",
        "resellers/demo/customers",
        route={"r": "demo"},
        token=world.token("Sales"),
        body=new_customer_body("stuckfirm"),
    )
    world.clock.advance(minutes=31)
    caplog.set_level(logging.ERROR)
    resp = health(world, "DistributorAdmin")
    assert resp.status_code == 200, resp.get_body()
    ops = json_of(resp)["operations"]
    assert ops["poisonQueues"]["provision-customer-poison"] == 2
    assert ops["inFlight"] == {"customer": 1} and ops["stale"] == {"customer": 1}
    assert "provision-customer-poison" in caplog.text
