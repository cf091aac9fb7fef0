"""The Partner Center simulator over HTTPS, driven with raw httpx as Partner Center documents."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import msal
import pytest

from localdev.partner_center_sim import SimulatorHandle

pytestmark = pytest.mark.integration

RESELLER = "7654321"


@pytest.fixture
def sim(fresh_partner_center_sim: SimulatorHandle) -> SimulatorHandle:
    """The session simulator, emptied for this test."""
    return fresh_partner_center_sim


@pytest.fixture
def pc(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    """An app+user authorised Partner Center client."""
    token = sim.token(app_user=True)
    with sim.client(headers={"Authorization": f"Bearer {token}", "MS-Contract-Version": "v1"}) as c:
        yield c


def new_customer(pc: httpx.Client, domain: str | None = None, **extra: Any) -> dict[str, Any]:
    """Create a customer of RESELLER through POST /v1/customers."""
    domain = domain or f"t{uuid.uuid4().hex[:12]}.onmicrosoft.com"
    body = {
        "companyProfile": {"domain": domain},
        "billingProfile": {
            "email": "admin@example.cz",
            "culture": "cs-CZ",
            "language": "cs",
            "companyName": "Testovací s.r.o.",
            "defaultAddress": {
                "country": "CZ",
                "city": "Praha",
                "postalCode": "110 00",
                "addressLine1": "Václavské náměstí 1",
            },
        },
        "associatedPartnerId": RESELLER,
        **extra,
    }
    response = pc.post("/v1/customers", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def catalog_item(
    pc: httpx.Client, title: str, sku_id: str = "0001", segment: str = "commercial"
) -> str:
    """The catalogItemId of a product by title."""
    products = pc.get("/v1/products", params={"country": "CZ", "targetView": "OnlineServices"})
    product = next(p for p in products.json()["items"] if p["title"] == title)
    availabilities = pc.get(
        f"/v1/products/{product['id']}/skus/{sku_id}/availabilities", params={"country": "CZ"}
    ).json()["items"]
    return str(next(a for a in availabilities if a["segment"] == segment)["catalogItemId"])


def buy(
    pc: httpx.Client,
    customer_id: str,
    lines: list[dict[str, Any]],
    request_id: str | None = None,
) -> dict[str, Any]:
    """Create a cart and check it out; returns the checkout result."""
    cart = pc.post(f"/v1/customers/{customer_id}/carts", json={"lineItems": lines})
    assert cart.status_code == 201, cart.text
    headers = {"MS-RequestId": request_id} if request_id else {}
    result = pc.post(
        f"/v1/customers/{customer_id}/carts/{cart.json()['id']}/checkout", headers=headers
    )
    assert result.status_code == 201, result.text
    return dict(result.json())


def line(
    item: str, quantity: int, term: str = "P1Y", cycle: str = "monthly", **extra: Any
) -> dict[str, Any]:
    """A cart line with the reseller as transaction reseller."""
    return {
        "catalogItemId": item,
        "quantity": quantity,
        "termDuration": term,
        "billingCycle": cycle,
        "participants": [{"type": "TransactionReseller", "partnerId": RESELLER}],
        **extra,
    }


def bought_subscription(
    pc: httpx.Client, customer_id: str, result: dict[str, Any]
) -> dict[str, Any]:
    """The subscription the first order line of a checkout created."""
    sub_id = result["orders"][0]["lineItems"][0]["subscriptionId"]
    response = pc.get(f"/v1/customers/{customer_id}/subscriptions/{sub_id}")
    assert response.status_code == 200
    return dict(response.json())


# ----------------------------------------------------------------- auth


def test_token_with_wrong_secret_is_401_invalid_client(sim: SimulatorHandle) -> None:
    with sim.client() as http:
        response = http.post(
            sim.connection["tokenEndpoint"],
            data={
                "client_id": sim.connection["clientId"],
                "client_secret": "wrong",
                "grant_type": "client_credentials",
                "scope": "https://api.partnercenter.microsoft.com/.default",
            },
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_api_refuses_missing_and_forged_tokens(sim: SimulatorHandle) -> None:
    with sim.client() as http:
        assert http.get("/v1/customers").status_code == 401
        forged = sim.token() + "x"
        assert (
            http.get("/v1/customers", headers={"Authorization": f"Bearer {forged}"}).status_code
            == 401
        )
        good = sim.token()
        assert (
            http.get("/v1/customers", headers={"Authorization": f"Bearer {good}"}).status_code
            == 200
        )


def test_msal_gets_app_and_app_user_tokens_from_the_simulator(sim: SimulatorHandle) -> None:
    import requests

    class VerifyingSession(requests.Session):
        """Passes verify on each request: REQUESTS_CA_BUNDLE would override Session.verify."""

        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["verify"] = sim.ca_cert_path
            return super().request(*args, **kwargs)

    app = msal.ConfidentialClientApplication(
        sim.connection["clientId"],
        client_credential=sim.connection["clientSecret"],
        authority=sim.connection["authority"],
        instance_discovery=False,
        http_client=VerifyingSession(),
    )
    app_only = app.acquire_token_for_client(scopes=[sim.connection["scope"]])
    assert "access_token" in app_only, app_only
    app_user = app.acquire_token_by_refresh_token(
        sim.connection["refreshToken"], scopes=[sim.connection["scope"]]
    )
    assert "access_token" in app_user, app_user
    with sim.client(headers={"Authorization": f"Bearer {app_user['access_token']}"}) as http:
        assert http.get("/v1/customers/relationshiprequests").json()["url"].startswith("https://")


@dataclass(frozen=True)
class World:
    """What the operations act on: a customer with an order, its subscription and an open cart."""

    customer: str
    order: str
    subscription: dict[str, Any]
    cart: str
    item: str

    @property
    def customer_url(self) -> str:
        """/v1/customers/{c}."""
        return f"/v1/customers/{self.customer}"

    @property
    def subscription_url(self) -> str:
        """/v1/customers/{c}/subscriptions/{s}."""
        return f"{self.customer_url}/subscriptions/{self.subscription['id']}"

    @property
    def product_url(self) -> str:
        """/v1/products/{p} of the world's item."""
        return f"/v1/products/{self.item.split(':')[0]}"


def make_world(pc: httpx.Client) -> World:
    """Create the world with app+user credentials."""
    customer = new_customer(pc)["id"]
    item = catalog_item(pc, "Microsoft 365 Business Standard")
    result = buy(pc, customer, [line(item, 3)])
    cart = pc.post(f"/v1/customers/{customer}/carts", json={"lineItems": [line(item, 1)]})
    return World(
        customer=customer,
        order=result["orders"][0]["id"],
        subscription=bought_subscription(pc, customer, result),
        cart=cart.json()["id"],
        item=item,
    )


def customer_body(**extra: Any) -> dict[str, Any]:
    """A valid POST /v1/customers body for a fresh domain."""
    return {
        "companyProfile": {"domain": f"t{uuid.uuid4().hex[:12]}.onmicrosoft.com"},
        "billingProfile": {
            "email": "admin@example.cz",
            "culture": "cs-CZ",
            "language": "cs",
            "companyName": "Přímý zákazník s.r.o.",
            "defaultAddress": {
                "country": "CZ",
                "city": "Brno",
                "postalCode": "602 00",
                "addressLine1": "Náměstí Svobody 1",
            },
        },
        **extra,
    }


def reseller_filter() -> dict[str, str]:
    """The IndirectReseller customer filter for RESELLER."""
    spec = {"Field": "IndirectReseller", "Value": RESELLER, "Operator": "starts_with"}
    return {"filter": json.dumps(spec)}


def next_page_of_reseller_customers(
    http: httpx.Client, pc: httpx.Client, w: World
) -> httpx.Response:
    """Page 2 of a reseller's customers: the filter travels in the continuation token."""
    new_customer(pc)
    first = pc.get("/v1/customers", params={"size": 1, **reseller_filter()}).json()
    token = first["links"]["next"]["headers"][0]["value"]
    return http.get(
        "/v1/customers",
        params={"seekOperation": "next"},
        headers={"MS-ContinuationToken": token},
    )


def convert_trial(http: httpx.Client, pc: httpx.Client, w: World) -> httpx.Response:
    """POST …/transitions: a trial becomes paid."""
    trial_item = catalog_item(pc, "Microsoft 365 Business Premium", sku_id="0002")
    trial = bought_subscription(
        pc, w.customer, buy(pc, w.customer, [line(trial_item, 25, term="P1M", cycle="none")])
    )
    base = f"/v1/customers/{w.customer}/subscriptions/{trial['id']}"
    target = pc.get(f"{base}/transitionEligibilities", params={"eligibilityType": "immediate"})
    return http.post(
        f"{base}/transitions",
        json={
            "toCatalogItemId": target.json()["items"][0]["catalogItemId"],
            "quantity": 25,
            "termDuration": "P1Y",
            "billingCycle": "monthly",
            "transitionType": "transition_only",
        },
    )


def azure_utilization(http: httpx.Client, pc: httpx.Client, w: World) -> httpx.Response:
    """GET …/utilizations/azure of an Azure plan."""
    products = pc.get("/v1/products", params={"country": "CZ", "targetView": "Azure"})
    product = products.json()["items"][0]["id"]
    plan = pc.get(f"/v1/products/{product}/skus/0001/availabilities", params={"country": "CZ"})
    item = plan.json()["items"][0]["catalogItemId"]
    result = buy(
        pc, w.customer, [{"catalogItemId": item, "quantity": 1, "billingCycle": "monthly"}]
    )
    sub_id = result["orders"][0]["lineItems"][0]["subscriptionId"]
    return http.get(
        f"/v1/customers/{w.customer}/subscriptions/{sub_id}/utilizations/azure",
        params={"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"},
    )


Operation = Callable[[httpx.Client, httpx.Client, World], httpx.Response]
C = "/v1/customers"
PRICE_SHEET = "/v1.0/sales/pricesheets(Market='CZ',PricesheetView='updatedlicensebased')/$value"
CZ = {"country": "CZ"}

# Every operation with its success status and whether Microsoft documents it "App+User only"
# (each page's "Prerequisites"; REFERENCE.md "Credentials per operation"). The rest are
# "App or App+User". `http` carries the token under test; `pc` (app+user) prepares.
OPERATIONS: list[tuple[str, Operation, int, bool]] = [
    (
        "create customer for indirect reseller",
        lambda http, pc, w: http.post(C, json=customer_body(associatedPartnerId=RESELLER)),
        201,
        True,
    ),
    (
        "list indirect reseller's customers",
        lambda http, pc, w: http.get(C, params=reseller_filter()),
        200,
        True,
    ),
    ("list indirect reseller's customers, next page", next_page_of_reseller_customers, 200, True),
    (
        "relationship request link",
        lambda http, pc, w: http.get(f"{C}/relationshiprequests"),
        200,
        True,
    ),
    (
        "order provisioning status",
        lambda http, pc, w: http.get(f"{w.customer_url}/orders/{w.order}/provisioningstatus"),
        200,
        True,
    ),
    (
        "subscribed skus",
        lambda http, pc, w: http.get(f"{w.customer_url}/subscribedskus"),
        200,
        True,
    ),
    ("price sheet", lambda http, pc, w: http.get(PRICE_SHEET), 200, True),
    ("create direct customer", lambda http, pc, w: http.post(C, json=customer_body()), 201, False),
    ("list customers", lambda http, pc, w: http.get(C), 200, False),
    ("get customer", lambda http, pc, w: http.get(f"{w.customer_url}"), 200, False),
    (
        "domain check",
        lambda http, pc, w: http.head("/v1/domains/free-x1.onmicrosoft.com"),
        404,
        False,
    ),
    ("list products", lambda http, pc, w: http.get("/v1/products", params=CZ), 200, False),
    ("list skus", lambda http, pc, w: http.get(f"{w.product_url}/skus", params=CZ), 200, False),
    (
        "list availabilities",
        lambda http, pc, w: http.get(f"{w.product_url}/skus/0001/availabilities", params=CZ),
        200,
        False,
    ),
    (
        "create cart",
        lambda http, pc, w: http.post(
            f"{w.customer_url}/carts", json={"lineItems": [line(w.item, 1)]}
        ),
        201,
        False,
    ),
    ("get cart", lambda http, pc, w: http.get(f"{w.customer_url}/carts/{w.cart}"), 200, False),
    (
        "update cart",
        lambda http, pc, w: http.put(
            f"{w.customer_url}/carts/{w.cart}", json={"lineItems": [line(w.item, 2)]}
        ),
        200,
        False,
    ),
    (
        "checkout",
        lambda http, pc, w: http.post(f"{w.customer_url}/carts/{w.cart}/checkout"),
        201,
        False,
    ),
    ("get order", lambda http, pc, w: http.get(f"{w.customer_url}/orders/{w.order}"), 200, False),
    ("list orders", lambda http, pc, w: http.get(f"{w.customer_url}/orders"), 200, False),
    (
        "list subscriptions",
        lambda http, pc, w: http.get(f"{w.customer_url}/subscriptions"),
        200,
        False,
    ),
    ("get subscription", lambda http, pc, w: http.get(f"{w.subscription_url}"), 200, False),
    (
        "change seats (PATCH)",
        lambda http, pc, w: http.patch(
            f"{w.subscription_url}", json={**w.subscription, "quantity": 5}
        ),
        200,
        False,
    ),
    (
        "suspend (PATCH)",
        lambda http, pc, w: http.patch(
            f"{w.subscription_url}", json={**w.subscription, "status": "suspended"}
        ),
        200,
        False,
    ),
    (
        "cancel (PATCH)",
        lambda http, pc, w: http.patch(
            f"{w.subscription_url}", json={**w.subscription, "status": "deleted"}
        ),
        200,
        False,
    ),
    (
        "transition eligibilities",
        lambda http, pc, w: http.get(
            f"{w.subscription_url}/transitionEligibilities", params={"eligibilityType": "immediate"}
        ),
        200,
        False,
    ),
    ("create transition", convert_trial, 200, False),
    (
        "list transitions",
        lambda http, pc, w: http.get(f"{w.subscription_url}/transitions"),
        200,
        False,
    ),
    ("list add-ons", lambda http, pc, w: http.get(f"{w.subscription_url}/addons"), 200, False),
    (
        "audit records",
        lambda http, pc, w: http.get("/v1/auditrecords"),
        200,
        False,
    ),
    ("azure utilization", azure_utilization, 200, False),
]


@pytest.mark.parametrize("app_user", [False, True], ids=["app-only", "app+user"])
@pytest.mark.parametrize(
    ("operation", "call", "success", "app_user_only"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
def test_app_only_tokens_are_refused_exactly_where_microsoft_requires_a_user(
    sim: SimulatorHandle,
    pc: httpx.Client,
    operation: str,
    call: Operation,
    success: int,
    app_user_only: bool,
    app_user: bool,
) -> None:
    world = make_world(pc)
    token = sim.token(app_user=app_user)
    with sim.client(headers={"Authorization": f"Bearer {token}"}) as http:
        response = call(http, pc, world)

    if app_user_only and not app_user:
        assert response.status_code == 403, response.text
        assert "app+user" in response.json()["description"]
    else:
        assert response.status_code == success, response.text


# ----------------------------------------------------------------- customers and domains


def test_domain_is_free_until_a_customer_takes_it(pc: httpx.Client) -> None:
    domain = f"free{uuid.uuid4().hex[:10]}.onmicrosoft.com"
    assert pc.head(f"/v1/domains/{domain}").status_code == 404
    customer = new_customer(pc, domain)
    assert pc.head(f"/v1/domains/{domain}").status_code == 200
    assert customer["companyProfile"]["domain"] == domain
    assert customer["associatedPartnerId"] == RESELLER
    assert customer["userCredentials"]["password"]
    fetched = pc.get(f"/v1/customers/{customer['id']}").json()
    assert fetched["attributes"]["objectType"] == "Customer"
    assert "userCredentials" not in fetched


def test_second_customer_with_the_same_domain_is_409(pc: httpx.Client) -> None:
    domain = f"dup{uuid.uuid4().hex[:10]}.onmicrosoft.com"
    new_customer(pc, domain)
    response = pc.post(
        "/v1/customers",
        json={**_customer_body(domain.upper())},
    )
    assert response.status_code == 409
    assert {"code", "description"} <= set(response.json())


def _customer_body(domain: str) -> dict[str, Any]:
    return {
        "companyProfile": {"domain": domain},
        "billingProfile": {
            "email": "a@b.cz",
            "culture": "cs-CZ",
            "language": "cs",
            "companyName": "X",
            "defaultAddress": {
                "country": "CZ",
                "city": "Brno",
                "postalCode": "60200",
                "addressLine1": "A 1",
            },
        },
    }


def test_customer_without_billing_profile_or_bad_json_is_400(pc: httpx.Client) -> None:
    response = pc.post("/v1/customers", json={"companyProfile": {"domain": "x.onmicrosoft.com"}})
    assert response.status_code == 400
    assert "billingProfile" in response.json()["description"]
    bad = pc.post(
        "/v1/customers", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert isinstance(bad.json()["code"], int)


def test_customer_list_pages_with_continuation_token_and_reseller_filter(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    sim.seed(7, reseller_id=RESELLER, subscriptions_per_customer=1)
    sim.seed(3, reseller_id="1111111", subscriptions_per_customer=1)
    flt = json.dumps({"Field": "IndirectReseller", "Value": RESELLER, "Operator": "starts_with"})
    first = pc.get("/v1/customers", params={"size": 5, "filter": flt}).json()
    assert first["totalCount"] == 5
    next_link = first["links"]["next"]
    token = next_link["headers"][0]
    assert token["key"] == "MS-ContinuationToken"
    assert first["continuationToken"] == token["value"]
    second = pc.get(
        "/v1" + next_link["uri"], headers={"MS-ContinuationToken": token["value"]}
    ).json()
    assert second["totalCount"] == 2
    assert "next" not in second.get("links", {})
    ids = [c["id"] for c in first["items"] + second["items"]]
    assert len(set(ids)) == 7
    assert all(c["associatedPartnerId"] == RESELLER for c in first["items"] + second["items"])


def test_customer_page_size_is_capped_at_500(sim: SimulatorHandle, pc: httpx.Client) -> None:
    sim.seed(600, reseller_id=RESELLER, subscriptions_per_customer=0)
    page = pc.get("/v1/customers", params={"size": 1000}).json()
    assert page["totalCount"] == 500
    assert page["links"]["next"]


# ----------------------------------------------------------------- carts, orders, subscriptions


def test_checkout_creates_order_and_subscription_with_cancellation_window(pc: httpx.Client) -> None:
    customer = new_customer(pc)
    item = catalog_item(pc, "Microsoft 365 Business Basic")
    result = buy(pc, customer["id"], [line(item, 5)])
    assert result["orderErrors"] == []
    order = result["orders"][0]
    assert order["status"] == "completed"
    assert order["lineItems"][0]["offerId"] == item
    sub = bought_subscription(pc, customer["id"], result)
    assert sub["quantity"] == 5 and sub["status"] == "active" and sub["partnerId"] == RESELLER
    assert sub["refundableQuantity"]["totalQuantity"] == 5
    assert (
        sub["cancellationAllowedUntilDate"]
        == sub["refundableQuantity"]["details"][0]["allowedUntilDateTime"]
    )
    orders = pc.get(f"/v1/customers/{customer['id']}/orders").json()
    assert [o["id"] for o in orders["items"]] == [order["id"]]
    status = pc.get(
        f"/v1/customers/{customer['id']}/orders/{order['id']}/provisioningstatus"
    ).json()
    assert status["items"][0]["status"] == "fulfilled"


def test_each_seat_increase_opens_its_own_window(sim: SimulatorHandle, pc: httpx.Client) -> None:
    customer = new_customer(pc)
    result = buy(pc, customer["id"], [line(catalog_item(pc, "Exchange Online (Plan 1)"), 2)])
    sub = bought_subscription(pc, customer["id"], result)
    sim.advance_clock(days=3)
    sub["quantity"] = 5
    patched = pc.patch(f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}", json=sub).json()
    details = patched["refundableQuantity"]["details"]
    assert [d["quantity"] for d in details] == [2, 3]
    assert details[0]["allowedUntilDateTime"] < details[1]["allowedUntilDateTime"]
    sim.advance_clock(days=5)  # the first window closed, the second is still open
    patched["quantity"] = 1
    refused = pc.patch(f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}", json=patched)
    assert refused.status_code == 400 and refused.json()["code"] == 800090
    patched["quantity"] = 2
    assert (
        pc.patch(
            f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}", json=patched
        ).status_code
        == 200
    )


def test_seat_decrease_is_refused_after_the_clock_passes_the_window(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    result = buy(
        pc, customer["id"], [line(catalog_item(pc, "Microsoft 365 Business Standard"), 10)]
    )
    sub = bought_subscription(pc, customer["id"], result)
    sim.advance_clock(days=8)
    sub["quantity"] = 8
    response = pc.patch(f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}", json=sub)
    assert response.status_code == 400
    assert response.json()["code"] == 800090


def test_cancel_inside_the_window_works_and_after_it_is_900213(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    item = catalog_item(pc, "Power BI Pro")
    first = bought_subscription(pc, customer["id"], buy(pc, customer["id"], [line(item, 3)]))
    second = bought_subscription(pc, customer["id"], buy(pc, customer["id"], [line(item, 4)]))
    first["status"] = "deleted"
    cancelled = pc.patch(f"/v1/customers/{customer['id']}/subscriptions/{first['id']}", json=first)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "deleted"
    sim.advance_clock(days=8)
    second["status"] = "deleted"
    refused = pc.patch(f"/v1/customers/{customer['id']}/subscriptions/{second['id']}", json=second)
    assert refused.status_code == 400 and refused.json()["code"] == 900213


def test_suspended_subscription_refuses_changes_until_reactivated(pc: httpx.Client) -> None:
    customer = new_customer(pc)
    sub = bought_subscription(
        pc, customer["id"], buy(pc, customer["id"], [line(catalog_item(pc, "Visio Plan 2"), 2)])
    )
    url = f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}"
    suspended = pc.patch(url, json={**sub, "status": "suspended"}).json()
    assert suspended["status"] == "suspended" and suspended["autoRenewEnabled"] is False
    refused = pc.patch(url, json={**suspended, "quantity": 3})
    assert refused.status_code == 400 and refused.json()["code"] == 800091
    active = pc.patch(url, json={**suspended, "status": "active"}).json()
    assert active["status"] == "active"
    assert pc.patch(url, json={**active, "quantity": 3}).json()["quantity"] == 3


def test_scheduled_next_term_change_needs_auto_renew(pc: httpx.Client) -> None:
    customer = new_customer(pc)
    item = catalog_item(pc, "Microsoft 365 E3")
    sub = bought_subscription(pc, customer["id"], buy(pc, customer["id"], [line(item, 5)]))
    url = f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}"
    product_id, sku_id, availability_id = item.split(":")
    instructions = {
        "product": {
            "productId": product_id,
            "skuId": sku_id,
            "availabilityId": availability_id,
            "billingCycle": "annual",
            "termDuration": "P1Y",
        },
        "quantity": 7,
    }
    no_renew = pc.patch(url, json={**sub, "autoRenewEnabled": False}).json()
    refused = pc.patch(url, json={**no_renew, "scheduledNextTermInstructions": instructions})
    assert refused.status_code == 400
    renewing = pc.patch(url, json={**no_renew, "autoRenewEnabled": True}).json()
    scheduled = pc.patch(url, json={**renewing, "scheduledNextTermInstructions": instructions})
    assert scheduled.status_code == 200
    assert scheduled.json()["scheduledNextTermInstructions"]["quantity"] == 7


def test_renewal_applies_scheduled_changes_and_opens_a_new_window(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    item = catalog_item(pc, "Microsoft Teams Enterprise")
    sub = bought_subscription(
        pc, customer["id"], buy(pc, customer["id"], [line(item, 5, term="P1M")])
    )
    url = f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}"
    product_id, sku_id, availability_id = item.split(":")
    pc.patch(
        url,
        json={
            **sub,
            "scheduledNextTermInstructions": {
                "product": {
                    "productId": product_id,
                    "skuId": sku_id,
                    "availabilityId": availability_id,
                    "billingCycle": "monthly",
                    "termDuration": "P1Y",
                },
                "quantity": 9,
            },
        },
    ).raise_for_status()
    sim.advance_clock(days=32)
    renewed = pc.get(url).json()
    assert renewed["termDuration"] == "P1Y" and renewed["quantity"] == 9
    assert renewed["scheduledNextTermInstructions"] is None
    assert renewed["refundableQuantity"]["totalQuantity"] == 9


def test_same_request_id_returns_the_first_order_and_creates_one(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    cart = pc.post(
        f"/v1/customers/{customer['id']}/carts",
        json={"lineItems": [line(catalog_item(pc, "Microsoft Teams Essentials"), 4)]},
    ).json()
    request_id = str(uuid.uuid4())
    url = f"/v1/customers/{customer['id']}/carts/{cart['id']}/checkout"
    first = pc.post(url, headers={"MS-RequestId": request_id})
    again = pc.post(url, headers={"MS-RequestId": request_id})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    rows = {c["id"]: c for c in sim.customers(RESELLER)}
    assert rows[customer["id"]]["orders"] == 1
    assert len(sim.requests(request_id=request_id)) == 2


def test_dropped_response_is_recovered_by_retrying_with_the_same_request_id(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    cart = pc.post(
        f"/v1/customers/{customer['id']}/carts",
        json={"lineItems": [line(catalog_item(pc, "Microsoft Intune Plan 1"), 2)]},
    ).json()
    sim.inject_faults(pathPrefix=f"/v1/customers/{customer['id']}/carts", dropRate=1.0, count=1)
    request_id = str(uuid.uuid4())
    url = f"/v1/customers/{customer['id']}/carts/{cart['id']}/checkout"
    with pytest.raises(httpx.TransportError):
        pc.post(url, headers={"MS-RequestId": request_id})
    retried = pc.post(url, headers={"MS-RequestId": request_id})
    assert retried.status_code == 201 and len(retried.json()["orders"]) == 1
    assert len(pc.get(f"/v1/customers/{customer['id']}/orders").json()["items"]) == 1


@pytest.mark.parametrize("phase", ["after", "before"])
def test_timed_out_checkout_retried_with_the_same_request_id_places_one_order(
    sim: SimulatorHandle, pc: httpx.Client, phase: str
) -> None:
    customer = new_customer(pc)
    cart = pc.post(
        f"/v1/customers/{customer['id']}/carts",
        json={"lineItems": [line(catalog_item(pc, "Microsoft Intune Plan 1"), 2)]},
    ).json()
    sim.inject_faults(
        pathPrefix=f"/v1/customers/{customer['id']}/carts",
        timeoutRate=1.0,
        timeoutMs=1500,
        timeoutPhase=phase,
        count=1,
    )
    request_id = str(uuid.uuid4())
    url = f"/v1/customers/{customer['id']}/carts/{cart['id']}/checkout"
    with pytest.raises(httpx.TimeoutException):
        pc.post(url, headers={"MS-RequestId": request_id}, timeout=0.5)
    if phase == "after":  # carried out although the caller never heard
        assert len(pc.get(f"/v1/customers/{customer['id']}/orders").json()["items"]) == 1
    retried = pc.post(url, headers={"MS-RequestId": request_id})
    assert retried.status_code == 201 and len(retried.json()["orders"]) == 1
    time.sleep(1.2)  # let a held-back request finish
    assert len(pc.get(f"/v1/customers/{customer['id']}/orders").json()["items"]) == 1
    assert next(r["fault"] for r in sim.requests(request_id=request_id)) == f"timeout-{phase}"


def test_checkout_reports_line_errors_per_order_group(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    basic = catalog_item(pc, "Microsoft 365 Business Basic")
    phone = catalog_item(pc, "Microsoft Teams Phone Standard")
    result = buy(
        pc,
        customer["id"],
        [
            line("CFQ7TTC0XXXX:0001:CFQ7TTC0YYYY", 1, orderGroup="1"),
            line(basic, 301, orderGroup="2"),
            line(phone, 2, orderGroup="3"),
            line(basic, 10, orderGroup="4"),
        ],
    )
    errors = {e["orderGroupId"]: e for e in result["orderErrors"]}
    assert errors["1"]["code"] == 10001
    assert errors["2"]["code"] == 10015 and errors["2"]["availableQuantity"] == 300
    assert errors["3"]["code"] == 400041
    assert len(result["orders"]) == 1
    # Business SKUs count across the tenant: 10 seats used, 290 left.
    more = buy(pc, customer["id"], [line(basic, 291)])
    assert more["orderErrors"][0]["code"] == 10015
    assert more["orderErrors"][0]["availableQuantity"] == 290
    # With a prerequisite on the tenant the add-on goes through and hangs under its base.
    phone_order = buy(pc, customer["id"], [line(phone, 2)])
    base_id = result["orders"][0]["lineItems"][0]["subscriptionId"]
    addons = pc.get(f"/v1/customers/{customer['id']}/subscriptions/{base_id}/addons").json()
    assert [a["id"] for a in addons["items"]] == [
        phone_order["orders"][0]["lineItems"][0]["subscriptionId"]
    ]


def test_education_offer_needs_an_approved_qualification(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    item = catalog_item(pc, "Microsoft 365 A3 for faculty", segment="education")
    refused = buy(pc, customer["id"], [line(item, 5)])
    assert refused["orderErrors"][0]["code"] in (800073, 800074, 800075)
    sim.set_qualification(customer["id"], "education", "approved")
    assert buy(pc, customer["id"], [line(item, 5)])["orderErrors"] == []


def test_cart_lives_seven_days_then_checkout_is_refused_as_expired(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    item = catalog_item(pc, "Project Plan 1")
    carts = f"/v1/customers/{customer['id']}/carts"
    kept = pc.post(carts, json={"lineItems": [line(item, 1)]}).json()
    expiring = pc.post(carts, json={"lineItems": [line(item, 1)]}).json()
    sim.advance_clock(days=6, hours=23)
    assert pc.put(f"{carts}/{kept['id']}", json={"lineItems": [line(item, 2)]}).status_code == 200
    assert pc.post(f"{carts}/{kept['id']}/checkout").status_code == 201
    sim.advance_clock(hours=1)
    response = pc.post(f"{carts}/{expiring['id']}/checkout")
    assert response.status_code == 400
    assert "expired" in response.json()["description"]


def test_second_checkout_of_a_cart_repeats_the_first_result_without_a_new_order(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    cart = pc.post(
        f"/v1/customers/{customer['id']}/carts",
        json={"lineItems": [line(catalog_item(pc, "Microsoft Teams Essentials"), 4)]},
    ).json()
    url = f"/v1/customers/{customer['id']}/carts/{cart['id']}/checkout"
    # Different MS-RequestIds: the cart id alone makes the checkout idempotent.
    first = pc.post(url, headers={"MS-RequestId": str(uuid.uuid4())})
    again = pc.post(url, headers={"MS-RequestId": str(uuid.uuid4())})
    assert first.status_code == again.status_code == 201, again.text
    assert [o["id"] for o in again.json()["orders"]] == [o["id"] for o in first.json()["orders"]]
    assert again.json()["orders"][0]["lineItems"] == first.json()["orders"][0]["lineItems"]
    assert len(pc.get(f"/v1/customers/{customer['id']}/orders").json()["items"]) == 1
    assert len(pc.get(f"/v1/customers/{customer['id']}/subscriptions").json()["items"]) == 1


def test_new_tenant_accepts_orders_only_after_provisioning(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    sim.configure(customerProvisioningSeconds=600)
    customer = new_customer(pc)
    lines = {"lineItems": [line(catalog_item(pc, "Microsoft Entra ID P1"), 1)]}
    assert pc.post(f"/v1/customers/{customer['id']}/carts", json=lines).status_code == 409
    sim.advance_clock(minutes=11)
    assert pc.post(f"/v1/customers/{customer['id']}/carts", json=lines).status_code == 201


def test_trial_converts_to_paid_through_a_transition(pc: httpx.Client) -> None:
    customer = new_customer(pc)
    trial_item = catalog_item(pc, "Microsoft 365 Business Premium", sku_id="0002")
    trial = bought_subscription(
        pc,
        customer["id"],
        buy(pc, customer["id"], [line(trial_item, 25, term="P1M", cycle="none")]),
    )
    assert trial["isTrial"] is True and trial["billingCycle"] == "none"
    base = f"/v1/customers/{customer['id']}/subscriptions/{trial['id']}"
    eligibilities = pc.get(
        f"{base}/transitionEligibilities", params={"eligibilityType": "immediate"}
    ).json()
    target = eligibilities["items"][0]
    assert target["eligibilities"][0]["isEligible"] is True
    transition = pc.post(
        f"{base}/transitions",
        json={
            "toCatalogItemId": target["catalogItemId"],
            "quantity": 25,
            "termDuration": "P1Y",
            "billingCycle": "monthly",
            "transitionType": "transition_only",
        },
    )
    assert transition.status_code == 200, transition.text
    paid = pc.get(
        f"/v1/customers/{customer['id']}/subscriptions/{transition.json()['toSubscriptionId']}"
    ).json()
    assert paid["isTrial"] is False and paid["quantity"] == 25 and paid["termDuration"] == "P1Y"
    assert pc.get(base).json()["status"] != "active"
    # One trial per customer and offer.
    again = buy(pc, customer["id"], [line(trial_item, 25, term="P1M", cycle="none")])
    assert again["orderErrors"]


def test_slow_patch_answers_202_with_a_location_to_poll(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    sub = bought_subscription(
        pc, customer["id"], buy(pc, customer["id"], [line(catalog_item(pc, "Office 365 E3"), 3)])
    )
    sim.configure(asyncPatch=True, asyncPatchSeconds=60)
    url = f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}"
    accepted = pc.patch(url, json={**sub, "quantity": 6})
    assert accepted.status_code == 202
    location = accepted.headers["Location"]
    assert pc.get(location).json()["status"] == "inProgress"
    assert pc.get(url).json()["quantity"] == 3
    sim.advance_clock(minutes=2)
    assert pc.get(location).json()["status"] == "succeeded"
    assert pc.get(url).json()["quantity"] == 6


def test_if_match_with_a_stale_etag_is_412(pc: httpx.Client) -> None:
    customer = new_customer(pc)
    sub_response = pc.get(
        f"/v1/customers/{customer['id']}/subscriptions/"
        + bought_subscription(
            pc,
            customer["id"],
            buy(pc, customer["id"], [line(catalog_item(pc, "Office 365 E1"), 3)]),
        )["id"]
    )
    etag = sub_response.headers["ETag"]
    sub = sub_response.json()
    url = f"/v1/customers/{customer['id']}/subscriptions/{sub['id']}"
    assert pc.patch(url, json={**sub, "quantity": 4}, headers={"If-Match": etag}).status_code == 200
    stale = pc.patch(url, json={**sub, "quantity": 5}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["code"] == 2055  # Partner Center's "Etag is no longer valid"


def test_subscribed_skus_report_assigned_licences(sim: SimulatorHandle, pc: httpx.Client) -> None:
    customer = new_customer(pc)
    sub = bought_subscription(
        pc,
        customer["id"],
        buy(pc, customer["id"], [line(catalog_item(pc, "Exchange Online (Plan 2)"), 10)]),
    )
    sim.set_consumed_units(customer["id"], sub["id"], 7)
    skus = pc.get(f"/v1/customers/{customer['id']}/subscribedskus").json()["items"]
    assert skus[0]["consumedUnits"] == 7 and skus[0]["activeUnits"] == 10
    assert skus[0]["availableUnits"] == 3
    assert skus[0]["productSku"]["skuPartNumber"] == "EXCHANGEENTERPRISE"


def test_azure_utilization_is_deterministic_and_paged(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    customer = new_customer(pc)
    products = pc.get("/v1/products", params={"country": "CZ", "targetView": "Azure"}).json()[
        "items"
    ]
    plan = pc.get(
        f"/v1/products/{products[0]['id']}/skus/0001/availabilities", params={"country": "CZ"}
    )
    item = plan.json()["items"][0]["catalogItemId"]
    result = buy(
        pc, customer["id"], [{"catalogItemId": item, "quantity": 1, "billingCycle": "monthly"}]
    )
    sub_id = result["orders"][0]["lineItems"][0]["subscriptionId"]
    url = f"/v1/customers/{customer['id']}/subscriptions/{sub_id}/utilizations/azure"
    params = {
        "start_time": "2025-01-01T00:00:00Z",
        "end_time": "2025-01-31T00:00:00Z",
        "granularity": "daily",
        "size": 20,
    }
    first = pc.get(url, params=params).json()
    assert first["totalCount"] == 20
    assert first == pc.get(url, params=params).json()
    records = list(first["items"])
    page = first
    while "next" in page.get("links", {}):
        token = page["links"]["next"]["headers"][0]["value"]
        page = pc.get(
            url, params={"seekOperation": "next"}, headers={"MS-ContinuationToken": token}
        ).json()
        records += page["items"]
    days = {r["usageStartTime"][:10] for r in records}
    assert len(days) == 30
    assert {"id", "name", "category", "subcategory", "region"} <= set(records[0]["resource"])


def test_audit_records_list_what_changed(pc: httpx.Client) -> None:
    customer = new_customer(pc)
    buy(pc, customer["id"], [line(catalog_item(pc, "Microsoft Defender for Business"), 2)])
    records = pc.get("/v1/auditrecords").json()["items"]
    operations = {r["operationType"] for r in records if r["customerId"] == customer["id"]}
    assert {"add_customer", "create_order"} <= operations


# ----------------------------------------------------------------- catalog and prices


def test_catalog_has_terms_segments_and_addon_relations(pc: httpx.Client) -> None:
    products = pc.get("/v1/products", params={"country": "CZ"}).json()["items"]
    assert len(products) >= 30
    basic = next(p for p in products if p["title"] == "Microsoft 365 Business Basic")
    skus = pc.get(f"/v1/products/{basic['id']}/skus", params={"country": "CZ"}).json()["items"]
    paid = next(s for s in skus if not s["isTrial"])
    trial = next(s for s in skus if s["isTrial"])
    assert paid["maximumQuantity"] == 300
    assert trial["minimumQuantity"] == 25 and trial["supportedBillingCycles"] == ["none"]
    availability = pc.get(
        f"/v1/products/{basic['id']}/skus/0001/availabilities", params={"country": "CZ"}
    ).json()["items"][0]
    assert availability["catalogItemId"].count(":") == 2
    assert {t["duration"] for t in availability["terms"]} == {"P1M", "P1Y"}
    assert availability["terms"][0]["cancellationPolicies"]
    education = pc.get(
        "/v1/products", params={"country": "CZ", "targetSegment": "education"}
    ).json()
    assert any(p["title"] == "Microsoft 365 A3 for faculty" for p in education["items"])
    assert pc.get("/v1/products").status_code == 400  # country is required


def test_price_sheet_monthly_term_costs_20_percent_more(pc: httpx.Client) -> None:
    response = pc.get(
        "/v1.0/sales/pricesheets(Market='CZ',PricesheetView='updatedlicensebased')/$value"
    )
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["Currency"] for r in rows} == {"CZK", "EUR"}
    prices: dict[tuple[str, str, str, str, str, str], tuple[Decimal, Decimal]] = {}
    for r in rows:
        key = (
            r["ProductId"],
            r["SkuId"],
            r["Currency"],
            r["Segment"],
            r["TermDuration"],
            r["BillingPlan"],
        )
        prices[key] = (Decimal(r["UnitPrice"]), Decimal(r["ERP Price"]))
    checked = 0
    for (product, sku, currency, segment, term, _plan), (unit, erp) in prices.items():
        if term != "P1M":
            continue
        annual = prices[(product, sku, currency, segment, "P1Y", "Monthly")]
        assert unit == annual[0] * Decimal("1.2") and erp == annual[1] * Decimal("1.2")
        assert unit < erp
        checked += 1
    assert checked > 50


# ----------------------------------------------------------------- faults and throttling


def test_injected_throttling_answers_429_with_retry_after(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    sim.inject_faults(pathPrefix="/v1/customers", throttleRate=1.0, retryAfterSeconds=7, count=2)
    for _ in range(2):
        response = pc.get("/v1/customers")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json() == {
            "statusCode": 429,
            "message": "Rate limit is exceeded. Try again in 7 seconds.",
        }
    assert pc.get("/v1/customers").status_code == 200


def test_rate_limit_per_partner_refuses_the_request_over_the_limit(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    sim.configure(rateLimitPerMinute=5)
    statuses = [pc.get("/v1/customers").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = pc.get("/v1/customers")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_injected_errors_and_latency_only_hit_the_scoped_path(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    sim.inject_faults(pathPrefix="/v1/customers", errorRate=1.0, errorStatus=503, count=1)
    sim.inject_faults(pathPrefix="/v1/products", latencyMs=300, count=1)
    assert pc.get("/v1/customers").status_code == 503
    assert pc.get("/v1/customers").status_code == 200
    started = time.perf_counter()
    assert pc.get("/v1/products", params={"country": "CZ"}).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_unknown_path_is_a_json_404(pc: httpx.Client) -> None:
    response = pc.get("/v1/no/such/thing")
    assert response.status_code == 404
    assert {"code", "description"} <= set(response.json())


# ----------------------------------------------------------------- scale


def test_seeding_10000_customers_with_3_subscriptions_each(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    started = time.perf_counter()
    result = sim.seed(10_000, reseller_id=RESELLER, subscriptions_per_customer=3, seed=7)
    elapsed = time.perf_counter() - started
    print(f"seeded 10,000 customers in {elapsed:.2f} s (server side {result['seconds']} s)")
    assert result["customers"] == 10_000 and result["subscriptions"] == 30_000
    flt = json.dumps({"Field": "IndirectReseller", "Value": RESELLER, "Operator": "starts_with"})
    page = pc.get("/v1/customers", params={"size": 500, "filter": flt}).json()
    assert page["totalCount"] == 500
    seen = len(page["items"])
    while "next" in page.get("links", {}):
        token = page["continuationToken"]
        page = pc.get(
            "/v1/customers",
            params={"size": 500, "seekOperation": "next"},
            headers={"MS-ContinuationToken": token},
        ).json()
        seen += len(page["items"])
    assert seen == 10_000


# ----------------------------------------------------------------- indirect resellers


def test_relationships_list_the_demo_resellers_in_microsofts_shape(pc: httpx.Client) -> None:
    response = pc.get(
        "/v1/relationships", params={"relationship_type": "IsIndirectCloudSolutionProviderOf"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalCount"] == len(body["items"]) >= 2
    assert body["attributes"]["objectType"] == "Collection"
    demo = next(r for r in body["items"] if r["id"] == "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10")
    assert demo == {
        "id": "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10",
        "name": "Demo Reseller s.r.o.",
        "relationshipType": "IsIndirectCloudSolutionProviderOf",
        "state": "Active",
        "mpnId": "6412345",
        "location": "CZ",
        "attributes": {"objectType": "PartnerRelationship"},
    }


def test_relationships_need_app_user_credentials(sim: SimulatorHandle) -> None:
    with sim.client(headers={"Authorization": f"Bearer {sim.token()}"}) as app_only:
        response = app_only.get(
            "/v1/relationships",
            params={"relationship_type": "IsIndirectCloudSolutionProviderOf"},
        )
    assert response.status_code == 403


def test_relationships_without_the_type_are_a_bad_request(pc: httpx.Client) -> None:
    assert pc.get("/v1/relationships").status_code == 400


def test_a_reseller_added_to_the_simulator_is_listed_and_reset_keeps_only_the_demo_ones(
    sim: SimulatorHandle, pc: httpx.Client
) -> None:
    tenant_id = str(uuid.uuid4())
    sim.add_reseller(tenant_id, "5550001", "Added a.s.")
    query = {"relationship_type": "isindirectcloudsolutionproviderof"}
    ids = {r["id"]: r["mpnId"] for r in pc.get("/v1/relationships", params=query).json()["items"]}
    assert ids[tenant_id] == "5550001"
    sim.reset()
    ids = {r["id"] for r in pc.get("/v1/relationships", params=query).json()["items"]}
    assert tenant_id not in ids and len(ids) == 2
