"""The simulator's catalog, prices and new-commerce rules, in memory."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from localdev.partner_center_sim.catalog import CURRENCIES, Catalog
from localdev.partner_center_sim.clock import SimClock
from localdev.partner_center_sim.errors import SimError
from localdev.partner_center_sim.faults import FaultInjector, RateLimiter
from localdev.partner_center_sim.rules import add_months, commitment_end
from localdev.partner_center_sim.state import SimState


@pytest.fixture
def state() -> SimState:
    return SimState(Catalog(), SimClock())


def customer_body(domain: str) -> dict[str, Any]:
    return {
        "companyProfile": {"domain": domain},
        "billingProfile": {
            "email": "a@b.cz",
            "culture": "cs-CZ",
            "language": "cs",
            "companyName": "Firma",
            "defaultAddress": {
                "country": "CZ",
                "city": "Praha",
                "postalCode": "11000",
                "addressLine1": "A 1",
            },
        },
        "associatedPartnerId": "123",
    }


def purchase(
    state: SimState, slug: str, quantity: int, term: str = "P1Y", sku: str = "0001"
) -> tuple[str, str]:
    """Create a customer and buy one offer; returns (customer id, subscription id)."""
    with state.session() as now:
        customer = state.create_customer(customer_body(f"c{len(state.customers)}x"), now)
        paid = state.catalog.sku_by_slug(slug)
        target = paid if sku == "0001" else state.catalog.sku(paid.product_id, sku)
        item = target.availabilities[0].catalog_item_id
        cycle = "none" if target.is_trial else "monthly"
        cart = state.create_cart(
            customer.id,
            {
                "lineItems": [
                    {
                        "catalogItemId": item,
                        "quantity": quantity,
                        "billingCycle": cycle,
                        "termDuration": term,
                    }
                ]
            },
            now,
        )
        result = state.checkout(customer.id, cart.id, now)
    assert result["orderErrors"] == [], result["orderErrors"]
    return customer.id, result["orders"][0]["lineItems"][0]["subscriptionId"]


def patch(state: SimState, customer_id: str, sub_id: str, **changes: Any) -> None:
    with state.session() as now:
        state.patch_subscription(customer_id, sub_id, changes, now)


def test_catalog_has_the_assortment_the_platform_sells() -> None:
    catalog = Catalog()
    titles = {p.title for p in catalog.products.values()}
    assert len(catalog) >= 30
    for expected in (
        "Microsoft 365 Business Basic",
        "Microsoft 365 E5",
        "Office 365 E1",
        "Microsoft Teams Phone Standard",
        "Dynamics 365 Business Central Essentials",
        "Azure plan",
        "Microsoft 365 Copilot",
        "Windows Server 2022 Standard - 16 Core License Pack",
    ):
        assert expected in titles
    phone = catalog.sku_by_slug("teams-phone")
    assert phone.is_addon and phone.prerequisite_keys


def test_monthly_term_is_exactly_20_percent_above_the_annual_monthly_equivalent() -> None:
    catalog = Catalog()
    checked = 0
    for sku in catalog.skus():
        if sku.is_trial or sku.erp_month_eur is None:
            continue
        for availability in sku.availabilities:
            if not availability.offers("P1M", "monthly"):
                continue
            for currency in CURRENCIES:
                monthly = catalog.price(sku, "P1M", "monthly", currency)
                annual = catalog.price(sku, "P1Y", "monthly", currency)
                yearly = catalog.price(sku, "P1Y", "annual", currency)
                assert isinstance(monthly.unit_price, Decimal)
                assert monthly.unit_price == annual.unit_price * Decimal("1.2")
                assert monthly.erp == annual.erp * Decimal("1.2")
                assert yearly.unit_price == annual.unit_price * 12
                checked += 1
    assert checked > 50


def test_terms_end_the_day_before_the_same_date_next_period() -> None:
    from datetime import UTC, datetime

    start = datetime(2024, 1, 31, 15, 30, tzinfo=UTC)
    assert commitment_end(start, "P1M") == datetime(2024, 2, 28, tzinfo=UTC)
    assert commitment_end(start, "P1Y") == datetime(2025, 1, 30, tzinfo=UTC)
    assert add_months(datetime(2024, 2, 29, tzinfo=UTC), 12) == datetime(2025, 2, 28, tzinfo=UTC)


def test_decrease_inside_the_window_then_refused_with_800090(state: SimState) -> None:
    customer_id, sub_id = purchase(state, "exchange-p1", 10)
    patch(state, customer_id, sub_id, quantity=6)
    state.advance_clock(timedelta(hours=169))
    with pytest.raises(SimError) as refused:
        patch(state, customer_id, sub_id, quantity=5)
    assert refused.value.code == 800090


def test_cancel_after_the_window_is_900213(state: SimState) -> None:
    customer_id, sub_id = purchase(state, "powerbi-pro", 2)
    state.advance_clock(timedelta(days=7, minutes=1))
    with pytest.raises(SimError) as refused:
        patch(state, customer_id, sub_id, status="deleted")
    assert refused.value.code == 900213


def test_suspended_subscription_refuses_quantity_changes_with_800091(state: SimState) -> None:
    customer_id, sub_id = purchase(state, "visio-plan-1", 2)
    patch(state, customer_id, sub_id, status="suspended")
    with pytest.raises(SimError) as refused:
        patch(state, customer_id, sub_id, quantity=3)
    assert refused.value.code == 800091


def test_business_seats_are_capped_across_the_tenant(state: SimState) -> None:
    customer_id, sub_id = purchase(state, "m365-business-basic", 200)
    with pytest.raises(SimError) as refused:
        patch(state, customer_id, sub_id, quantity=301)
    assert refused.value.code == 10015
    assert refused.value.extra["availableQuantity"] == 300


def test_auto_renew_off_expires_then_disables_then_deletes(state: SimState) -> None:
    customer_id, sub_id = purchase(state, "teams-enterprise", 3, term="P1M")
    patch(state, customer_id, sub_id, autoRenewEnabled=False)
    state.advance_clock(timedelta(days=32))
    assert state.subscriptions[sub_id].status == "expired"
    state.advance_clock(timedelta(days=31))
    assert state.subscriptions[sub_id].status == "disabled"
    state.advance_clock(timedelta(days=91))
    assert state.subscriptions[sub_id].status == "deleted"


def test_monthly_subscription_renews_and_opens_a_new_window(state: SimState) -> None:
    _, sub_id = purchase(state, "teams-enterprise", 3, term="P1M")
    first_end = state.subscriptions[sub_id].commitment_end
    state.advance_clock(timedelta(days=62))
    sub = state.subscriptions[sub_id]
    assert sub.status == "active" and sub.commitment_end and first_end
    assert sub.commitment_end > first_end
    with state.session() as now:
        assert sub.cancel_until is not None and sub.cancel_until > now


def test_trial_with_auto_renew_becomes_paid_at_its_end(state: SimState) -> None:
    customer_id, sub_id = purchase(state, "m365-business-standard", 25, term="P1M", sku="0002")
    assert state.subscriptions[sub_id].is_trial
    patch(state, customer_id, sub_id, autoRenewEnabled=True)
    state.advance_clock(timedelta(days=31))
    sub = state.subscriptions[sub_id]
    assert not sub.is_trial and sub.term_duration == "P1Y" and sub.billing_cycle == "monthly"
    assert sub.sku_id == "0001"


def test_seed_creates_customers_of_the_reseller_with_subscriptions(state: SimState) -> None:
    with state.session() as now:
        ids = state.seed(50, "R1", 3, 1, now)
    assert len(ids) == 50 and len(state.subscriptions) == 150
    assert {c.associated_partner_id for c in state.customers.values()} == {"R1"}
    assert len(state.list_customers("IndirectReseller", "R1")) == 50
    assert len({c.domain for c in state.customers.values()}) == 50


def test_fault_rule_with_a_count_applies_to_that_many_requests() -> None:
    faults = FaultInjector(seed=1)
    faults.add({"pathPrefix": "/v1/customers", "errorRate": 1, "count": 2})
    assert faults.decide("GET", "/v1/products").error_status is None
    assert [faults.decide("GET", "/v1/customers").error_status for _ in range(3)] == [
        503,
        503,
        None,
    ]


def test_timeout_fault_holds_the_answer_for_its_phase_at_its_rate() -> None:
    faults = FaultInjector(seed=3)
    faults.add({"pathPrefix": "/v1/customers", "timeoutRate": 0.3, "timeoutMs": 900})
    decisions = [faults.decide("POST", "/v1/customers/x/carts") for _ in range(1000)]
    held = [d for d in decisions if d.timeout]
    assert 230 < len(held) < 370
    assert {(d.timeout, d.timeout_ms) for d in held} == {("after", 900)}
    with pytest.raises(SimError):
        faults.add({"timeoutRate": 1, "timeoutPhase": "never"})


def test_rate_limiter_counts_refused_requests_and_names_the_wait() -> None:
    limiter = RateLimiter()
    assert [limiter.hit("p", 2) for _ in range(2)] == [None, None]
    retry_after = limiter.hit("p", 2)
    assert retry_after is not None and 1 <= retry_after <= 60
    assert limiter.hit("other", 2) is None


def test_changing_a_checked_out_cart_answers_microsofts_already_submitted_code(
    state: SimState,
) -> None:
    with state.session() as now:
        customer = state.create_customer(customer_body("submittedx"), now)
        item = state.catalog.sku_by_slug("exchange-p1").availabilities[0].catalog_item_id
        line = {
            "catalogItemId": item,
            "quantity": 1,
            "billingCycle": "monthly",
            "termDuration": "P1Y",
        }
        cart = state.create_cart(customer.id, {"lineItems": [line]}, now)
        state.checkout(customer.id, cart.id, now)
        with pytest.raises(SimError) as caught:
            state.update_cart(customer.id, cart.id, {"lineItems": [line]}, now)
    assert (caught.value.status, caught.value.code) == (400, 800065)
