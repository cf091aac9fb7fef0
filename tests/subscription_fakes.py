"""Seeding subscriptions for tests: a record priced like an order line, known to the fake
Partner Center (`tests.order_fakes.FakeOrderPartnerCenter`, put in place by `install_orders`)
with the same facts."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from shared.domain.orders import OrderCreate
from shared.domain.subscriptions import RefundableSeats, Subscription, SubscriptionFacts
from shared.services.orders.lines import build_lines
from tests.catalog_fakes import BOTH
from tests.fakes import reseller_ids
from tests.order_fakes import FakeOrderPartnerCenter, offer_line


def product_id(c: Any) -> str:
    """The catalog product both resellers sell."""
    catalog_pc: Any = c.partner_center.fallback
    return str(catalog_pc.product_id(BOTH))


def seed_subscription(c: Any, reseller: str, customer_id: str, **over: Any) -> Subscription:
    """An active subscription of the shared product, priced like an order line, known to the
    fake Partner Center with the same facts; `over` sets record fields."""
    r = c.resellers.get("reseller", reseller)
    customer = c.customers.get(reseller, customer_id)
    market = c.catalog_reader.market_products(r.country, c.catalog_reader.import_id(r.country))
    line = offer_line(None, customer, market[product_id(c)], quantity=10)
    priced = build_lines(c.order_book, r, customer, OrderCreate.model_validate({"lines": [line]}))
    now = c.clock.now()
    values: dict[str, Any] = {
        "reseller": reseller,
        "customer_id": customer_id,
        "id": str(uuid.uuid4()),
        "catalog_item_id": priced[0].catalog_item_id,
        "name": priced[0].name,
        "quantity": 10,
        "term_duration": priced[0].term_duration,
        "billing_cycle": priced[0].billing_cycle,
        "status": "Active",
        "start_date": now - timedelta(days=2),
        "commitment_end_date": now + timedelta(days=363),
        "cancellation_allowed_until": now + timedelta(days=5),
        "auto_renew": True,
        "refundable": [RefundableSeats(10, now + timedelta(days=5))],
        "priced": priced[0].priced,
        "refreshed_at": now,
        "created_at": now,
        "updated_at": now,
    }
    values.update(over)
    sub = c.subscriptions.add(Subscription(**values))
    pc: FakeOrderPartnerCenter = c.partner_center
    pc.add_subscription(facts_of(sub))
    return sub


def facts_of(sub: Subscription, **over: Any) -> SubscriptionFacts:
    """What Partner Center would say about the record (`over` changes some of it)."""
    facts = SubscriptionFacts(
        id=sub.id,
        catalog_item_id=sub.catalog_item_id,
        name=sub.name,
        quantity=sub.quantity,
        term_duration=sub.term_duration,
        billing_cycle=sub.billing_cycle,
        status=sub.status,
        start_date=sub.start_date,
        commitment_end_date=sub.commitment_end_date,
        cancellation_allowed_until=sub.cancellation_allowed_until,
        auto_renew=sub.auto_renew,
        is_trial=sub.is_trial,
        order_id=None,
        parent_subscription_id=sub.parent_subscription_id,
        refundable=tuple(sub.refundable),
        next_term=sub.next_term,
        trial_ends=sub.trial_ends,
        partner_id=reseller_ids(sub.reseller)[1],  # its reseller is the reseller of record
    )
    return replace(facts, **over)
