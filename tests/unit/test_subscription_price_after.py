"""One price of a subscription after a change: the Change order's line and the record's
snapshot once Partner Center has made the change are the same `price_after`."""

from __future__ import annotations

from decimal import Decimal

from shared.domain.orders import Order, OrderStatus
from shared.services.orders import OrderBook
from shared.services.subscriptions import requests as sub_requests
from shared.services.subscriptions.requests import SubscriptionPatch, UpgradeRequest
from tests.catalog_fakes import COMMERCIAL_ONLY
from tests.functions.world import CUST_B
from tests.unit import test_subscription_change_applying as applying
from tests.unit.test_subscription_change_applying import (
    AM,
    _bought,
    _deliver_all,
    _offer,
    _order,
    _record,
    _upgradable,
)

world = applying.world  # the same fixture: a customer with a tenant, the fake Partner Center


def _distributor_markup_moves(book: OrderBook, percent: str) -> None:
    """The distributor charges the reseller another mark-up from now on."""
    demo = book.resellers.get("reseller", "demo")
    demo.distributor_markup_percent = Decimal(percent)
    book.resellers.update(demo)


def _completed(book: OrderBook, order: Order) -> Order:
    done = _order(book, order)
    assert done.status is OrderStatus.COMPLETED, done.failure
    return done


def test_a_completed_increase_leaves_the_record_at_the_price_its_change_order_showed(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = sub_requests.request_update(
        book, pc, AM, "demo", CUST_B, record.id, record.etag or "", SubscriptionPatch(quantity=12)
    )
    _distributor_markup_moves(book, "7")  # after the order was shown, before it is made

    _deliver_all(book, pc, order)

    done = _completed(book, order)
    after = _record(book, record.id)
    assert after.priced == done.lines[0].priced
    assert after.priced is not None and after.priced.quantity == 12
    assert record.priced is not None
    assert after.priced.unit.customer_price == record.priced.unit.customer_price


def test_a_completed_upgrade_leaves_the_new_record_at_the_price_its_change_order_showed(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    target = _offer(w, book, COMMERCIAL_ONLY)["catalogItemId"]
    _upgradable(pc, record, target)
    order = sub_requests.request_upgrade(
        book,
        pc,
        AM,
        "demo",
        CUST_B,
        record.id,
        record.etag or "",
        UpgradeRequest(to_catalog_item_id=target, quantity=record.quantity),
    )
    _distributor_markup_moves(book, "7")

    _deliver_all(book, pc, order)

    done = _completed(book, order)
    result = done.lines[0].result
    assert result is not None and result.subscription_id
    assert _record(book, result.subscription_id).priced == done.lines[0].priced
    assert (done.lines[0].quantity, done.lines[0].subscription_quantity) == (10, 10)
