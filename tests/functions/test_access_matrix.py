"""Every HTTP route × every role × own/other reseller and own/other customer → expected status.

Generated from the app's functions: a route missing from EXPECT fails the suite, so no route
can ship without someone deciding who may call it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from functions._http import ROUTES, encode_etag
from shared import bootstrap
from shared.domain.customers import CustomerStatus, Qualification
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.orders import Order, OrderCreate, OrderStatus, order_row_key
from shared.domain.quotes import Quote, QuoteCreate, quote_row_key
from shared.domain.subscriptions import NextTerm, TransitionOption
from tests.app_index import triggers
from tests.catalog_fakes import BOTH, install_catalog
from tests.customer_bodies import new_customer_body
from tests.fakes import reseller_ids
from tests.functions.helpers import call
from tests.functions.world import CALLERS, CUST_A, CUST_B, World, add_customers, build_world
from tests.order_fakes import install_orders, offer_line
from tests.quote_fakes import install_quotes
from tests.report_fakes import install_ledger
from tests.subscription_fakes import seed_subscription
from tests.sync_run_fakes import install_sync_runs
from tests.usage_report_fakes import install_usage

FRESH_TENANT, FRESH_MPN = reseller_ids("fresh")

ROLES = ("anonymous", *CALLERS)  # anonymous, DA, AM, Sales, ReadOnly, CustomerAdmin, CustomerReader
VARIANTS = ("own_reseller", "other_reseller", "own_customer", "other_customer")
RESELLER_OF = {"own_reseller": "demo", "other_reseller": "other"}
# Whose customer a variant is about (None: the reseller's own organisation).
CUSTOMER_OF = {"own_customer": CUST_A, "other_customer": CUST_B}


def same(statuses: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """One row of statuses for every variant."""
    return dict.fromkeys(VARIANTS, statuses)


def by_reseller(own: tuple[int, ...], other: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Statuses for the caller's own reseller (and its customers) and for another reseller."""
    return {**dict.fromkeys(VARIANTS, own), "other_reseller": other}


OUTSIDE = (401, 200, 404, 404, 404, 404, 404)

#        anonymous  DA   AM   Sales  RO  CustAdmin CustReader
EXPECT: dict[str, dict[str, tuple[int, ...]]] = {
    "http_health": same((200, 200, 200, 200, 200, 200, 200)),
    "http_openapi": same((200, 200, 200, 200, 200, 200, 200)),
    # Behind a function key: the host refuses a request without one (401) before the app runs,
    # so whoever reaches the app is let through (see KEYED below).
    "http_health_deep": same((200, 200, 200, 200, 200, 200, 200)),
    "http_me": same((401, 200, 200, 200, 200, 200, 200)),
    "http_link_sign_in": same((401, 200, 200, 200, 200, 200, 200)),
    "http_accept_invitation": same((401, 404, 404, 404, 404, 404, 404)),
    "http_list_resellers": same((401, 200, 403, 403, 403, 403, 403)),
    "http_onboard_reseller": same((401, 201, 403, 403, 403, 403, 403)),
    "http_get_reseller": by_reseller((401, 200, 200, 200, 200, 200, 200), OUTSIDE),
    "http_update_reseller": by_reseller((401, 200, 403, 403, 403, 403, 403), OUTSIDE),
    "http_get_settings": by_reseller((401, 200, 200, 403, 403, 403, 403), OUTSIDE),
    "http_put_settings": by_reseller((401, 200, 200, 403, 403, 403, 403), OUTSIDE),
    "http_list_users": by_reseller((401, 200, 200, 403, 403, 200, 403), OUTSIDE),
    "http_invite_user": {
        "own_reseller": (401, 201, 201, 403, 403, 403, 403),
        "other_reseller": (401, 201, 404, 404, 404, 404, 404),
        "own_customer": (401, 201, 201, 403, 403, 201, 403),
        "other_customer": (401, 201, 201, 403, 403, 404, 403),
    },
    "http_update_user": {
        "own_reseller": (401, 200, 200, 403, 403, 404, 403),
        "other_reseller": (401, 200, 404, 404, 404, 404, 404),
        "own_customer": (401, 200, 200, 403, 403, 200, 403),
        "other_customer": (401, 200, 200, 403, 403, 404, 403),
    },
}
EXPECT["http_disable_user"] = EXPECT["http_update_user"]
EXPECT["http_get_user"] = EXPECT["http_update_user"]

# The catalog: public reads, the customer catalog, curation by staff, the import.
CATALOG_STAFF_READ = by_reseller((401, 200, 200, 200, 200, 403, 403), OUTSIDE)
CATALOG_STAFF_WRITE = by_reseller((401, 200, 200, 200, 403, 403, 403), OUTSIDE)
EXPECT.update(
    {
        "http_public_catalog": same((200, 200, 200, 200, 200, 200, 200)),
        "http_public_catalog_product": same((200, 200, 200, 200, 200, 200, 200)),
        "http_customer_catalog": {
            "own_reseller": (401, 200, 200, 200, 200, 200, 200),
            "other_reseller": OUTSIDE,
            "own_customer": (401, 200, 200, 200, 200, 200, 200),
            "other_customer": (401, 200, 200, 200, 200, 404, 404),
        },
        "http_list_catalog_entries": CATALOG_STAFF_READ,
        "http_get_catalog_entry": CATALOG_STAFF_READ,
        "http_get_catalog_categories": CATALOG_STAFF_READ,
        "http_get_segments": CATALOG_STAFF_READ,
        "http_put_catalog_entry": CATALOG_STAFF_WRITE,
        "http_put_catalog_categories": CATALOG_STAFF_WRITE,
        "http_put_segments": CATALOG_STAFF_WRITE,
        "http_import_catalog": same((401, 200, 403, 403, 403, 403, 403)),
    }
)
# A customer of `other`, for the customer catalog of another reseller.
CUST_OTHER = "01JCXSTC00000000000000000C"

# Customers: everyone reads (a customer user: its own), staff but ReadOnly manage.
CUSTOMER_STAFF_WRITE = by_reseller((401, 200, 200, 200, 403, 403, 403), OUTSIDE)
CUSTOMER_WRITE_ONE = {
    "own_reseller": (401, 200, 200, 200, 403, 403, 403),
    "other_reseller": OUTSIDE,
    "own_customer": (401, 200, 200, 200, 403, 403, 403),
    "other_customer": (401, 200, 200, 200, 403, 404, 404),
}
EXPECT.update(
    {
        "http_list_customers": by_reseller((401, 200, 200, 200, 200, 200, 200), OUTSIDE),
        "http_create_customer": by_reseller(
            (401, 202, 202, 202, 403, 403, 403), (401, 202, 404, 404, 404, 404, 404)
        ),
        "http_import_customer": by_reseller(
            (401, 201, 201, 201, 403, 403, 403), (401, 201, 404, 404, 404, 404, 404)
        ),
        "http_get_customer": {
            "own_reseller": (401, 200, 200, 200, 200, 200, 200),
            "other_reseller": OUTSIDE,
            "own_customer": (401, 200, 200, 200, 200, 200, 200),
            "other_customer": (401, 200, 200, 200, 200, 404, 404),
        },
        "http_update_customer": CUSTOMER_WRITE_ONE,
        "http_retry_customer": {
            variant: tuple(202 if s == 200 else s for s in statuses)
            for variant, statuses in CUSTOMER_WRITE_ONE.items()
        },
        "http_check_domain": CUSTOMER_STAFF_WRITE,
        "http_relationship_link": CUSTOMER_STAFF_WRITE,
    }
)


# Orders: everyone reads (a customer user: its own customer's), staff place, Account Managers
# approve; a CustomerAdmin places where the reseller allows it (the world allows it).
def _one_customer(own: tuple[int, ...], *_: object) -> dict[str, tuple[int, ...]]:
    """Own reseller and customer: `own`; another customer: 404 to customer users; another
    reseller: 404 to all but the distributor."""
    return {
        "own_reseller": own,
        "other_reseller": (401, own[1], 404, 404, 404, 404, 404),
        "own_customer": own,
        "other_customer": (*own[:5], 404, 404),
    }


ORDER_READ = _one_customer((401, 200, 200, 200, 200, 200, 200), (401, 200, 200, 200, 200, 404, 404))
EXPECT.update(
    {
        "http_list_customer_orders": ORDER_READ,
        "http_get_order": ORDER_READ,
        "http_list_subscriptions": ORDER_READ,
        "http_get_subscription": ORDER_READ,
        "http_list_reseller_orders": by_reseller((401, 200, 200, 200, 200, 200, 200), OUTSIDE),
        "http_preview_order": _one_customer(
            (401, 200, 200, 200, 403, 200, 403), (401, 200, 200, 200, 403, 404, 403)
        ),
        "http_create_order": _one_customer(
            (401, 201, 201, 201, 403, 201, 403), (401, 201, 201, 201, 403, 404, 403)
        ),
        "http_update_order": _one_customer(
            (401, 200, 200, 200, 403, 200, 403), (401, 200, 200, 200, 403, 404, 403)
        ),
        "http_delete_order": _one_customer(
            (401, 204, 204, 204, 403, 204, 403), (401, 204, 204, 204, 403, 404, 403)
        ),
        "http_submit_order": _one_customer(
            (401, 202, 202, 202, 403, 202, 403), (401, 202, 202, 202, 403, 404, 403)
        ),
        "http_approve_order": _one_customer(
            (401, 202, 202, 403, 403, 403, 403), (401, 202, 202, 403, 403, 404, 403)
        ),
        "http_reject_order": _one_customer(
            (401, 200, 200, 403, 403, 403, 403), (401, 200, 200, 403, 403, 404, 403)
        ),
        "http_retry_order": _one_customer(
            (401, 202, 202, 202, 403, 403, 403), (401, 202, 202, 202, 403, 404, 403)
        ),
    }
)

# Quotes: everyone reads (a customer user: its own customer's), staff but ReadOnly make, send and
# withdraw them, a customer's admin answers (a distributor admin is not the customer: 403); the
# link routes are for anyone holding a link (a made-up one is a 404 to everyone).
QUOTE_STAFF_WRITE = _one_customer((401, 200, 200, 200, 403, 403, 403))
QUOTE_ANSWER = _one_customer((401, 403, 403, 403, 403, 200, 403))
EXPECT.update(
    {
        "http_create_quote": _one_customer((401, 201, 201, 201, 403, 403, 403)),
        "http_quote_order": _one_customer((401, 201, 201, 201, 403, 403, 403)),
        "http_list_quotes": by_reseller((401, 200, 200, 200, 200, 200, 200), OUTSIDE),
        "http_get_quote": ORDER_READ,
        "http_update_quote": QUOTE_STAFF_WRITE,
        "http_send_quote": QUOTE_STAFF_WRITE,
        "http_withdraw_quote": QUOTE_STAFF_WRITE,
        "http_accept_quote": QUOTE_ANSWER,
        "http_decline_quote": QUOTE_ANSWER,
        "http_request_changes_quote": QUOTE_ANSWER,
        "http_link_quote": same((404,) * 7),
        "http_link_accept_quote": same((404,) * 7),
        "http_link_decline_quote": same((404,) * 7),
        "http_link_request_changes_quote": same((404,) * 7),
    }
)
# Subscription changes: staff but ReadOnly; a CustomerAdmin where the reseller allows it (the
# world allows it).
SUBSCRIPTION_CHANGE = _one_customer(
    (401, 202, 202, 202, 403, 202, 403), (401, 202, 202, 202, 403, 404, 403)
)
EXPECT.update(
    dict.fromkeys(
        (
            "http_change_subscription",
            "http_convert_subscription",
            "http_upgrade_subscription",
            "http_schedule_subscription_change",
            "http_unschedule_subscription_change",
        ),
        SUBSCRIPTION_CHANGE,
    )
)
# Renewals: every role of the reseller reads them (a customer user: its own customer's rows).
EXPECT["http_list_renewals"] = by_reseller((401, 200, 200, 200, 200, 200, 200), OUTSIDE)
# Reports: every role of the reseller reads them (a customer user: its own customer's rows).
EXPECT["http_licence_report"] = by_reseller((401, 200, 200, 200, 200, 200, 200), OUTSIDE)
EXPECT["http_revenue_report"] = EXPECT["http_licence_report"]
# Sync: the reseller's Account Manager and distributor admins; the reseller's other staff 403;
# its customers' users do not learn the sync exists (404), as another reseller's staff.
SYNC_READ = by_reseller((401, 200, 200, 403, 403, 404, 404), OUTSIDE)
EXPECT.update(
    {
        "http_start_sync": by_reseller(
            (401, 202, 202, 403, 403, 404, 404), (401, 202, 404, 404, 404, 404, 404)
        ),
        "http_list_sync_runs": SYNC_READ,
        "http_get_sync_run": SYNC_READ,
    }
)

# Reports: every role of the reseller reads them (a customer user: its own customer's rows);
# the usage import is the distributor's.
EXPECT.update(
    {
        "http_usage_report": by_reseller((401, 200, 200, 200, 200, 200, 200), OUTSIDE),
        "http_start_usage_import": same((401, 202, 403, 403, 403, 403, 403)),
        "http_list_usage_imports": same((401, 200, 403, 403, 403, 403, 403)),
    }
)

# Routes the Functions host guards with a function key (authLevel "function"); every other route
# is anonymous at the host and decides access in the app.
KEYED = {"http_health_deep"}

ROUTE_PARAMS = {"r", "u", "token", "c", "p", "name", "o", "q", "s", "run"}


def http_functions() -> dict[str, dict[str, Any]]:
    return {n: t for n, t in triggers().items() if t["type"] == "httpTrigger"}


def test_every_http_route_has_an_access_expectation():
    missing = sorted(set(http_functions()) - set(EXPECT))
    assert not missing, f"routes without an access expectation (add them to EXPECT): {missing}"
    assert not sorted(set(EXPECT) - set(http_functions())), "EXPECT names unknown functions"


def test_only_the_keyed_routes_ask_the_host_for_a_function_key():
    levels = {
        n: getattr(t["authLevel"], "value", t["authLevel"]) for n, t in http_functions().items()
    }
    assert {n for n, level in levels.items() if level != "anonymous"} == KEYED
    assert {levels[n] for n in KEYED} == {"function"}


def test_every_route_only_uses_route_parameters_the_matrix_knows():
    import re

    for name, t in http_functions().items():
        params = set(re.findall(r"\{([^}:?]+)", t["route"]))
        assert params <= ROUTE_PARAMS, f"{name}: teach the matrix about {params - ROUTE_PARAMS}"


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    install_catalog(
        w.container,
        w.clock,
        {("demo", CUST_A): "education", ("demo", CUST_B): "commercial", ("other", CUST_OTHER): ""},
    )
    add_customers(w)
    install_orders(w.container)
    install_quotes(w.container)
    install_sync_runs(w.container)
    install_usage(w.container)
    c = w.container
    install_ledger(c, [], [])
    for reseller, cid in (("demo", CUST_A), ("demo", CUST_B), ("other", CUST_OTHER)):
        customer = c.customers.get(reseller, cid)
        customer.tenant_id, customer.qualification = str(uuid.uuid4()), Qualification.APPROVED
        c.customers.update(customer)
    demo = c.resellers.get("reseller", "demo")
    demo.settings.customer_ordering_enabled = True
    demo.settings.customer_subscription_changes_enabled = True
    c.resellers.update(demo)
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def _catalog_product(world: World) -> str:
    """A product in both resellers' catalogs."""
    products: Any = world.container.partner_center
    return str(products.product_id(BOTH))


def _request(world: World, name: str, variant: str, role: str) -> dict[str, Any]:
    trig = http_functions()[name]
    reseller = RESELLER_OF.get(variant, "demo")
    target = world.users[variant]
    route: dict[str, str] = {}
    path = trig["route"]
    if "{r}" in path:
        route["r"] = reseller
    if "{u}" in path:
        route["u"] = target.id
        if variant == "other_reseller":
            route["r"] = target.reseller
    if "{token}" in path:
        route["token"] = "demo.this-invitation-does-not-exist-at-all"
    if "{c}" in path:
        route["c"] = CUSTOMER_OF.get(variant) or (
            CUST_OTHER if variant == "other_reseller" else CUST_A
        )
    if "{p}" in path:
        route["p"] = _catalog_product(world)
    if "{name}" in path:
        route["name"] = "freshtenant"
    if "{o}" in path:
        route["o"] = _order(world, name, route["r"], route["c"]).id
    if "{q}" in path:
        route["q"] = _quote(world, name, route["r"], route["c"]).id
    sub = None
    if "{s}" in path:
        sub = _subscription(world, name, route["r"], route["c"])
        route["s"] = sub.id
    if "{run}" in path:
        route["run"] = _sync_run(world, route["r"]).id
    for key, value in route.items():
        path = path.replace("{" + key + "}", value)
    method = getattr(trig["methods"][0], "value", trig["methods"][0])
    headers: dict[str, str] = {}
    body: Any = None
    c = world.container
    if name == "http_onboard_reseller":
        body = {
            "slug": "fresh",
            "name": "Fresh",
            "partnerCenterTenantId": FRESH_TENANT,
            "mpnId": FRESH_MPN,
            "country": "CZ",
            "currency": "CZK",
        }
    elif name == "http_update_reseller":
        body = {"name": "Renamed"}
        headers["If-Match"] = encode_etag(c.resellers.get("reseller", reseller).etag)
    elif name == "http_put_settings":
        body = {"appearance": {"displayName": "Renamed"}}
        headers["If-Match"] = encode_etag(c.resellers.get("reseller", reseller).etag)
    elif name == "http_invite_user":
        customer = CUSTOMER_OF.get(variant)
        body = {
            "email": "new.person@example.com",
            "role": "CustomerReader" if customer else "ReadOnly",
        }
        if customer:
            body["customerId"] = customer
    elif name == "http_update_user":
        body = {"status": "Disabled"}
        headers["If-Match"] = encode_etag(target.etag)
    elif name == "http_link_sign_in" and role != "anonymous":
        body = {"token": world.issuer.token(CALLERS[role][1], SignInKind.WORK)}
    elif name == "http_link_sign_in":
        body = {"token": "x"}
    elif name == "http_put_catalog_entry":
        body = {"visible": True}
        entry = c.catalog_store.find_entry(reseller, route["p"])
        headers["If-Match"] = encode_etag(entry.etag)
    elif name in ("http_put_catalog_categories", "http_put_segments"):
        body = (
            {"categories": [{"id": "x", "name": "X"}]}
            if name == "http_put_catalog_categories"
            else {"segments": [{"id": "x", "name": "X", "base": "education"}]}
        )
        headers["If-Match"] = encode_etag(c.catalog_store.find_settings(reseller).etag)
    elif name == "http_create_customer":
        body = new_customer_body()
    elif name == "http_import_customer":
        tenant = c.partner_center.add_tenant(reseller_ids(reseller)[0], "existing.onmicrosoft.com")
        body = {"tenantId": tenant.id}
    elif name == "http_update_customer":
        body = {"industry": "Retail"}
        headers["If-Match"] = encode_etag(c.customers.get(reseller, route["c"]).etag)
    elif name == "http_retry_customer":
        # Only a Failed customer can be retried: make the target one.
        failed = c.customers.get(reseller, route["c"])
        failed.status, failed.failure_reason = CustomerStatus.FAILED, "Partner Center refused"
        headers["If-Match"] = encode_etag(c.customers.update(failed).etag)
    elif name in ORDER_BODY or name == "http_create_quote":
        body = {"lines": [_order_line(world, route["r"], route["c"])]}
    elif name == "http_update_quote":
        body = {"note": "Updated"}
    elif name in SUBSCRIPTION_BODY and sub is not None:
        body = SUBSCRIPTION_BODY[name](sub)
    if sub is not None and name != "http_get_subscription":
        headers["If-Match"] = encode_etag(sub.etag)
    if "{o}" in trig["route"] and name != "http_get_order":
        order = c.orders.find(route["r"], order_row_key(route["o"]))
        headers["If-Match"] = encode_etag(order.etag)
    if name in ("http_update_quote", "http_send_quote", "http_withdraw_quote"):
        quote = c.quotes.find(route["r"], quote_row_key(route["q"]))
        headers["If-Match"] = encode_etag(quote.etag)
    token = None if role == "anonymous" else world.token(role)
    return {
        "method": method,
        "path": path,
        "route": route,
        "body": body,
        "headers": headers,
        "token": token,
    }


ORDER_BODY = ("http_preview_order", "http_create_order", "http_update_order")
SUBSCRIPTION_BODY: dict[str, Any] = {
    "http_change_subscription": lambda s: {"quantity": s.quantity + 1},
    "http_convert_subscription": lambda s: {
        "termDuration": s.term_duration,
        "billingCycle": s.billing_cycle,
    },
    "http_upgrade_subscription": lambda s: {"toCatalogItemId": s.catalog_item_id, "quantity": 5},
    "http_schedule_subscription_change": lambda s: {"quantity": 5},
}


def _subscription(world: World, name: str, reseller: str, customer_id: str) -> Any:
    """A subscription of the route's customer in the state the route acts on."""
    c = world.container
    state: dict[str, Any] = {}
    if name == "http_convert_subscription":
        state = {"is_trial": True, "quantity": 25, "refundable": []}
    if name == "http_unschedule_subscription_change":
        state = {"next_term": NextTerm(None, 5, None, None)}
    sub = seed_subscription(c, reseller, customer_id, **state)
    c.partner_center.transition_targets[sub.id] = [
        TransitionOption(sub.catalog_item_id or "", "Target", eligible=True)
    ]
    return sub


def _sync_run(world: World, reseller: str) -> Any:
    """A nightly run of the reseller (going)."""
    from shared.domain.sync import SyncTrigger
    from shared.services.sync import runs

    c = world.container
    return runs.start(c.sync_runs, c.clock, reseller, SyncTrigger.NIGHTLY)[0]


ORDER_STATUS_FOR = {
    "http_approve_order": OrderStatus.PENDING_APPROVAL,
    "http_reject_order": OrderStatus.PENDING_APPROVAL,
    "http_retry_order": OrderStatus.FAILED,
}


def _order_line(world: World, reseller: str, customer_id: str) -> dict[str, Any]:
    c = world.container
    r = c.resellers.get("reseller", reseller)
    market = c.catalog_reader.market_products(r.country, c.catalog_reader.import_id(r.country))
    product = market[_catalog_product(world)]
    customer = c.customers.get(reseller, customer_id)
    return offer_line(None, customer, product)


def _order(world: World, name: str, reseller: str, customer_id: str) -> Order:
    """An order of the route's customer in the state the route acts on."""
    c = world.container
    customer = c.customers.get(reseller, customer_id)
    product = _order_line(world, reseller, customer_id)
    book = c.order_book
    from shared.services import orders

    body = OrderCreate.model_validate({"lines": [product]})
    staff = Principal("x", reseller, None, Role.ACCOUNT_MANAGER, "x@x.example", SignInKind.PLATFORM)
    order = orders.create(book, staff, reseller, customer.id, body)
    wanted = ORDER_STATUS_FOR.get(name)
    if wanted is not None:
        order.status = wanted
        order = c.orders.update(order)
    return order


def _quote(world: World, name: str, reseller: str, customer_id: str) -> Quote:
    """A quote of the route's customer in the state the route acts on (Sent to be read by the
    customer or answered)."""
    from shared.services import quotes

    c = world.container
    line = _order_line(world, reseller, customer_id)
    staff = Principal("x", reseller, None, Role.ACCOUNT_MANAGER, "x@x.example", SignInKind.PLATFORM)
    quote = quotes.create(
        c.quote_book, staff, reseller, customer_id, QuoteCreate.model_validate({"lines": [line]})
    )
    if name in (
        "http_get_quote",  # a customer's users see a quote once it is sent
        "http_accept_quote",
        "http_decline_quote",
        "http_request_changes_quote",
    ):
        quote = quotes.send(c.quote_book, staff, reseller, customer_id, quote.id, "*")
    return quote


CASES = [
    (name, variant, role, EXPECT[name][variant][i])
    for name in sorted(EXPECT)
    for variant in VARIANTS
    for i, role in enumerate(ROLES)
]


@pytest.mark.parametrize(("name", "variant", "role", "status"), CASES)
def test_access(world: World, name: str, variant: str, role: str, status: int):
    req = _request(world, name, variant, role)
    resp = call(name, req.pop("method"), req.pop("path"), **req)
    body = resp.get_body().decode()
    assert resp.status_code == status, f"{name} {variant} as {role}: {resp.status_code} {body}"
    if status >= 400:
        assert resp.mimetype == "application/problem+json"


@pytest.mark.parametrize("role", ["DistributorAdmin", "AccountManager"])
def test_the_sync_run_list_holds_the_routes_resellers_runs_only(world: World, role: str):
    ours, theirs = _sync_run(world, "demo"), _sync_run(world, "other")
    seen = {}
    for reseller in ("demo", "other"):
        resp = call(
            "http_list_sync_runs",
            "GET",
            f"resellers/{reseller}/sync/runs",
            route={"r": reseller},
            token=world.token(role),
        )
        seen[reseller] = [r["id"] for r in json.loads(resp.get_body()).get("items", [])]
    assert seen["demo"] == [ours.id]
    assert seen["other"] == ([theirs.id] if role == "DistributorAdmin" else [])


# --- If-Match on every conditional route ------------------------------------------------------


def conditional_routes() -> list[str]:
    """Every HTTP function of the app whose route reads If-Match (it documents 412 or 428)."""
    specs = {spec.name: spec for spec in ROUTES}
    return sorted(name for name in http_functions() if specs[name].conditional)


def test_the_conditional_routes_are_found_from_the_app():
    found = conditional_routes()
    assert {"http_update_customer", "http_update_reseller", "http_put_catalog_entry"} <= set(found)


def _with_if_match(world: World, name: str, value: str) -> Any:
    req = _request(world, name, "own_reseller", "DistributorAdmin")
    req["headers"]["If-Match"] = value
    return call(name, req.pop("method"), req.pop("path"), **req)


MALFORMED_IF_MATCH = {
    "empty-tag": '""',
    "empty-value": "",
    "unquoted": "abc",
    "weak": 'W/"abc"',
    "list": '"abc", "def"',
    "star-in-a-list": '*, "abc"',
}


@pytest.mark.parametrize("value", MALFORMED_IF_MATCH.values(), ids=MALFORMED_IF_MATCH.keys())
@pytest.mark.parametrize("name", conditional_routes())
def test_a_malformed_if_match_is_a_400_naming_the_header_on_every_conditional_route(
    world: World, name: str, value: str
):
    resp = _with_if_match(world, name, value)
    assert resp.status_code == 400, resp.get_body()
    assert resp.mimetype == "application/problem+json"
    assert [e["field"] for e in json.loads(resp.get_body())["errors"]] == ["If-Match"]


@pytest.mark.parametrize("name", conditional_routes())
def test_if_match_star_changes_the_current_version_on_every_conditional_route(
    world: World, name: str
):
    resp = _with_if_match(world, name, "*")
    assert resp.status_code == EXPECT[name]["own_reseller"][1], resp.get_body()
    if resp.status_code != 204:  # a deleted record has no version left to name
        assert resp.headers.get("ETag"), "a change answers with the new version"


@pytest.mark.parametrize("name", conditional_routes())
def test_a_well_formed_tag_that_was_never_issued_is_a_412(world: World, name: str):
    resp = _with_if_match(world, name, '"bm90LW91cnM"')  # base64url of "not-ours"
    assert resp.status_code == 412, resp.get_body()
