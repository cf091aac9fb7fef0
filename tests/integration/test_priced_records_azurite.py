"""Records holding a price snapshot of an offer without a retail price (no ERP on its
price-sheet row) are written to and read back from Table Storage (Azurite) unchanged."""

from __future__ import annotations

import pytest

from shared.domain.orders import Order, OrderLine, order_row_key
from shared.domain.subscriptions import Subscription
from tests.unit.test_codec import subscription_priced_without_retail_price

pytestmark = pytest.mark.integration


def test_a_subscription_and_an_order_of_an_offer_without_retail_price_load_back(container):
    subs = container.table_repository(
        "Subscriptions", Subscription, lambda s: (s.customer_id, s.id.lower())
    )
    orders = container.table_repository(
        "Orders", Order, lambda o: (o.reseller, order_row_key(o.id))
    )
    sub = subscription_priced_without_retail_price()
    assert sub.priced is not None
    order = Order(
        reseller="demo",
        customer_id=sub.customer_id,
        lines=[
            OrderLine(
                catalog_item_id="CFQ7TTC0LH18:0001:CFQ7TTC0K971",
                product_id="CFQ7TTC0LH18",
                sku_id="0001",
                name="Basic",
                quantity=3,
                term_duration="P1Y",
                billing_cycle="monthly",
                priced=sub.priced,
            )
        ],
        currency="CZK",
        created_by="owner@demo.example",
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )

    subs.add(sub)
    orders.add(order)

    loaded = subs.get(sub.customer_id, sub.id.lower())
    assert loaded.priced == sub.priced and loaded.model_dump(exclude={"etag"}) == sub.model_dump(
        exclude={"etag"}
    )
    assert orders.get(order.reseller, order_row_key(order.id)).lines == order.lines
