"""The real Partner Center client against the simulator over HTTPS: every operation, and the
failure paths that matter (wrong secret, taken domain, NCE window, throttling, idempotent retry).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from localdev.partner_center_sim import SimulatorHandle
from shared.adapters.partner_center import PartnerCenterClient, build_partner_center
from shared.adapters.partner_center.auth import PartnerCenterSignInFailed
from shared.adapters.partner_center.wire import (
    Address,
    BillingProfile,
    Cart,
    CartLineItem,
    CartLineItemParticipant,
    CompanyProfile,
    Customer,
    ScheduledNextTermInstructions,
    ScheduledProduct,
    Subscription,
    Transition,
)
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.errors import (
    ConcurrencyConflict,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.domain.orders import CartLineRequest
from shared.domain.subscriptions import (
    ChangeAccepted,
    NextTerm,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionRequest,
)
from shared.ports import PartnerCenter

pytestmark = pytest.mark.integration

RESELLER = "5123456"
BASIC = "Microsoft 365 Business Basic"


# For a test's own container when its Partner Center calls are set-up (seeding, importing the
# catalog a scenario needs): not paced by the shared request budget. At 500 a minute a catalog
# import's ~90 calls wait ~8 s for tokens; the hosts under test keep the budget.
UNPACED = {"PARTNER_CENTER_REQUESTS_PER_MINUTE": "0"}


def pc_settings(sim: SimulatorHandle, **overrides: Any) -> Settings:
    """Settings for the client pointing at the simulator (fast backoff so tests stay quick)."""
    connection = sim.connection
    values: dict[str, Any] = {
        "APP_ENVIRONMENT": "test",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PARTNER_CENTER_API_BASE_URL": connection["apiBaseUrl"],
        "PARTNER_CENTER_PRICE_SHEET_BASE_URL": connection["priceSheetBaseUrl"],
        "PARTNER_CENTER_AUTHORITY": connection["authority"],
        "PARTNER_CENTER_TENANT_ID": connection["tenantId"],
        "PARTNER_CENTER_CLIENT_ID": connection["clientId"],
        "PARTNER_CENTER_CLIENT_SECRET": connection["clientSecret"],
        "PARTNER_CENTER_REFRESH_TOKEN": connection["refreshToken"],
        "PARTNER_CENTER_CA_CERT_PATH": connection["caCertPath"],
        "PARTNER_CENTER_BACKOFF_BASE_SECONDS": "0.05",
        "PARTNER_CENTER_BACKOFF_CAP_SECONDS": "0.5",
        "PARTNER_CENTER_MAX_RETRY_SECONDS": "30",
        "PARTNER_CENTER_POLL_INTERVAL_SECONDS": "0.2",
        "PARTNER_CENTER_POLL_TIMEOUT_SECONDS": "20",
        # The platform's clock follows the simulator's (tests advance it past NCE windows).
        "PARTNER_CENTER_SIMULATED_CLOCK": "true",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def sim(fresh_partner_center_sim: SimulatorHandle) -> SimulatorHandle:
    """The session's simulator, reset for this test."""
    return fresh_partner_center_sim


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[PartnerCenterClient]:
    """The production client, built by the production factory, against the simulator."""
    pc = build_partner_center(pc_settings(sim))
    yield pc
    pc.close()


def new_customer(domain_prefix: str | None = None) -> Customer:
    prefix = domain_prefix or f"t{uuid.uuid4().hex[:12]}"
    return Customer(
        associated_partner_id=RESELLER,
        company_profile=CompanyProfile(
            domain=f"{prefix}.onmicrosoft.com",
            company_name="Contoso s.r.o.",
            organization_registration_number="12345678",
        ),
        billing_profile=BillingProfile(
            first_name="Jana",
            last_name="Nováková",
            email="jana@contoso.cz",
            culture="cs-CZ",
            language="cs",
            company_name="Contoso s.r.o.",
            default_address=Address(
                country="CZ",
                city="Praha",
                postal_code="110 00",
                address_line1="Hlavní 1",
                first_name="Jana",
                last_name="Nováková",
                phone_number="+420600000000",
            ),
        ),
    )


def catalog_item(
    client: PartnerCenter, title: str, *, trial: bool = False, term: str = "P1Y"
) -> tuple[str, str, str]:
    """(catalogItemId, term, billing cycle) of a product's (trial) SKU, found through the API."""
    product = next(p for p in client.list_products("CZ", "OnlineServices") if p.title == title)
    sku = next(s for s in client.list_skus(product.id, "CZ") if bool(s.is_trial) == trial)
    availability = client.list_availabilities(product.id, sku.id, "CZ")[0]
    assert availability.catalog_item_id is not None
    if trial:
        return availability.catalog_item_id, availability.terms[0].duration or "P1M", "none"
    chosen = next(t for t in availability.terms if t.duration == term)
    return availability.catalog_item_id, term, chosen.billing_cycle or "monthly"


def buy(
    client: PartnerCenter,
    customer_id: str,
    item: tuple[str, str, str],
    quantity: int,
    *,
    request_id: str | None = None,
) -> Subscription:
    """Cart → checkout → the new subscription."""
    catalog_item_id, term, cycle = item
    cart = client.create_cart(
        customer_id,
        Cart(
            line_items=[
                CartLineItem(
                    id=0,
                    catalog_item_id=catalog_item_id,
                    quantity=quantity,
                    term_duration=term,
                    billing_cycle=cycle,
                    participants=[CartLineItemParticipant(partner_id=RESELLER)],
                )
            ]
        ),
    )
    assert cart.id is not None
    result = client.checkout(customer_id, cart.id, request_id=request_id)
    assert result.order_errors == [], result.order_errors
    subscription_id = result.orders[0].line_items[0].subscription_id
    assert subscription_id is not None
    return client.get_subscription(customer_id, subscription_id)


# --- auth ------------------------------------------------------------------------------------


def test_wrong_secret_is_rejected_as_configuration_error(sim: SimulatorHandle) -> None:
    pc = build_partner_center(pc_settings(sim, PARTNER_CENTER_CLIENT_SECRET="wrong"))

    with pytest.raises(PartnerCenterSignInFailed) as caught:
        pc.get_relationship_request_link()

    assert "invalid_client" in caught.value.detail
    pc.close()


def test_without_refresh_token_app_user_operations_fail_as_not_configured(
    sim: SimulatorHandle,
) -> None:
    pc = build_partner_center(pc_settings(sim, PARTNER_CENTER_REFRESH_TOKEN=""))

    with pytest.raises(PartnerCenterSignInFailed) as caught:
        pc.create_customer(new_customer())

    assert "PARTNER_CENTER_REFRESH_TOKEN" in caught.value.detail
    with pytest.raises(PartnerCenterSignInFailed):
        list(pc.list_customers(indirect_reseller_id=RESELLER))
    assert sim.requests(path_prefix="/v1/customers") == []  # refused before any call
    pc.close()


def test_app_only_credentials_buy_for_a_direct_customer(sim: SimulatorHandle) -> None:
    # Microsoft documents customer creation without associatedPartnerId, carts and checkout as
    # "App or App+User": the client signs in app-only for them, refresh token or not.
    pc = build_partner_center(pc_settings(sim, PARTNER_CENTER_REFRESH_TOKEN=""))
    direct = new_customer().model_copy(update={"associated_partner_id": None})

    created = pc.create_customer(direct)
    assert created.id is not None
    subscription = buy(pc, created.id, catalog_item(pc, BASIC), 3)

    assert subscription.quantity == 3
    assert [c.id for c in pc.list_customers()] == [created.id]
    pc.close()


def test_ca_bundle_in_environment_does_not_break_sign_in(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # A CA bundle that trusts nothing useful: if msal let it win, the TLS handshake would fail.
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(empty))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(empty))
    pc = build_partner_center(pc_settings(sim))

    assert pc.get_relationship_request_link().url.startswith("https://")
    pc.close()


# --- customers -------------------------------------------------------------------------------


def test_customers_are_listed_page_by_page(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    sim.seed(23, reseller_id=RESELLER, subscriptions_per_customer=1, seed=7)
    sim.seed(4, reseller_id="7000001", subscriptions_per_customer=1, seed=8)

    everyone = [c.id for c in client.list_customers(page_size=10)]
    mine = list(client.list_customers(indirect_reseller_id=RESELLER, page_size=5))

    assert len(everyone) == len(set(everyone)) == 27
    assert len(mine) == 23
    assert {c.associated_partner_id for c in mine} == {RESELLER}
    pages = sim.requests(path_prefix="/v1/customers")
    assert sum(1 for r in pages if "seekOperation=next" in r["query"]) >= 2 + 4


def test_customer_is_created_for_the_indirect_reseller(client: PartnerCenterClient) -> None:
    customer = new_customer()
    domain = customer.company_profile.domain if customer.company_profile else ""
    assert domain and client.is_domain_available(domain) is True

    created = client.create_customer(customer)

    assert created.id is not None
    assert created.associated_partner_id == RESELLER
    assert client.is_domain_available(domain) is False
    fetched = client.get_customer(created.id)
    assert fetched.billing_profile is not None
    assert fetched.billing_profile.email == "jana@contoso.cz"
    assert fetched.company_profile is not None
    assert fetched.company_profile.domain == domain


def test_taken_domain_is_refused_with_partner_center_code(client: PartnerCenterClient) -> None:
    client.create_customer(new_customer("contosotaken"))

    with pytest.raises(UpstreamRejected) as caught:
        client.create_customer(new_customer("contosotaken"))

    assert caught.value.status == 409
    assert caught.value.code is not None


def test_unknown_customer_is_not_found(client: PartnerCenterClient) -> None:
    with pytest.raises(NotFound):
        client.get_customer(str(uuid.uuid4()))


def test_relationship_link_points_at_the_admin_portal(client: PartnerCenterClient) -> None:
    link = client.get_relationship_request_link()

    assert link.url.startswith("https://admin.microsoft.com/")


# --- catalog and prices ----------------------------------------------------------------------


def test_catalog_products_skus_and_availabilities(client: PartnerCenterClient) -> None:
    products = client.list_products("CZ", "OnlineServices", target_segment="commercial")
    basic = next(p for p in products if p.title == BASIC)
    skus = client.list_skus(basic.id, "CZ")
    paid = next(s for s in skus if not s.is_trial)
    availabilities = client.list_availabilities(
        basic.id, paid.id, "CZ", target_segment="commercial"
    )

    assert client.get_product(basic.id, "CZ").title == BASIC
    assert paid.maximum_quantity is not None and paid.maximum_quantity <= 300
    assert paid.supported_billing_cycles
    assert availabilities[0].catalog_item_id == f"{basic.id}:{paid.id}:{availabilities[0].id}"
    assert {t.duration for t in availabilities[0].terms} >= {"P1M", "P1Y"}


def test_price_sheet_rows_are_typed_with_decimal_prices(client: PartnerCenterClient) -> None:
    rows = list(client.get_price_sheet("CZ"))

    assert len(rows) > 10
    basic = [r for r in rows if r.product_title == BASIC and r.term_duration == "P1Y"]
    assert basic
    assert all(isinstance(r.unit_price, Decimal) and r.unit_price > 0 for r in basic)
    assert basic[0].effective_start_date is not None
    assert basic[0].effective_start_date.tzinfo is not None


def test_price_sheet_of_unknown_market_is_not_found(client: PartnerCenterClient) -> None:
    with pytest.raises(NotFound):
        list(client.get_price_sheet("XX"))


# --- carts, orders, subscriptions ------------------------------------------------------------


def test_purchase_creates_order_and_subscription(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    item = catalog_item(client, BASIC)

    subscription = buy(client, customer.id, item, 3)

    orders = client.list_orders(customer.id)
    assert len(orders) == 1
    order = client.get_order(customer.id, orders[0].id or "")
    assert order.line_items[0].offer_id == item[0]
    assert order.line_items[0].pricing is not None
    assert isinstance(order.line_items[0].pricing.list_price, Decimal)
    status = client.get_order_provisioning_status(customer.id, order.id or "")
    assert status[0].line_item_number == 0
    assert subscription.quantity == 3
    assert subscription.partner_id == RESELLER
    assert subscription.refundable_quantity is not None
    assert subscription.refundable_quantity.total_quantity == 3
    assert [s.id for s in client.list_subscriptions(customer.id)] == [subscription.id]
    skus = client.list_subscribed_skus(customer.id)
    assert skus[0].active_units == 3


def test_invalid_catalog_item_comes_back_as_an_order_error(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    cart = client.create_cart(
        customer.id,
        Cart(
            line_items=[
                CartLineItem(
                    catalog_item_id="NOPE:0001:NOPE",
                    quantity=1,
                    billing_cycle="monthly",
                    term_duration="P1M",
                )
            ]
        ),
    )

    result = client.checkout(customer.id, cart.id or "")

    assert result.orders == []
    assert str(result.order_errors[0].code) == "10001"


def test_subscription_changes_round_trip(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    subscription = buy(client, customer.id, catalog_item(client, BASIC), 2)

    more = client.set_subscription_quantity(customer.id, subscription.id, 5)
    assert more.quantity == 5
    renew_off = client.set_auto_renew(customer.id, subscription.id, False)
    assert renew_off.auto_renew_enabled is False
    renew_on = client.set_auto_renew(customer.id, subscription.id, True)
    assert renew_on.auto_renew_enabled is True
    suspended = client.suspend_subscription(customer.id, subscription.id)
    assert suspended.status == "suspended"
    active = client.reactivate_subscription(customer.id, subscription.id)
    assert active.status == "active"
    cancelled = client.cancel_subscription(customer.id, subscription.id)
    assert cancelled.status == "deleted"


def test_scheduled_next_term_instructions_are_set_and_cleared(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    subscription = buy(client, customer.id, catalog_item(client, BASIC), 4)
    product_id, sku_id, availability_id = (subscription.offer_id or "").split(":")

    scheduled = client.schedule_next_term(
        customer.id,
        subscription.id,
        ScheduledNextTermInstructions(
            product=ScheduledProduct(
                product_id=product_id,
                sku_id=sku_id,
                availability_id=availability_id,
                billing_cycle="monthly",
                term_duration="P1Y",
            ),
            quantity=6,
        ),
    )
    assert scheduled.scheduled_next_term_instructions is not None
    assert scheduled.scheduled_next_term_instructions.quantity == 6

    cleared = client.schedule_next_term(customer.id, subscription.id, None)
    assert cleared.scheduled_next_term_instructions is None


def test_decrease_outside_the_window_is_refused_with_800090(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    subscription = buy(client, customer.id, catalog_item(client, BASIC), 5)
    sim.advance_clock(days=8)

    with pytest.raises(UpstreamRejected) as caught:
        client.set_subscription_quantity(customer.id, subscription.id, 3)

    assert caught.value.code == "800090"
    assert caught.value.status == 400
    assert client.get_subscription(customer.id, subscription.id).quantity == 5


def test_slow_patch_answers_202_and_is_polled_to_the_end(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    subscription = buy(client, customer.id, catalog_item(client, BASIC), 2)
    sim.configure(asyncPatch=True, asyncPatchSeconds=1)

    updated = client.set_subscription_quantity(customer.id, subscription.id, 7)

    assert updated.quantity == 7
    polls = [
        r
        for r in sim.requests(path_prefix=f"/v1/customers/{customer.id}")
        if "/operations/" in r["path"]
    ]
    assert polls


def test_stale_etag_is_a_concurrency_conflict(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    stale = buy(client, customer.id, catalog_item(client, BASIC), 2)
    client.set_subscription_quantity(customer.id, stale.id, 3)

    with pytest.raises(ConcurrencyConflict):
        client.update_subscription(customer.id, stale.model_copy(update={"quantity": 4}))


def test_trial_converts_to_paid_through_a_transition(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    trial = buy(client, customer.id, catalog_item(client, BASIC, trial=True), 25)
    assert trial.is_trial is True

    eligibilities = client.list_transition_eligibilities(customer.id, trial.id)

    assert eligibilities
    # Microsoft documents catalogItemId on each item; the simulator nests it in each
    # eligibility detail (see the report). Accept either so the transition itself is tested.
    first = eligibilities[0]
    target = first.catalog_item_id or (first.eligibilities[0].model_extra or {}).get(
        "catalogItemId"
    )
    assert target
    result = client.create_transition(
        customer.id,
        trial.id,
        Transition(to_catalog_item_id=target, quantity=25, transition_type="transition_only"),
    )
    assert result.from_subscription_id == trial.id
    assert result.status


def test_addons_of_a_subscription_are_listed(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    base = buy(client, customer.id, catalog_item(client, BASIC), 2)

    assert client.list_addons(customer.id, base.id) == []


def test_azure_utilization_is_paged(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    products = client.list_products("CZ", "Azure")
    azure = products[0]
    sku = client.list_skus(azure.id, "CZ")[0]
    availability = client.list_availabilities(azure.id, sku.id, "CZ")[0]
    plan = buy(client, customer.id, (availability.catalog_item_id or "", "", "monthly"), 1)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    records = list(
        client.list_azure_utilization(
            customer.id, plan.id, end - timedelta(days=10), end, page_size=7
        )
    )

    assert len(records) >= 10
    assert all(isinstance(r.quantity, Decimal) for r in records)
    assert records[0].usage_start_time is not None
    assert records[0].usage_start_time.tzinfo is not None


def test_audit_records_show_what_changed(client: PartnerCenterClient) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    customer = client.create_customer(new_customer())
    assert customer.id is not None

    records = list(client.list_audit_records(since))

    assert any(r.customer_id == customer.id for r in records)
    assert all(r.operation_date is not None for r in records)


# --- throttling, faults, idempotency ---------------------------------------------------------


def test_a_token_partner_center_revoked_is_replaced_once_and_the_call_succeeds(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    sim.inject_faults(pathPrefix="/v1/customers", errorRate=1, errorStatus=401, count=1)

    assert list(client.list_customers()) == []

    assert [a["status"] for a in sim.requests(path_prefix="/v1/customers")] == [401, 200]


def test_partner_center_refusing_every_token_is_a_transient_sign_in_outage(
    client: PartnerCenterClient, sim: SimulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    sim.inject_faults(pathPrefix="/v1/customers", errorRate=1, errorStatus=401)

    with pytest.raises(PartnerCenterSignInFailed) as caught:
        list(client.list_customers())

    assert isinstance(caught.value, UpstreamUnavailable)  # queue steps retry; records wait
    assert [a["status"] for a in sim.requests(path_prefix="/v1/customers")] == [401, 401]
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_throttled_call_waits_retry_after_and_succeeds(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    sim.inject_faults(pathPrefix="/v1/customers", throttleRate=1, retryAfterSeconds=2, count=1)

    started = time.monotonic()
    customers = list(client.list_customers())
    elapsed = time.monotonic() - started

    assert customers == []
    assert 1.9 <= elapsed < 6
    attempts = sim.requests(path_prefix="/v1/customers")
    assert [a["status"] for a in attempts] == [429, 200]
    assert attempts[0]["requestId"] == attempts[1]["requestId"]


def test_server_errors_are_retried_until_they_pass(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    sim.inject_faults(pathPrefix="/v1/products", errorRate=1, errorStatus=503, count=2)

    assert client.list_products("CZ", "OnlineServices")
    assert [a["status"] for a in sim.requests(path_prefix="/v1/products")] == [503, 503, 200]


def test_persistent_outage_is_upstream_unavailable(sim: SimulatorHandle) -> None:
    pc = build_partner_center(pc_settings(sim, PARTNER_CENTER_MAX_ATTEMPTS="3"))
    sim.inject_faults(pathPrefix="/v1/products", errorRate=1, errorStatus=502)

    with pytest.raises(UpstreamUnavailable):
        pc.list_products("CZ", "OnlineServices")
    pc.close()


def test_timed_out_checkout_retried_with_same_request_id_orders_once(
    sim: SimulatorHandle,
) -> None:
    pc = build_partner_center(pc_settings(sim, PARTNER_CENTER_TIMEOUT_SECONDS="1"))
    customer = pc.create_customer(new_customer())
    assert customer.id is not None
    catalog_item_id, term, cycle = catalog_item(pc, BASIC)
    line = CartLineItem(
        catalog_item_id=catalog_item_id, quantity=2, term_duration=term, billing_cycle=cycle
    )
    cart = pc.create_cart(customer.id, Cart(line_items=[line]))
    checkout_path = f"/v1/customers/{customer.id}/carts/{cart.id}/checkout"
    # The first checkout is held past the client's 1 s read timeout, then processed anyway.
    sim.inject_faults(pathPrefix=checkout_path, latencyMs=1500, count=1)
    request_id = str(uuid.uuid4())

    result = pc.checkout(customer.id, cart.id or "", request_id=request_id)

    assert len(result.orders) == 1
    time.sleep(1.0)  # let the held first attempt finish on the server
    attempts = sim.requests(request_id=request_id)
    assert len(attempts) >= 2
    assert {a["path"] for a in attempts} == {checkout_path}
    state = sim.customer_state(customer.id)
    assert [o["id"] for o in state["orders"]] == [result.orders[0].id]
    assert len(state["subscriptions"]) == 1
    pc.close()


def test_dropped_connection_on_create_leaves_one_customer(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    sim.inject_faults(
        pathPrefix="/v1/customers", methods=["POST"], dropRate=1, dropPhase="after", count=1
    )

    created = client.create_customer(new_customer("contosodropped"), request_id="req-create-1")

    assert created.id is not None
    matching = [c for c in sim.customers() if c["domain"] == "contosodropped.onmicrosoft.com"]
    assert [c["id"] for c in matching] == [created.id]
    assert len(sim.requests(request_id="req-create-1")) == 2


# --- indirect resellers ---------------------------------------------------------------------------


def test_list_indirect_resellers_maps_both_ids(sim: SimulatorHandle, client: PartnerCenterClient):
    tenant_id = str(uuid.uuid4()).upper()
    sim.add_reseller(tenant_id, "5550002", "Suspended s.r.o.", state="Suspended")
    found = {r.tenant_id: r for r in client.list_indirect_resellers()}
    demo = found["3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10"]
    assert (demo.name, demo.mpn_id, demo.active) == ("Demo Reseller s.r.o.", "6412345", True)
    suspended = found[tenant_id.lower()]
    assert (suspended.mpn_id, suspended.active) == ("5550002", False)


def test_onboarding_against_partner_center_refuses_an_unknown_or_mismatched_reseller(
    sim: SimulatorHandle, client: PartnerCenterClient
):
    from shared.domain.errors import ValidationFailed
    from shared.services.resellers import check_partner_center_ids

    demo = "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10"
    assert check_partner_center_ids(client, demo.upper(), "6412345") is not None
    with pytest.raises(ValidationFailed) as err:
        check_partner_center_ids(client, str(uuid.uuid4()), "6412345")
    assert [e.field for e in err.value.errors] == ["partnerCenterTenantId"]
    with pytest.raises(ValidationFailed) as err:
        check_partner_center_ids(client, demo, "6498765")
    assert [e.field for e in err.value.errors] == ["mpnId"]


def test_the_customer_filter_is_a_prefix_match_and_reseller_tenants_is_exact(
    sim: SimulatorHandle, client: PartnerCenterClient
):
    from shared.domain.identity import Appearance, Reseller, ResellerSettings
    from shared.services.customers import reseller_tenants

    short = str(uuid.uuid4())
    mine = client.create_customer(
        new_customer().model_copy(update={"associated_partner_id": short})
    )
    theirs = client.create_customer(
        new_customer().model_copy(update={"associated_partner_id": short + "0"})
    )
    listed = {c.id for c in client.list_customers(indirect_reseller_id=short)}
    assert {mine.id, theirs.id} <= listed  # Partner Center's filter is starts_with
    reseller = Reseller(
        slug="short",
        name="Short",
        partner_center_tenant_id=short,
        country="CZ",
        currency="CZK",
        settings=ResellerSettings(appearance=Appearance(display_name="Short")),
    )
    assert [t.id for t in reseller_tenants(client, reseller)] == [mine.id]


def test_a_placed_order_is_read_back_in_our_words_with_its_subscription_ids(
    client: PartnerCenterClient,
) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    catalog_item_id, term, cycle = catalog_item(client, BASIC)
    line = CartLineRequest(catalog_item_id, 2, term, cycle, RESELLER)
    cart = client.place_cart(customer.id, [line], request_id=str(uuid.uuid4()))
    result = client.check_out(customer.id, cart.id, request_id=str(uuid.uuid4()))
    (placed,) = result.orders

    again = client.placed_order(customer.id, placed.id)

    assert (again.id, [(pl.catalog_item_id, pl.quantity) for pl in again.lines]) == (
        placed.id,
        [(catalog_item_id.upper(), 2)],
    )
    assert again.lines[0].subscription_id == placed.lines[0].subscription_id


# --- subscriptions through the port, in our words ----------------------------------------------


def bought(client: PartnerCenterClient, title: str = BASIC, quantity: int = 5) -> tuple[str, str]:
    """A new customer with one subscription of `title`: (tenant, subscription id)."""
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    return customer.id, buy(client, customer.id, catalog_item(client, title), quantity).id


def patches(sim: SimulatorHandle, tenant: str, subscription_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in sim.requests(path_prefix=f"/v1/customers/{tenant}")
        if r["method"] == "PATCH"
        and r["path"].lower() == f"/v1/customers/{tenant}/subscriptions/{subscription_id}".lower()
    ]


def test_subscription_is_read_in_our_words_with_its_etag_and_refundable_seats(
    client: PartnerCenterClient,
) -> None:
    tenant, sid = bought(client, quantity=5)

    facts = client.subscription(tenant, sid)

    assert facts.status == "Active" and facts.quantity == 5 and facts.auto_renew is True
    assert facts.etag and facts.etag == client.get_subscription(tenant, sid).attributes.etag  # type: ignore[union-attr]
    assert [r.quantity for r in facts.refundable] == [5]
    assert facts.refundable[0].until == facts.cancellation_allowed_until
    assert facts.catalog_item_id and facts.catalog_item_id.count(":") == 2
    with pytest.raises(NotFound):
        client.subscription(tenant, str(uuid.uuid4()))


def test_increase_opens_its_own_window_and_decrease_inside_it_succeeds(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=2)
    sim.advance_clock(days=3)

    more = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=5), request_id=str(uuid.uuid4())
    )
    assert isinstance(more, SubscriptionFacts)
    assert more.quantity == 5 and [r.quantity for r in more.refundable] == [2, 3]
    assert more.refundable[0].until < more.refundable[1].until

    sim.advance_clock(days=5)  # the purchase's window closed; the increase's is still open
    fewer = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=2), request_id=str(uuid.uuid4())
    )
    assert isinstance(fewer, SubscriptionFacts) and fewer.quantity == 2
    assert fewer.refundable == ()


def test_decrease_after_the_window_is_refused_with_800090(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=5)
    sim.advance_clock(days=8)

    with pytest.raises(UpstreamRejected) as refused:
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=3), request_id=str(uuid.uuid4())
        )

    assert (refused.value.code, refused.value.status) == ("800090", 400)
    assert client.subscription(tenant, sid).quantity == 5


def test_cancel_after_the_window_is_refused_with_900213_and_inside_it_cancels(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, early = bought(client, quantity=1)
    cancelled = client.change_subscription(
        tenant, early, SubscriptionChange(status="Cancelled"), request_id=str(uuid.uuid4())
    )
    assert isinstance(cancelled, SubscriptionFacts) and cancelled.status == "Cancelled"

    tenant, late = bought(client, quantity=1)
    sim.advance_clock(days=8)
    with pytest.raises(UpstreamRejected) as refused:
        client.change_subscription(
            tenant, late, SubscriptionChange(status="Cancelled"), request_id=str(uuid.uuid4())
        )
    assert refused.value.code == "900213"
    assert "cancellation window" in refused.value.detail


def test_suspended_subscription_refuses_a_quantity_change_with_800091_until_reactivated(
    client: PartnerCenterClient,
) -> None:
    tenant, sid = bought(client, quantity=3)
    suspended = client.change_subscription(
        tenant, sid, SubscriptionChange(status="Suspended"), request_id=str(uuid.uuid4())
    )
    assert isinstance(suspended, SubscriptionFacts) and suspended.status == "Suspended"
    assert suspended.auto_renew is False  # suspending turns auto-renew off

    with pytest.raises(UpstreamRejected) as refused:
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=4), request_id=str(uuid.uuid4())
        )
    assert refused.value.code == "800091"

    active = client.change_subscription(
        tenant, sid, SubscriptionChange(status="Active"), request_id=str(uuid.uuid4())
    )
    assert isinstance(active, SubscriptionFacts) and active.status == "Active"


def test_a_change_keeps_auto_renew_and_the_scheduled_next_term_it_does_not_name(
    client: PartnerCenterClient,
) -> None:
    tenant, sid = bought(client, quantity=4)
    item = client.subscription(tenant, sid).catalog_item_id
    scheduled = client.change_subscription(
        tenant,
        sid,
        SubscriptionChange(next_term=NextTerm(item, 6, "P1Y", "monthly")),
        request_id=str(uuid.uuid4()),
    )
    assert isinstance(scheduled, SubscriptionFacts)
    assert scheduled.next_term == NextTerm(item, 6, "P1Y", "monthly")

    renamed = client.change_subscription(
        tenant, sid, SubscriptionChange(billing_cycle=None), request_id=str(uuid.uuid4())
    )
    assert isinstance(renamed, SubscriptionFacts)
    assert renamed.auto_renew is True and renamed.next_term == scheduled.next_term

    cleared = client.change_subscription(
        tenant, sid, SubscriptionChange(clear_next_term=True), request_id=str(uuid.uuid4())
    )
    assert isinstance(cleared, SubscriptionFacts)
    assert cleared.next_term is None and cleared.auto_renew is True


def test_a_minimal_patch_without_auto_renew_and_next_term_resets_them_as_microsoft_warns(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=4)
    item = client.subscription(tenant, sid).catalog_item_id
    client.change_subscription(
        tenant,
        sid,
        SubscriptionChange(next_term=NextTerm(item, 6, None, None)),
        request_id=str(uuid.uuid4()),
    )
    with sim.client() as http:
        minimal = http.patch(
            f"/v1/customers/{tenant}/subscriptions/{sid}",
            json={"quantity": 5},
            headers={"Authorization": f"Bearer {sim.token()}"},
        )
    assert minimal.status_code == 200, minimal.text

    facts = client.subscription(tenant, sid)
    assert facts.quantity == 5 and facts.auto_renew is False and facts.next_term is None


def test_an_accepted_change_comes_back_at_once_and_each_progress_call_reads_once(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=2)
    sim.configure(asyncPatchNext=1, asyncPatchPolls=2)

    accepted = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=7), request_id=str(uuid.uuid4())
    )

    assert isinstance(accepted, ChangeAccepted) and accepted.retry_after_seconds
    running = client.change_progress(tenant, sid, accepted)
    assert running.done is False and running.facts is None
    assert client.subscription(tenant, sid).quantity == 2
    done = client.change_progress(tenant, sid, accepted)
    assert done.done is True and not done.failed and done.failed_code is None
    assert done.facts is not None and done.facts.quantity == 7
    polls = [
        r
        for r in sim.requests(path_prefix=f"/v1/customers/{tenant}")
        if "/operations/" in r["path"]
    ]
    assert len(polls) == 2  # one read per call, never a sleeping loop


def test_an_accepted_change_partner_center_then_refuses_is_failed_with_its_code(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=2)
    sim.configure(asyncPatchNext=1, asyncPatchPolls=1)
    accepted = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=7), request_id=str(uuid.uuid4())
    )
    assert isinstance(accepted, ChangeAccepted)
    # Suspended before the accepted change runs: Partner Center refuses it then.
    client.change_subscription(
        tenant, sid, SubscriptionChange(status="Suspended"), request_id=str(uuid.uuid4())
    )

    failed = client.change_progress(tenant, sid, accepted)

    assert failed.failed and failed.done is False and failed.facts is None
    assert failed.failed_code == "800091" and failed.failed_reason


def test_a_replayed_request_id_applies_the_change_once(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=2)
    request_id = str(uuid.uuid4())

    first = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=3), request_id=request_id
    )
    # A redelivered step: it reads the subscription again (a new ETag) and replays the id.
    again = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=3), request_id=request_id
    )

    assert isinstance(first, SubscriptionFacts) and isinstance(again, SubscriptionFacts)
    assert again.quantity == first.quantity == 3
    assert [r.quantity for r in client.subscription(tenant, sid).refundable] == [2, 1]
    orders = [
        line
        for o in client.list_orders(tenant)
        for line in o.line_items
        if line.transaction_type == "addQuantity"
    ]
    assert len(orders) == 1
    assert len(patches(sim, tenant, sid)) == 2


def test_renewal_in_progress_and_a_pending_operation_are_unavailable_not_refusals(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=2)
    sim.inject_faults(
        pathPrefix=f"/v1/customers/{tenant}/subscriptions/{sid}",
        methods=["PATCH"],
        errorRate=1,
        errorStatus=409,
        errorCode=900278,
        count=1,
    )
    with pytest.raises(UpstreamUnavailable) as pending:
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=3), request_id=str(uuid.uuid4())
        )
    assert "900278" in pending.value.detail and pending.value.retry_after
    assert len(patches(sim, tenant, sid)) == 1  # not retried inside the call

    sim.configure(renewalLagHours=12)
    end = client.subscription(tenant, sid).commitment_end_date
    assert end is not None
    now = datetime.fromisoformat(sim.now().replace("Z", "+00:00"))
    sim.advance_clock(seconds=(end - now).total_seconds() + 86400 + 3600)  # renewal running
    with pytest.raises(UpstreamUnavailable) as renewing:
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=3), request_id=str(uuid.uuid4())
        )
    assert "800082" in renewing.value.detail


def test_scheduled_next_term_change_is_applied_when_the_clock_passes_the_term_end(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=4)
    facts = client.subscription(tenant, sid)
    client.change_subscription(
        tenant,
        sid,
        SubscriptionChange(next_term=NextTerm(facts.catalog_item_id, 9, None, None)),
        request_id=str(uuid.uuid4()),
    )
    assert facts.commitment_end_date is not None
    now = datetime.fromisoformat(sim.now().replace("Z", "+00:00"))
    sim.advance_clock(seconds=(facts.commitment_end_date - now).total_seconds() + 2 * 86400)

    renewed = client.subscription(tenant, sid)

    assert renewed.quantity == 9 and renewed.next_term is None
    assert renewed.commitment_end_date and renewed.commitment_end_date > facts.commitment_end_date
    assert [r.quantity for r in renewed.refundable] == [9]  # a renewal opens a new window


def test_trial_converts_to_paid_through_transition_options(client: PartnerCenterClient) -> None:
    customer = client.create_customer(new_customer())
    assert customer.id is not None
    trial = buy(client, customer.id, catalog_item(client, BASIC, trial=True), 25)
    facts = client.subscription(customer.id, trial.id)
    assert facts.is_trial and facts.trial_ends == facts.commitment_end_date

    options = client.transition_options(customer.id, trial.id)
    assert len(options) == 1 and options[0].eligible
    outcome = client.transition(
        customer.id,
        trial.id,
        TransitionRequest(
            to_catalog_item_id=options[0].catalog_item_id,
            quantity=25,
            term_duration="P1Y",
            billing_cycle="monthly",
            with_licence_transfer=False,
        ),
        request_id=str(uuid.uuid4()),
    )

    assert outcome.status == "Completed" and outcome.to_subscription_id
    paid = client.subscription(customer.id, outcome.to_subscription_id)
    assert paid.is_trial is False and paid.quantity == 25 and paid.term_duration == "P1Y"
    assert client.subscription(customer.id, trial.id).status == "Cancelled"


def test_upgrade_moves_seats_once_for_a_replayed_request_id(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=5)
    options = client.transition_options(tenant, sid)
    target = next(o for o in options if o.title == "Microsoft 365 Business Standard")
    assert target.eligible
    request = TransitionRequest(to_catalog_item_id=target.catalog_item_id, quantity=2)
    request_id = str(uuid.uuid4())

    first = client.transition(tenant, sid, request, request_id=request_id)
    again = client.transition(tenant, sid, request, request_id=request_id)

    assert first == again and first.to_subscription_id
    assert client.subscription(tenant, sid).quantity == 3
    upgraded = client.subscription(tenant, first.to_subscription_id)
    assert upgraded.quantity == 2 and upgraded.refundable == ()  # no window after an upgrade


def test_ineligible_transition_targets_are_refused_with_partner_centers_reason(
    client: PartnerCenterClient,
) -> None:
    tenant, sid = bought(client, quantity=3)
    e5 = catalog_item(client, "Microsoft 365 E5")[0]
    with pytest.raises(UpstreamRejected) as not_a_target:
        client.transition(
            tenant,
            sid,
            TransitionRequest(to_catalog_item_id=e5, quantity=1),
            request_id=str(uuid.uuid4()),
        )
    assert not_a_target.value.status == 400

    client.change_subscription(
        tenant, sid, SubscriptionChange(status="Suspended"), request_id=str(uuid.uuid4())
    )
    options = client.transition_options(tenant, sid)
    assert options and not any(o.eligible for o in options)
    assert "isn't active" in options[0].reasons[0]
    with pytest.raises(UpstreamRejected) as suspended:
        client.transition(
            tenant,
            sid,
            TransitionRequest(to_catalog_item_id=options[0].catalog_item_id, quantity=1),
            request_id=str(uuid.uuid4()),
        )
    assert "isn't active" in suspended.value.detail


def test_licence_counts_show_the_assigned_licences_set_in_the_simulator(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, "Exchange Online (Plan 2)", quantity=10)
    sim.set_consumed_units(tenant, sid, 7)

    counts = client.licence_counts(tenant)

    assert len(counts) == 1
    count = counts[0]
    assert (count.assigned, count.total, count.active, count.suspended) == (7, 10, 10, 0)
    assert count.part_number == "EXCHANGEENTERPRISE"
    token_kinds = [r for r in sim.requests(path_prefix=f"/v1/customers/{tenant}/subscribedskus")]
    assert token_kinds and token_kinds[-1]["status"] == 200  # app+user, as Microsoft requires


def test_the_platform_clock_follows_the_simulator_clock_eight_days_ahead(
    sim: SimulatorHandle,
) -> None:
    container = Container(pc_settings(sim))
    before = container.clock.now()

    sim.advance_clock(days=8)
    time.sleep(1.1)  # the offset is read at most once a second

    assert container.clock.now() - before >= timedelta(days=8)


def _upgrade_to_standard(client: PartnerCenterClient, tenant: str, sid: str, seats: int) -> Any:
    """Upgrade `seats` seats of a Business Basic subscription to Business Standard."""
    options = client.transition_options(tenant, sid)
    target = next(o for o in options if o.title == "Microsoft 365 Business Standard")
    return client.transition(
        tenant,
        sid,
        TransitionRequest(to_catalog_item_id=target.catalog_item_id, quantity=seats),
        request_id=str(uuid.uuid4()),
    )


def test_a_started_transition_moves_no_seats_until_a_read_finds_it_completed(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=5)
    sim.configure(asyncTransitionNext=1, asyncTransitionPolls=2)

    started = _upgrade_to_standard(client, tenant, sid, 2)

    assert started.status == "Started" and started.transition_id
    assert not started.done and not started.failed and started.to_subscription_id is None
    assert client.subscription(tenant, sid).quantity == 5
    running = client.transition_progress(tenant, sid, started.transition_id)
    assert running.status == "Started" and running.to_subscription_id is None
    assert client.subscription(tenant, sid).quantity == 5
    done = client.transition_progress(tenant, sid, started.transition_id)
    assert done.done and done.to_subscription_id and done.partner_center_order_id
    assert done.transition_id == started.transition_id
    assert client.subscription(tenant, sid).quantity == 3
    assert client.subscription(tenant, done.to_subscription_id).quantity == 2
    # Read again: the same end, nothing moved twice.
    assert client.transition_progress(tenant, sid, started.transition_id) == done
    assert client.subscription(tenant, sid).quantity == 3
    reads = [
        r
        for r in sim.requests(path_prefix=f"/v1/customers/{tenant}")
        if r["method"] == "GET" and r["path"].lower().endswith("/transitions")
    ]
    assert len(reads) == 3  # one read per call, never a sleeping loop


def test_a_started_transition_partner_center_gives_up_is_failed_with_its_words(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    tenant, sid = bought(client, quantity=5)
    sim.configure(
        asyncTransitionNext=1,
        asyncTransitionPolls=1,
        asyncTransitionFailure="The target offer is no longer available.",
    )
    try:
        started = _upgrade_to_standard(client, tenant, sid, 2)
        assert started.status == "Started" and started.transition_id
        failed = client.transition_progress(tenant, sid, started.transition_id)
    finally:
        sim.configure(asyncTransitionFailure="")

    assert failed.failed and not failed.done
    assert failed.failed_reason == "The target offer is no longer available."
    assert client.subscription(tenant, sid).quantity == 5
    assert len(client.list_subscriptions(tenant)) == 1


def test_reading_an_unknown_transition_is_not_found(client: PartnerCenterClient) -> None:
    tenant, sid = bought(client, quantity=1)
    with pytest.raises(NotFound):
        client.transition_progress(tenant, sid, str(uuid.uuid4()))
