"""Concurrent changes of one subscription through the HTTP trigger, records in Azurite: the
subscription's ETag picks one winner; the others get 412 and nothing else is written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions._http import encode_etag
from shared import bootstrap
from shared.bootstrap import Container
from shared.domain.customers import Qualification
from shared.domain.orders import Order, OrderKind, order_row_key
from shared.domain.subscriptions import Subscription
from shared.services.orders import OrderBook, OrderPolicy
from tests.catalog_fakes import install_catalog
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, CUST_B, CUST_OTHER, World, add_customers, build_world
from tests.order_fakes import FakeScheduler, install_orders
from tests.subscription_fakes import seed_subscription

pytestmark = pytest.mark.integration

CONCURRENT = 50


@pytest.fixture
def world(container: Container) -> Iterator[World]:
    """The trigger test world, with orders and subscriptions in Azurite tables of this test."""
    w = build_world()
    install_catalog(
        w.container,
        w.clock,
        {("demo", CUST_A): "commercial", ("demo", CUST_B): "commercial", ("other", CUST_OTHER): ""},
    )
    add_customers(w)
    install_orders(w.container)
    c = w.container
    for reseller, cid in (("demo", CUST_A),):
        customer = c.customers.get(reseller, cid)
        customer.tenant_id, customer.qualification = str(uuid.uuid4()), Qualification.APPROVED
        c.customers.update(customer)
    orders = container.table_repository(
        "Orders", Order, lambda o: (o.reseller, order_row_key(o.id)), outbox=True
    )
    subs = container.table_repository(
        "Subscriptions", Subscription, lambda s: (s.customer_id, s.id.lower())
    )
    book = OrderBook(
        orders=orders,
        subscriptions=subs,
        customers=c.customers,
        resellers=c.resellers,
        catalog=c.catalog_reader,
        clock=c.clock,
        scheduler=FakeScheduler(),
        policy=OrderPolicy(),
    )
    c.__dict__.update(orders=orders, subscriptions=subs, order_book=book)
    bootstrap.use(c)
    yield w
    bootstrap.use(None)


def test_fifty_concurrent_patches_of_one_subscription_make_one_change_order_and_49_412s(
    world: World,
):
    c = world.container
    sub = seed_subscription(c, "demo", CUST_A)
    etag = encode_etag(c.subscriptions.get(CUST_A, sub.id.lower()).etag)
    token = world.token("AccountManager")
    route = {"r": "demo", "c": CUST_A, "s": sub.id}

    def one(quantity: int) -> Any:
        return call(
            "http_change_subscription",
            "PATCH",
            f"resellers/demo/customers/{CUST_A}/subscriptions/{sub.id}",
            route=route,
            token=token,
            body={"quantity": quantity},
            headers={"If-Match": etag},
        )

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        answers = list(pool.map(one, range(11, 11 + CONCURRENT)))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] + [412] * (CONCURRENT - 1), [
        a.get_body()[:200] for a in answers if a.status_code not in (202, 412)
    ]
    winner = json_of(next(a for a in answers if a.status_code == 202))
    orders = list(c.orders.iterate("demo"))
    assert [(o.id, o.kind) for o in orders] == [(winner["id"], OrderKind.CHANGE)]
    stored = c.subscriptions.get(CUST_A, sub.id.lower())
    assert stored.pending_change is not None and stored.pending_change.order_id == winner["id"]
    change = orders[0].change
    assert change is not None and change.quantity == winner["change"]["quantity"]
