"""The Partner Center simulator over HTTPS, driven with raw httpx as Partner Center documents."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
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


def test_customer_creation_needs_app_user_credentials(sim: SimulatorHandle) -> None:
    with sim.client(headers={"Authorization": f"Bearer {sim.token()}"}) as app_only:
        response = app_only.post("/v1/customers", json={})
    assert response.status_code == 403


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


def test_cart_expires_after_the_configured_time(sim: SimulatorHandle, pc: httpx.Client) -> None:
    customer = new_customer(pc)
    cart = pc.post(
        f"/v1/customers/{customer['id']}/carts",
        json={"lineItems": [line(catalog_item(pc, "Project Plan 1"), 1)]},
    ).json()
    sim.advance_clock(minutes=16)
    response = pc.post(f"/v1/customers/{customer['id']}/carts/{cart['id']}/checkout")
    assert response.status_code == 400
    assert "expired" in response.json()["description"]


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
    target = eligibilities["items"][0]["eligibilities"][0]
    assert target["isEligible"] is True
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
    assert transition.status_code == 201, transition.text
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
    assert pc.patch(url, json={**sub, "quantity": 5}, headers={"If-Match": etag}).status_code == 412


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
    records = pc.get("/v1/auditrecords", params={"startDate": "2000-01-01"}).json()["items"]
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
