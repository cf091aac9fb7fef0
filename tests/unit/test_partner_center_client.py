"""The Partner Center client against httpx.MockTransport: headers, retries, errors, paging."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.adapters.partner_center import (
    PartnerCenterClient,
    PartnerCenterTransport,
    RetryPolicy,
    build_partner_center,
)
from shared.adapters.partner_center.auth import PartnerCenterSignInFailed
from shared.adapters.partner_center.client import DEFAULT_SCOPE
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
    Transition,
)
from shared.config import Settings
from shared.domain.errors import (
    ConcurrencyConflict,
    NotFound,
    Throttled,
    UpstreamRejected,
    UpstreamUnavailable,
)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class StaticTokens:
    """Tokens without msal; records whether app+user was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.forgotten: list[tuple[str, bool]] = []

    def access_token(self, scope: str, *, user: bool = False) -> str:
        self.calls.append((scope, user))
        return "user-token" if user else "app-token"

    def forget(self, scope: str, *, user: bool = False) -> None:
        self.forgotten.append((scope, user))


class Recorder:
    """A MockTransport handler that answers from a script and keeps every request."""

    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.script = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        if callable(item) and not isinstance(item, httpx.Response):
            return item(request)
        return item


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    retry: RetryPolicy | None = None,
    time: FakeTime | None = None,
    tokens: StaticTokens | None = None,
) -> tuple[PartnerCenterClient, FakeTime]:
    time = time or FakeTime()
    http = httpx.Client(base_url="https://pc.test", transport=httpx.MockTransport(handler))
    transport = PartnerCenterTransport(
        http,
        tokens or StaticTokens(),
        retry=retry or RetryPolicy(max_attempts=5, max_elapsed_seconds=600),
        sleep=time.sleep,
        clock=time.clock,
        jitter=lambda: 1.0,
    )
    client = PartnerCenterClient(
        transport,
        price_sheet_base_url="https://prices.test",
        poll_interval_seconds=2.0,
        poll_timeout_seconds=60.0,
    )
    return client, time


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def customer_json(n: int) -> dict[str, Any]:
    return {
        "id": f"c-{n}",
        "companyProfile": {"domain": f"c{n}.onmicrosoft.com", "companyName": f"Company {n}"},
        "attributes": {"objectType": "Customer"},
    }


SUBSCRIPTION = {
    "id": "s-1",
    "offerId": "CFQ7TTC0LH18:0001:CFQ7TTC0LH18",
    "quantity": 5,
    "status": "active",
    "autoRenewEnabled": True,
    "billingCycle": "monthly",
    "termDuration": "P1Y",
    "commitmentEndDate": "2025-01-31T00:00:00Z",
    "refundableQuantity": {
        "totalQuantity": 5,
        "details": [{"quantity": 5, "allowedUntilDateTime": "2024-02-08T10:00:00Z"}],
    },
    "someFutureField": {"kept": True},
    "attributes": {"etag": "W/etag-1", "objectType": "Subscription"},
}


# --- headers and idempotency -----------------------------------------------------------------


def test_every_call_carries_partner_center_headers() -> None:
    recorder = Recorder(ok(customer_json(1)))
    client, _ = make_client(recorder)

    customer = client.get_customer("c-1")

    assert customer.id == "c-1"
    assert customer.company_profile is not None
    assert customer.company_profile.domain == "c1.onmicrosoft.com"
    request = recorder.requests[0]
    assert request.url.path == "/v1/customers/c-1"
    assert request.headers["Authorization"] == "Bearer app-token"
    assert request.headers["MS-Contract-Version"] == "v1"
    assert request.headers["X-Locale"] == "en-US"
    assert request.headers["Accept"] == "application/json"
    uuid.UUID(request.headers["MS-RequestId"])
    uuid.UUID(request.headers["MS-CorrelationId"])


def test_each_logical_call_gets_a_new_request_id() -> None:
    recorder = Recorder(ok(customer_json(1)))
    client, _ = make_client(recorder)

    client.get_customer("c-1")
    client.get_customer("c-1")

    first, second = recorder.requests
    assert first.headers["MS-RequestId"] != second.headers["MS-RequestId"]
    assert first.headers["MS-CorrelationId"] != second.headers["MS-CorrelationId"]


def test_retries_of_one_call_reuse_its_request_id() -> None:
    recorder = Recorder(
        httpx.ReadTimeout("slow"),
        httpx.Response(503),
        ok(customer_json(7), status=201),
    )
    client, time = make_client(recorder)

    created = client.create_customer(Customer(company_profile=CompanyProfile(domain="x")))

    assert created.id == "c-7"
    ids = {r.headers["MS-RequestId"] for r in recorder.requests}
    correlations = {r.headers["MS-CorrelationId"] for r in recorder.requests}
    assert len(recorder.requests) == 3
    assert len(ids) == 1
    assert len(correlations) == 1
    assert len(time.sleeps) == 2


def test_caller_supplied_request_id_is_sent_on_every_attempt() -> None:
    recorder = Recorder(httpx.ConnectError("refused"), ok({"orders": [{"id": "o-1"}]}, 201))
    client, _ = make_client(recorder)

    result = client.checkout("c-1", "cart-1", request_id="11111111-2222-3333-4444-555555555555")

    assert [o.id for o in result.orders] == ["o-1"]
    assert {r.headers["MS-RequestId"] for r in recorder.requests} == {
        "11111111-2222-3333-4444-555555555555"
    }
    assert recorder.requests[0].url.path == "/v1/customers/c-1/carts/cart-1/checkout"


def _answer(request: httpx.Request) -> httpx.Response:
    """A plausible Partner Center answer for any path the credential table covers."""
    path = request.url.path
    if request.url.host == "prices.test":
        return httpx.Response(200, text="Market,ProductId\n")
    if path.startswith("/v1/domains/"):
        return httpx.Response(404)
    if path.endswith("/relationshiprequests"):
        return ok({"url": "https://admin.microsoft.com/accept?x=1"})
    if path.endswith("/checkout"):
        return ok({"orders": [], "orderErrors": []}, 201)
    if path.endswith("/carts") or (path.endswith("/transitions") and request.method == "POST"):
        return ok({"id": "x-1"}, 201)
    if request.method == "POST":
        return ok(customer_json(1), 201)
    if request.method == "PATCH" or ("/subscriptions/s-1" in path and path.endswith("s-1")):
        return ok(SUBSCRIPTION)
    if path.startswith("/v1/products/p-1") and path.endswith("p-1"):
        return ok({"id": "p-1", "title": "P"})
    if path.startswith("/v1/customers/c-1/orders/o-1") and path.endswith("o-1"):
        return ok({"id": "o-1"})
    if path == "/v1/customers/c-1":
        return ok(customer_json(1))
    return ok({"totalCount": 0, "items": []})


def _indirect_customer() -> Customer:
    return Customer(company_profile=CompanyProfile(domain="x"), associated_partner_id="r-tenant")


# Every client operation with whether Microsoft documents it as "App+User only" (REFERENCE.md,
# "Credentials per operation"); the client must use app-only everywhere else.
CREDENTIALS: list[tuple[str, Callable[[PartnerCenterClient], Any], bool]] = [
    ("create indirect reseller customer", lambda c: c.create_customer(_indirect_customer()), True),
    (
        "list indirect reseller customers",
        lambda c: list(c.list_customers(indirect_reseller_id="r")),
        True,
    ),
    ("relationship request link", lambda c: c.get_relationship_request_link(), True),
    ("order provisioning status", lambda c: c.get_order_provisioning_status("c-1", "o-1"), True),
    ("subscribed skus", lambda c: c.list_subscribed_skus("c-1"), True),
    ("price sheet", lambda c: list(c.get_price_sheet("CZ")), True),
    (
        "create direct customer",
        lambda c: c.create_customer(Customer(company_profile=CompanyProfile(domain="x"))),
        False,
    ),
    ("list customers", lambda c: list(c.list_customers()), False),
    ("get customer", lambda c: c.get_customer("c-1"), False),
    ("domain check", lambda c: c.is_domain_available("x.onmicrosoft.com"), False),
    ("list products", lambda c: c.list_products("CZ", "OnlineServices"), False),
    ("get product", lambda c: c.get_product("p-1", "CZ"), False),
    ("list skus", lambda c: c.list_skus("p-1", "CZ"), False),
    ("list availabilities", lambda c: c.list_availabilities("p-1", "s-1", "CZ"), False),
    ("create cart", lambda c: c.create_cart("c-1", Cart(line_items=[])), False),
    ("checkout", lambda c: c.checkout("c-1", "cart-1"), False),
    ("get order", lambda c: c.get_order("c-1", "o-1"), False),
    ("list orders", lambda c: c.list_orders("c-1"), False),
    ("list subscriptions", lambda c: c.list_subscriptions("c-1"), False),
    ("get subscription", lambda c: c.get_subscription("c-1", "s-1"), False),
    ("change seats (PATCH)", lambda c: c.set_subscription_quantity("c-1", "s-1", 6), False),
    ("suspend (PATCH)", lambda c: c.suspend_subscription("c-1", "s-1"), False),
    ("transition eligibilities", lambda c: c.list_transition_eligibilities("c-1", "s-1"), False),
    (
        "create transition",
        lambda c: c.create_transition(
            "c-1",
            "s-1",
            Transition(to_catalog_item_id="a:b:c", quantity=1, transition_type="transition_only"),
        ),
        False,
    ),
    ("list add-ons", lambda c: c.list_addons("c-1", "s-1"), False),
    (
        "azure utilization",
        lambda c: list(
            c.list_azure_utilization(
                "c-1", "s-1", datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
            )
        ),
        False,
    ),
    (
        "audit records",
        lambda c: list(c.list_audit_records(datetime(2025, 1, 1, tzinfo=UTC))),
        False,
    ),
]


@pytest.mark.parametrize(
    ("operation", "call", "app_user_only"), CREDENTIALS, ids=[c[0] for c in CREDENTIALS]
)
def test_each_operation_signs_in_app_only_unless_microsoft_requires_a_user(
    operation: str, call: Callable[[PartnerCenterClient], Any], app_user_only: bool
) -> None:
    tokens = StaticTokens()
    recorder = Recorder(_answer)
    client, _ = make_client(recorder, tokens=tokens)

    call(client)

    assert tokens.calls, operation
    assert {user for _scope, user in tokens.calls} == {app_user_only}
    expected = "Bearer user-token" if app_user_only else "Bearer app-token"
    assert {r.headers["Authorization"] for r in recorder.requests} == {expected}


def test_token_outage_is_retried_like_any_transient_failure() -> None:
    class FlakyTokens(StaticTokens):
        def access_token(self, scope: str, *, user: bool = False) -> str:
            if not self.calls:
                self.calls.append((scope, user))
                raise UpstreamUnavailable("token endpoint down")
            return super().access_token(scope, user=user)

    recorder = Recorder(ok(customer_json(1)))
    client, time = make_client(recorder, tokens=FlakyTokens())

    assert client.get_customer("c-1").id == "c-1"
    assert len(time.sleeps) == 1


# --- throttling and backoff ------------------------------------------------------------------


def test_throttled_call_waits_retry_after_then_succeeds() -> None:
    throttled = httpx.Response(
        429,
        json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 7 seconds."},
        headers={"Retry-After": "7"},
    )
    recorder = Recorder(throttled, ok(customer_json(1)))
    client, time = make_client(recorder)

    assert client.get_customer("c-1").id == "c-1"
    assert time.sleeps == [7.0]
    assert len({r.headers["MS-RequestId"] for r in recorder.requests}) == 1


def test_persistent_throttling_backs_off_beyond_retry_after() -> None:
    throttled = httpx.Response(429, headers={"Retry-After": "1"})
    recorder = Recorder(throttled, throttled, throttled, ok(customer_json(1)))
    retry = RetryPolicy(max_attempts=5, backoff_base_seconds=1, backoff_cap_seconds=30)
    client, time = make_client(recorder, retry=retry)

    client.get_customer("c-1")

    assert time.sleeps == [1.0, 2.0, 4.0]


def test_server_errors_back_off_exponentially_up_to_the_cap() -> None:
    recorder = Recorder(*[httpx.Response(500)] * 6, ok(customer_json(1)))
    retry = RetryPolicy(
        max_attempts=10, max_elapsed_seconds=600, backoff_base_seconds=1, backoff_cap_seconds=5
    )
    client, time = make_client(recorder, retry=retry)

    client.get_customer("c-1")

    assert time.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_jitter_keeps_delay_between_half_and_full_backoff() -> None:
    retry = RetryPolicy(backoff_base_seconds=2, backoff_cap_seconds=10)
    assert retry.backoff(1, 0.0) == 1.0
    assert retry.backoff(1, 1.0) == 2.0
    assert retry.backoff(3, 0.5) == pytest.approx(6.0)
    assert retry.backoff(10, 1.0) == 10.0


def test_giving_up_after_max_attempts_is_upstream_unavailable() -> None:
    recorder = Recorder(httpx.Response(502))
    client, time = make_client(recorder, retry=RetryPolicy(max_attempts=3))

    with pytest.raises(UpstreamUnavailable) as caught:
        client.get_customer("c-1")

    assert len(recorder.requests) == 3
    assert len(time.sleeps) == 2
    assert caught.value.retry_after is not None
    assert not isinstance(caught.value, Throttled)  # a failure, not the rate limit


def test_retry_after_beyond_the_time_budget_fails_fast_with_retry_after() -> None:
    throttled = httpx.Response(429, headers={"Retry-After": "57"})
    recorder = Recorder(throttled)
    client, time = make_client(recorder, retry=RetryPolicy(max_elapsed_seconds=30))

    with pytest.raises(Throttled) as caught:
        client.get_customer("c-1")

    assert time.sleeps == []
    assert caught.value.retry_after == 57.0


def test_timeouts_and_dropped_connections_are_retried() -> None:
    recorder = Recorder(
        httpx.ConnectTimeout("connect"),
        httpx.RemoteProtocolError("peer closed connection"),
        ok(customer_json(1)),
    )
    client, time = make_client(recorder)

    assert client.get_customer("c-1").id == "c-1"
    assert len(time.sleeps) == 2


# --- error mapping ---------------------------------------------------------------------------


def test_business_rule_refusal_becomes_upstream_rejected_with_code() -> None:
    body = {
        "code": 800090,
        "description": "Subscription quantity cannot be decreased.",
        "errorName": "QuantityDecreaseNotAllowed",
        "data": [],
        "source": "PartnerAPIs",
    }
    recorder = Recorder(ok(SUBSCRIPTION), httpx.Response(400, json=body))
    client, time = make_client(recorder)

    with pytest.raises(UpstreamRejected) as caught:
        client.set_subscription_quantity("c-1", "s-1", 2)

    assert caught.value.code == "800090"
    assert caught.value.status == 400
    assert "cannot be decreased" in caught.value.detail
    assert time.sleeps == []


def test_a_refused_token_is_dropped_and_the_call_retried_once_with_a_new_one() -> None:
    tokens = StaticTokens()
    recorder = Recorder(httpx.Response(401, json={"code": 600000}), httpx.Response(200, json={}))
    client, time = make_client(recorder, tokens=tokens)

    client.list_orders("c-1")

    assert tokens.forgotten == [(DEFAULT_SCOPE, False)]
    assert len(recorder.requests) == 2 and time.sleeps == []


@pytest.mark.parametrize(
    ("answers", "calls"),
    [((401, 401), 2), ((403,), 1)],
    ids=["token refused again", "forbidden"],
)
def test_auth_refusals_are_a_sign_in_outage_queue_steps_retry(
    answers: tuple[int, ...], calls: int, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(*(httpx.Response(s, json={"code": 600000}) for s in answers))
    client, _ = make_client(recorder)

    with pytest.raises(PartnerCenterSignInFailed) as caught:
        client.list_orders("c-1")

    assert isinstance(caught.value, UpstreamUnavailable) and not isinstance(
        caught.value, UpstreamRejected
    )
    assert len(recorder.requests) == calls
    assert any(r.levelname == "ERROR" and "sign-in failing" in r.message for r in caplog.records)


def test_missing_resource_is_not_found() -> None:
    body = {"code": 600006, "description": "Customer not found"}
    client, _ = make_client(Recorder(httpx.Response(404, json=body)))

    with pytest.raises(NotFound):
        client.get_customer("nope")


def test_conflict_keeps_partner_center_code() -> None:
    body = {"code": 800002, "description": "Domain already exists"}
    client, _ = make_client(Recorder(httpx.Response(409, json=body)))

    with pytest.raises(UpstreamRejected) as caught:
        client.create_customer(Customer())

    assert (caught.value.code, caught.value.status) == ("800002", 409)


def test_renewal_in_progress_is_transient() -> None:
    body = {"code": 800082, "description": "Renewal in progress"}
    recorder = Recorder(ok(SUBSCRIPTION), httpx.Response(409, json=body))
    client, _ = make_client(recorder, retry=RetryPolicy(max_attempts=2))

    with pytest.raises(UpstreamUnavailable):
        client.set_auto_renew("c-1", "s-1", False)

    assert len(recorder.requests) == 3  # the read, then the PATCH twice


def test_etag_mismatch_is_a_concurrency_conflict() -> None:
    recorder = Recorder(ok(SUBSCRIPTION), httpx.Response(412, json={"code": 412}))
    client, _ = make_client(recorder)

    with pytest.raises(ConcurrencyConflict):
        client.suspend_subscription("c-1", "s-1")


def test_non_json_error_body_still_maps() -> None:
    client, _ = make_client(Recorder(httpx.Response(400, text="<html>Bad Request</html>")))

    with pytest.raises(UpstreamRejected) as caught:
        client.get_order("c-1", "o-1")

    assert caught.value.code is None
    assert "Bad Request" in caught.value.detail


# --- domains ---------------------------------------------------------------------------------


def test_domain_check_reads_200_as_taken_and_404_as_free() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "HEAD"
        taken = request.url.path.endswith("/taken.onmicrosoft.com")
        return httpx.Response(200 if taken else 404)

    client, _ = make_client(handler)

    assert client.is_domain_available("taken.onmicrosoft.com") is False
    assert client.is_domain_available("free.onmicrosoft.com") is True


# --- paging ----------------------------------------------------------------------------------


def test_customer_listing_follows_continuation_tokens() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("MS-ContinuationToken")
        if token is None:
            assert "seekOperation" not in request.url.params
            return ok(
                {
                    "totalCount": 3,
                    "items": [customer_json(1), customer_json(2)],
                    "continuationToken": "page-2",
                }
            )
        assert request.url.params["seekOperation"] == "next"
        assert token == "page-2"
        return ok({"totalCount": 3, "items": [customer_json(3)]})

    recorder = Recorder(handler)
    client, _ = make_client(recorder)

    ids = [c.id for c in client.list_customers(page_size=2)]

    assert ids == ["c-1", "c-2", "c-3"]
    assert recorder.requests[0].url.params["size"] == "2"
    assert len(recorder.requests) == 2


def test_listing_is_lazy() -> None:
    recorder = Recorder(ok({"items": [customer_json(1)], "continuationToken": "more"}))
    client, _ = make_client(recorder)

    iterator = client.list_customers()
    assert recorder.requests == []
    next(iterator)
    assert len(recorder.requests) == 1


def test_token_in_links_next_headers_is_followed() -> None:
    first = {
        "items": [customer_json(1)],
        "links": {
            "next": {
                "uri": "/customers?size=500&seekOperation=Next",
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": "tok"}],
            }
        },
    }
    recorder = Recorder(ok(first), ok({"items": [customer_json(2)]}))
    client, _ = make_client(recorder)

    assert [c.id for c in client.list_customers()] == ["c-1", "c-2"]
    assert recorder.requests[1].headers["MS-ContinuationToken"] == "tok"


def test_indirect_reseller_filter_is_partner_center_json() -> None:
    recorder = Recorder(ok({"items": []}))
    client, _ = make_client(recorder)

    list(client.list_customers(indirect_reseller_id="r-123"))

    assert json.loads(recorder.requests[0].url.params["filter"]) == {
        "Field": "IndirectReseller",
        "Value": "r-123",
        "Operator": "starts_with",
    }


def test_azure_utilization_pages_with_query_parameters() -> None:
    record = {
        "usageStartTime": "2024-03-01T00:00:00+00:00",
        "usageEndTime": "2024-03-02T00:00:00+00:00",
        "resource": {"id": "m-1", "name": "Standard IO", "category": "Storage"},
        "quantity": 0.123456789,
        "unit": "GB",
    }
    recorder = Recorder(ok({"items": [record], "continuationToken": "u2"}), ok({"items": [record]}))
    client, _ = make_client(recorder)

    records = list(
        client.list_azure_utilization(
            "c-1", "s-1", datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC)
        )
    )

    assert len(records) == 2
    assert records[0].quantity == Decimal("0.123456789")
    assert records[0].usage_start_time == datetime(2024, 3, 1, tzinfo=UTC)
    params = recorder.requests[0].url.params
    assert params["start_time"] == "2024-03-01T00:00:00Z"
    assert params["granularity"] == "daily"
    assert params["size"] == "1000"
    assert recorder.requests[1].url.params["seekOperation"] == "next"


# --- subscriptions ---------------------------------------------------------------------------


def test_patch_sends_the_whole_object_with_if_match() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return ok(SUBSCRIPTION)
        body = json.loads(request.content)
        return ok({**body, "attributes": {"etag": "W/etag-2"}})

    recorder = Recorder(handler)
    client, _ = make_client(recorder)

    updated = client.set_subscription_quantity("c-1", "s-1", 8, request_id="rid-1")

    patch = recorder.requests[1]
    assert patch.method == "PATCH"
    assert patch.url.path == "/v1/customers/c-1/subscriptions/s-1"
    assert patch.headers["If-Match"] == "W/etag-1"
    assert patch.headers["MS-RequestId"] == "rid-1"
    sent = json.loads(patch.content)
    assert sent["quantity"] == 8
    assert sent["someFutureField"] == {"kept": True}
    assert sent["commitmentEndDate"] == "2025-01-31T00:00:00Z"
    assert sent["billingCycle"] == "monthly"
    assert updated.quantity == 8
    assert updated.attributes is not None and updated.attributes.etag == "W/etag-2"


@pytest.mark.parametrize(
    ("helper", "status"),
    [
        ("suspend_subscription", "suspended"),
        ("reactivate_subscription", "active"),
        ("cancel_subscription", "deleted"),
    ],
)
def test_status_helpers_patch_the_status(helper: str, status: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return ok(SUBSCRIPTION)
        return ok(json.loads(request.content))

    recorder = Recorder(handler)
    client, _ = make_client(recorder)

    result = getattr(client, helper)("c-1", "s-1")

    assert json.loads(recorder.requests[1].content)["status"] == status
    assert result.status == status


def test_schedule_next_term_sets_and_clears_instructions() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return ok(SUBSCRIPTION)
        return ok(json.loads(request.content))

    recorder = Recorder(handler)
    client, _ = make_client(recorder)
    instructions = ScheduledNextTermInstructions(
        product=ScheduledProduct(
            product_id="CFQ7TTC0LH18",
            sku_id="0001",
            availability_id="AV1",
            billing_cycle="annual",
            term_duration="P1Y",
        ),
        quantity=10,
    )

    client.schedule_next_term("c-1", "s-1", instructions)
    client.schedule_next_term("c-1", "s-1", None)

    set_body = json.loads(recorder.requests[1].content)
    assert set_body["scheduledNextTermInstructions"] == {
        "product": {
            "productId": "CFQ7TTC0LH18",
            "skuId": "0001",
            "availabilityId": "AV1",
            "billingCycle": "annual",
            "termDuration": "P1Y",
        },
        "quantity": 10,
    }
    assert json.loads(recorder.requests[3].content)["scheduledNextTermInstructions"] is None


def test_accepted_patch_is_polled_until_done() -> None:
    polls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return httpx.Response(
                202, headers={"Location": "/v1/operations/op-1", "Retry-After": "3"}
            )
        if request.url.path == "/v1/operations/op-1":
            polls["n"] += 1
            if polls["n"] < 3:
                return httpx.Response(202, headers={"Retry-After": "1"})
            return ok({"id": "op-1", "status": "succeeded"})
        return ok({**SUBSCRIPTION, "quantity": 9})

    recorder = Recorder(handler)
    client, time = make_client(recorder)

    result = client.set_subscription_quantity("c-1", "s-1", 9)

    assert result.quantity == 9
    assert time.sleeps == [3.0, 1.0, 1.0]
    paths = [(r.method, r.url.path) for r in recorder.requests]
    assert paths == [
        ("GET", "/v1/customers/c-1/subscriptions/s-1"),
        ("PATCH", "/v1/customers/c-1/subscriptions/s-1"),
        ("GET", "/v1/operations/op-1"),
        ("GET", "/v1/operations/op-1"),
        ("GET", "/v1/operations/op-1"),
        ("GET", "/v1/customers/c-1/subscriptions/s-1"),
    ]


def test_failed_operation_is_rejected_with_its_code() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return httpx.Response(202, headers={"Location": "https://pc.test/v1/operations/op-2"})
        if request.url.path.startswith("/v1/operations"):
            return ok({"status": "failed", "error": {"code": 800091, "message": "suspended"}})
        return ok(SUBSCRIPTION)

    client, _ = make_client(handler)

    with pytest.raises(UpstreamRejected) as caught:
        client.set_subscription_quantity("c-1", "s-1", 9)

    assert caught.value.code == "800091"


def test_operation_that_never_finishes_gives_up_as_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" or request.url.path.startswith("/v1/operations"):
            return httpx.Response(202, headers={"Location": "/v1/operations/op-3"})
        return ok(SUBSCRIPTION)

    client, time = make_client(handler)

    with pytest.raises(UpstreamUnavailable):
        client.set_subscription_quantity("c-1", "s-1", 9)

    assert sum(time.sleeps) <= 60.0


def test_transition_posts_partner_center_body() -> None:
    recorder = Recorder(ok({"id": "t-1", "status": "complete", "toSubscriptionId": "s-2"}, 201))
    client, _ = make_client(recorder)

    result = client.create_transition(
        "c-1",
        "s-1",
        Transition(to_catalog_item_id="P:S:A", quantity=25, transition_type="transition_only"),
    )

    assert result.to_subscription_id == "s-2"
    assert json.loads(recorder.requests[0].content) == {
        "toCatalogItemId": "P:S:A",
        "quantity": 25,
        "transitionType": "transition_only",
    }


def test_eligibilities_addons_and_subscribed_skus_parse() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/transitionEligibilities"):
            assert request.url.params["eligibilityType"] == "immediate"
            return ok(
                {
                    "items": [
                        {
                            "catalogItemId": "P:S:A",
                            "eligibilities": [
                                {"isEligible": True, "transitionType": "transition_only"}
                            ],
                        }
                    ]
                }
            )
        if path.endswith("/addons"):
            return ok({"items": [{**SUBSCRIPTION, "id": "addon-1"}]})
        return ok(
            {
                "items": [
                    {
                        "activeUnits": 10,
                        "consumedUnits": 7,
                        "availableUnits": 3,
                        "productSku": {"id": "sku", "skuPartNumber": "O365_BUSINESS"},
                    }
                ]
            }
        )

    client, _ = make_client(handler)

    eligibility = client.list_transition_eligibilities("c-1", "s-1")[0]
    assert eligibility.eligibilities[0].is_eligible is True
    assert client.list_addons("c-1", "s-1")[0].id == "addon-1"
    sku = client.list_subscribed_skus("c-1")[0]
    assert (sku.consumed_units, sku.product_sku and sku.product_sku.sku_part_number) == (
        7,
        "O365_BUSINESS",
    )


# --- customers, catalog, carts ---------------------------------------------------------------


def test_create_customer_sends_indirect_reseller_and_camel_case() -> None:
    recorder = Recorder(lambda r: ok({**json.loads(r.content), "id": "new"}, 201))
    client, _ = make_client(recorder)
    customer = Customer(
        associated_partner_id="reseller-mpn",
        company_profile=CompanyProfile(domain="contoso.onmicrosoft.com"),
        billing_profile=BillingProfile(
            email="a@contoso.cz",
            culture="cs-CZ",
            language="cs",
            company_name="Contoso s.r.o.",
            default_address=Address(
                country="CZ", city="Praha", address_line1="Main 1", postal_code="11000"
            ),
        ),
    )

    created = client.create_customer(customer)

    sent = json.loads(recorder.requests[0].content)
    assert sent["associatedPartnerId"] == "reseller-mpn"
    assert sent["billingProfile"]["defaultAddress"]["addressLine1"] == "Main 1"
    assert "id" not in sent
    assert created.id == "new"


def test_catalog_queries_carry_country_view_and_segment() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/products":
            assert dict(request.url.params) == {
                "country": "CZ",
                "targetView": "OnlineServices",
                "targetSegment": "commercial",
            }
            return ok({"items": [{"id": "CFQ7TTC0LH18", "title": "M365 Business Basic"}]})
        if path.endswith("/skus"):
            return ok(
                {
                    "items": [
                        {
                            "id": "0001",
                            "minimumQuantity": 1,
                            "maximumQuantity": 300,
                            "isTrial": False,
                            "supportedBillingCycles": ["monthly"],
                        }
                    ]
                }
            )
        return ok(
            {
                "items": [
                    {
                        "id": "AV1",
                        "catalogItemId": "CFQ7TTC0LH18:0001:AV1",
                        "terms": [{"duration": "P1Y", "billingCycle": "monthly"}],
                    }
                ]
            }
        )

    client, _ = make_client(handler)

    products = client.list_products("CZ", "OnlineServices", target_segment="commercial")
    skus = client.list_skus("CFQ7TTC0LH18", "CZ")
    availabilities = client.list_availabilities("CFQ7TTC0LH18", "0001", "CZ")

    assert products[0].id == "CFQ7TTC0LH18"
    assert skus[0].maximum_quantity == 300
    assert availabilities[0].catalog_item_id == "CFQ7TTC0LH18:0001:AV1"
    assert availabilities[0].terms[0].duration == "P1Y"


def test_cart_line_carries_the_reseller_participant() -> None:
    recorder = Recorder(lambda r: ok({**json.loads(r.content), "id": "cart-1"}, 201))
    client, _ = make_client(recorder)
    cart = Cart(
        line_items=[
            CartLineItem(
                id=0,
                catalog_item_id="CFQ7TTC0LH18:0001:AV1",
                quantity=3,
                billing_cycle="monthly",
                term_duration="P1Y",
                participants=[CartLineItemParticipant(partner_id="4999999")],
            )
        ]
    )

    created = client.create_cart("c-1", cart, request_id="rid")

    line = json.loads(recorder.requests[0].content)["lineItems"][0]
    assert line["participants"] == [{"type": "TransactionReseller", "partnerId": "4999999"}]
    assert line["catalogItemId"] == "CFQ7TTC0LH18:0001:AV1"
    assert created.id == "cart-1"


def test_checkout_reports_order_errors() -> None:
    body = {
        "orders": [],
        "orderErrors": [{"orderGroupId": "0", "code": 10015, "description": "too many seats"}],
    }
    client, _ = make_client(Recorder(ok(body, 201)))

    result = client.checkout("c-1", "cart-1")

    assert result.order_errors[0].code == 10015


def test_order_and_provisioning_status_parse() -> None:
    order = {
        "id": "o-1",
        "referenceCustomerId": "c-1",
        "status": "completed",
        "currencyCode": "CZK",
        "creationDate": "2024-01-01T10:00:00",
        "lineItems": [
            {
                "lineItemNumber": 0,
                "offerId": "P:S:A",
                "subscriptionId": "s-1",
                "quantity": 3,
                "pricing": {"listPrice": "123.45"},
            }
        ],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/provisioningstatus"):
            return ok(
                {
                    "items": [
                        {
                            "lineItemNumber": 0,
                            "status": "fulfilled",
                            "quantityProvisioningInformation": [{"quantity": 3}],
                        }
                    ]
                }
            )
        if request.url.path.endswith("/orders"):
            return ok({"totalCount": 1, "items": [order]})
        return ok(order)

    client, _ = make_client(handler)

    got = client.get_order("c-1", "o-1")
    assert got.creation_date == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert got.line_items[0].pricing is not None
    assert got.line_items[0].pricing.list_price == Decimal("123.45")
    assert [o.id for o in client.list_orders("c-1")] == ["o-1"]
    assert client.get_order_provisioning_status("c-1", "o-1")[0].status == "fulfilled"


def test_audit_records_query_and_parse() -> None:
    recorder = Recorder(
        ok(
            {
                "items": [
                    {
                        "customerId": "c-1",
                        "operationType": "update_subscription",
                        "operationDate": "2024-05-01T08:00:00Z",
                    }
                ]
            }
        )
    )
    client, _ = make_client(recorder)

    records = list(client.list_audit_records(datetime(2024, 5, 1, tzinfo=UTC)))

    assert records[0].operation_type == "update_subscription"
    assert recorder.requests[0].url.params["startDate"] == "2024-05-01T00:00:00Z"


def test_path_segments_are_escaped() -> None:
    recorder = Recorder(ok(customer_json(1)))
    client, _ = make_client(recorder)

    client.get_customer("a/b?c")

    assert recorder.requests[0].url.raw_path.startswith(b"/v1/customers/a%2Fb%3Fc")


# --- price sheet -----------------------------------------------------------------------------

PRICE_CSV = (
    "\ufeffProductTitle,ProductId,SkuId,SkuTitle,Publisher,SkuDescription,UnitOfMeasure,"
    "TermDuration,BillingPlan,Market,Currency,UnitPrice,PricingTierRangeMin,PricingTierRangeMax,"
    "EffectiveStartDate,EffectiveEndDate,Tags,ERP Price,Segment\r\n"
    "Microsoft 365 Business Basic,CFQ7TTC0LH18,0001,Microsoft 365 Business Basic,"
    'Microsoft Corporation,"Email, files",,P1Y,Annual,CZ,CZK,1234.56,,,'
    "2/1/2023 0:00,11/30/9999 23:59,License,1481.47,Commercial\r\n"
    "Microsoft 365 Business Basic,CFQ7TTC0LH18,0001,Microsoft 365 Business Basic,"
    "Microsoft Corporation,x,,P1M,Monthly,CZ,CZK,123.45,,,"
    "2021-10-01T00:00:00.0000000Z,9999-11-30T23:59:59.0000000Z,License,148.14,Commercial\r\n"
)


def _zipped(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pricesheet_CZ.csv", text.encode("utf-8"))
    return buffer.getvalue()


@pytest.mark.parametrize("zipped", [False, True])
def test_price_sheet_is_downloaded_and_parsed(zipped: bool) -> None:
    content = _zipped(PRICE_CSV) if zipped else PRICE_CSV.encode("utf-8")
    tokens = StaticTokens()
    recorder = Recorder(httpx.Response(200, content=content))
    client, _ = make_client(recorder, tokens=tokens)

    rows = list(client.get_price_sheet("cz"))

    request = recorder.requests[0]
    assert request.url.host == "prices.test"
    assert request.url.path == (
        "/v1.0/sales/pricesheets(Market='CZ',PricesheetView='updatedlicensebased')/$value"
    )
    assert tokens.calls == [("https://api.partner.microsoft.com/.default", True)]
    assert len(rows) == 2
    annual, monthly = rows
    assert annual.unit_price == Decimal("1234.56")
    assert annual.erp_price == Decimal("1481.47")
    assert annual.sku_description == "Email, files"
    assert annual.unit_of_measure is None
    assert annual.effective_start_date == datetime(2023, 2, 1, tzinfo=UTC)
    assert annual.effective_end_date == datetime(9999, 11, 30, 23, 59, tzinfo=UTC)
    assert monthly.term_duration == "P1M"
    assert monthly.effective_start_date == datetime(2021, 10, 1, tzinfo=UTC)


def test_price_sheet_download_is_retried_when_the_connection_drops() -> None:
    recorder = Recorder(httpx.ReadError("reset"), httpx.Response(200, content=PRICE_CSV.encode()))
    client, time = make_client(recorder)

    assert len(list(client.get_price_sheet("CZ"))) == 2
    assert len(time.sleeps) == 1


def test_unreadable_price_row_is_rejected() -> None:
    bad = "ProductId,SkuId,Currency,UnitPrice\r\nP,S,CZK,not-a-number\r\n"
    client, _ = make_client(Recorder(httpx.Response(200, content=bad.encode())))

    with pytest.raises(UpstreamRejected):
        list(client.get_price_sheet("CZ"))


# --- factory ---------------------------------------------------------------------------------


def test_factory_builds_a_client_without_network() -> None:
    settings = Settings.model_validate(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "PARTNER_CENTER_API_BASE_URL": "https://pc.example/",
            "PARTNER_CENTER_TENANT_ID": "t",
            "PARTNER_CENTER_CLIENT_ID": "c",
            "PARTNER_CENTER_CLIENT_SECRET": "s",
            "PARTNER_CENTER_MAX_ATTEMPTS": "7",
        }
    )

    client = build_partner_center(settings)
    try:
        assert client._transport.retry.max_attempts == 7
        assert str(client._transport.http.base_url) == "https://pc.example"
    finally:
        client.close()
