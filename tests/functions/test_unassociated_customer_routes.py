"""A customer Partner Center no longer lists as the reseller's (flagged by the sync): no order
or subscription change is taken for it, and staff see since when; a subscription's note (why
it has no price, why the sync ended it) is shown to staff only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import bootstrap
from shared.domain.customers import Qualification
from tests.catalog_fakes import install_catalog
from tests.functions.helpers import call, json_of
from tests.functions.test_subscription_routes import get, patch
from tests.functions.world import CUST_A, CUST_B, World, add_customers, build_world
from tests.order_fakes import install_orders, offer_line
from tests.subscription_fakes import product_id, seed_subscription

SINCE = datetime(2026, 3, 14, 1, 0, tzinfo=UTC)


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    install_catalog(w.container, w.clock, {("demo", CUST_A): "commercial", ("demo", CUST_B): ""})
    add_customers(w)
    install_orders(w.container)
    for cid in (CUST_A, CUST_B):
        customer = w.container.customers.get("demo", cid)
        customer.tenant_id, customer.qualification = str(uuid.uuid4()), Qualification.APPROVED
        w.container.customers.update(customer)
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def _unassociate(world: World, customer_id: str = CUST_A) -> None:
    customer = world.container.customers.get("demo", customer_id)
    customer.unassociated_since = SINCE
    world.container.customers.update(customer)


def _order(world: World, role: str = "AccountManager") -> Any:
    c = world.container
    r = c.resellers.get("reseller", "demo")
    market = c.catalog_reader.market_products(r.country, c.catalog_reader.import_id(r.country))
    line = offer_line(None, c.customers.get("demo", CUST_A), market[product_id(c)], quantity=2)
    return call(
        "http_create_order",
        "POST",
        f"resellers/demo/customers/{CUST_A}/orders",
        route={"r": "demo", "c": CUST_A},
        token=world.token(role),
        body={"lines": [line]},
    )


def _customer(world: World, role: str) -> dict[str, Any]:
    resp = call(
        "http_get_customer",
        "GET",
        f"resellers/demo/customers/{CUST_A}",
        route={"r": "demo", "c": CUST_A},
        token=world.token(role),
    )
    assert resp.status_code == 200, resp.get_body()
    body: dict[str, Any] = json_of(resp)
    return body


def _refused_as_unassociated(resp: Any) -> None:
    assert resp.status_code == 409, resp.get_body()
    problem = json_of(resp)
    assert problem["type"] == "/problems/customer-unassociated"
    assert "no longer lists the tenant as this reseller's" in problem["detail"]
    assert "2026-03-14" in problem["detail"]


def test_an_order_for_a_customer_partner_center_no_longer_lists_is_refused(world: World):
    draft = _order(world)
    assert draft.status_code == 201  # while associated
    _unassociate(world)
    _refused_as_unassociated(_order(world))
    order = json_of(draft)
    submitted = call(
        "http_submit_order",
        "POST",
        f"resellers/demo/customers/{CUST_A}/orders/{order['id']}/submit",
        route={"r": "demo", "c": CUST_A, "o": order["id"]},
        token=world.token("AccountManager"),
        headers={"If-Match": draft.headers["ETag"]},
    )
    _refused_as_unassociated(submitted)  # a draft made before is not placed either


def test_subscription_changes_of_an_unassociated_customer_are_refused_even_price_neutral_ones(
    world: World,
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    _unassociate(world)
    _refused_as_unassociated(patch(world, sub, {"quantity": 12}))
    _refused_as_unassociated(patch(world, sub, {"autoRenew": False}))
    _refused_as_unassociated(patch(world, sub, {"status": "Cancelled"}))
    record = world.container.subscriptions.get(CUST_A, sub.id.lower())
    assert record.pending_change is None


def test_staff_see_since_when_a_customer_is_unassociated_and_its_users_do_not(world: World):
    assert _customer(world, "AccountManager")["unassociatedSince"] is None
    _unassociate(world)
    assert _customer(world, "AccountManager")["unassociatedSince"] == "2026-03-14T01:00:00Z"
    assert "unassociatedSince" not in _customer(world, "CustomerAdmin")


def test_a_subscriptions_note_is_shown_to_staff_only(world: World):
    sub = seed_subscription(world.container, "demo", CUST_A)
    record = world.container.subscriptions.get(CUST_A, sub.id.lower())
    record.note = "No price: the offer X is not in the catalog"
    world.container.subscriptions.update(record)
    assert json_of(get(world, sub))["note"] == record.note
    assert "note" not in json_of(get(world, sub, "CustomerAdmin"))
