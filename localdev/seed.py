"""Demo data for `make run`: the distributor admin, reseller `demo` with three users, and
reseller `other` with one (for isolation checks); the distributor charges `demo` a 5 % mark-up
over Microsoft's cost and `demo` pins one customer price (Business Basic, annual); two Active
customers of `demo` (one commercial, one education) with the customer user
`it@customer.example`; the CZ catalog imported from Partner Center (the simulator) and a
curated public catalog for each reseller; the first customer's orders: one Completed, one
Draft, a Completed seat increase (a Change order) and a trial; a sent quote; and, for Sync now,
tenants that exist only in Partner Center (the simulator): three that accepted `demo`, one of a
reseller whose tenant id begins with demo's (Partner Center's filter returns it; sync must not).
Idempotent: a second run changes nothing.

    python -m localdev.seed
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx

from localdev.partner_center_sim.catalog import TRIAL_SEATS
from localdev.partner_center_sim.resellers import DEMO_RESELLERS
from localdev.tokens import local_sign_ins
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.catalog import Category, PinnedPrice, Product
from shared.domain.claims import Claim
from shared.domain.customers import Address, Contact, Customer, CustomerImport, TenantRequest
from shared.domain.identity import (
    DISTRIBUTOR,
    RESELLER_PARTITION,
    Principal,
    Role,
    SignInKind,
    User,
)
from shared.domain.money import Money
from shared.domain.orders import (
    Order,
    OrderCreate,
    OrderKind,
    OrderStatus,
    ProvisionOrderMessage,
    order_row_key,
)
from shared.domain.outbox import Queue
from shared.domain.quotes import Quote, QuoteCreate
from shared.domain.usage import AZURE_PLAN_PRODUCT_ID
from shared.services import (
    catalog_editing,
    catalog_import,
    orders,
    quotes,
    resellers,
    usage_import,
    users,
)
from shared.services import customers as customer_service
from shared.services.catalog_editing import CatalogEntryPut, CategoriesPut
from shared.services.resellers import ResellerCreate, ResellerUpdate
from shared.services.subscriptions import requests as subscription_requests
from shared.services.subscriptions.requests import SubscriptionPatch


@dataclass(frozen=True)
class DemoUser:
    """One seeded user."""

    reseller: str
    email: str
    role: Role
    name: str


# Both Partner Center ids of each reseller, as the simulator lists them (IsIndirect...Of).
_DEMO, _OTHER = DEMO_RESELLERS
RESELLERS = [
    ResellerCreate(
        slug="demo",
        name=_DEMO.name,
        partner_center_tenant_id=_DEMO.id,
        mpn_id=_DEMO.mpn_id,
        country="CZ",
        currency="CZK",
        # The distributor charges demo 5 % over Microsoft's cost: demo's staff see only the result.
        distributor_markup_percent=Decimal(5),
    ),
    ResellerCreate(
        slug="other",
        name=_OTHER.name,
        partner_center_tenant_id=_OTHER.id,
        mpn_id=_OTHER.mpn_id,
        country="CZ",
        currency="EUR",
    ),
]
USERS = [
    DemoUser(DISTRIBUTOR, "admin@distributor.example", Role.DISTRIBUTOR_ADMIN, "Distributor Admin"),
    DemoUser("demo", "owner@demo.example", Role.ACCOUNT_MANAGER, "Olga Owner"),
    DemoUser("demo", "sales@demo.example", Role.SALES, "Sam Sales"),
    DemoUser("demo", "viewer@demo.example", Role.READ_ONLY, "Vera Viewer"),
    DemoUser("other", "owner@other.example", Role.ACCOUNT_MANAGER, "Oscar Other"),
]


# (category id, name, parent) and which product titles go where: the first matching keyword wins.
CATEGORIES = {
    "demo": [
        ("m365", "Microsoft 365", None),
        ("m365-business", "For business (up to 300 users)", "m365"),
        ("m365-enterprise", "For enterprise", "m365"),
        ("security", "Security & identity", None),
        ("dynamics", "Dynamics 365", None),
        ("windows-servers", "Windows & servers", None),
        ("add-ons", "Add-ons", None),
    ],
    "other": [("m365", "Microsoft 365", None)],
}
PLACEMENT = {
    "demo": [
        ("Business", "m365-business"),
        ("Teams Phone", "add-ons"),
        ("Audio Conferencing", "add-ons"),
        ("Archiving", "add-ons"),
        ("Copilot", "add-ons"),
        ("365 E", "m365-enterprise"),
        ("365 F", "m365-enterprise"),
        ("Office 365", "m365-enterprise"),
        ("Exchange", "m365-enterprise"),
        ("Teams", "m365-enterprise"),
        ("Defender", "security"),
        ("Entra", "security"),
        ("Intune", "security"),
        ("Dynamics", "dynamics"),
        ("Windows", "windows-servers"),
        ("SQL", "windows-servers"),
    ],
    "other": [("Business", "m365")],
}


def seed_catalog(c: Container, market: str = "CZ") -> int:
    """Import the market from Partner Center, then lay out each reseller's catalog once."""
    catalog_import.import_market(c.partner_center, c.products, c.market_stamps, c.clock, market)
    placed = 0
    for slug, categories in CATEGORIES.items():
        if c.catalog_store.find_settings(slug) is not None:
            continue  # the reseller's catalog exists: leave its edits alone
        catalog_editing.put_categories(
            c.catalog_store,
            c.clock,
            slug,
            None,
            CategoriesPut(
                categories=[Category(id=i, name=n, parent_id=p) for i, n, p in categories]
            ),
        )
        for position, product in enumerate(c.products.iterate(market)):
            where = next((cat for key, cat in PLACEMENT[slug] if key in product.title), None)
            if where is None or product.withdrawn:
                continue
            catalog_editing.put_entry(
                c.catalog_store,
                c.products,
                c.resellers,
                c.clock,
                slug,
                product.id,
                None,
                CatalogEntryPut(
                    categories=[where],
                    position=position,
                    customer_prices=_pinned(product) if slug == "demo" else [],
                ),
            )
            placed += 1
    return placed


PINNED_PRODUCT = "Microsoft 365 Business Basic"


def _pinned(product: Product) -> list[PinnedPrice]:
    """Demo's one pinned price: Business Basic, annual, a round 20 % over Microsoft's cost."""
    if product.title != PINNED_PRODUCT:
        return []
    for sku in product.skus:
        price = sku.price("commercial", "P1Y", "annual", "CZK")
        if price is not None and not sku.is_trial:
            amount = (price.cost * Decimal("1.2")).to_integral_value(rounding=ROUND_CEILING)
            return [
                PinnedPrice(
                    sku_id=sku.id,
                    term="P1Y",
                    billing_cycle="annual",
                    price=Money(amount=amount, currency="CZK"),
                )
            ]
    return []


def seed(c: Container) -> list[User]:
    """Create whatever of the demo data is missing; returns the demo users.

    A demo reseller stored before resellers had two Partner Center ids gets the missing one.
    """
    for command in RESELLERS:
        found = c.resellers.find(RESELLER_PARTITION, command.slug)
        if found is None:
            resellers.onboard(c.resellers, c.clock, command, c.partner_center)
        elif (found.partner_center_tenant_id, found.mpn_id) != (
            command.partner_center_tenant_id,
            command.mpn_id,
        ):
            resellers.update(
                c.resellers,
                c.clock,
                command.slug,
                found.etag or "",
                ResellerUpdate(
                    partner_center_tenant_id=command.partner_center_tenant_id,
                    mpn_id=command.mpn_id,
                ),
                c.catalog_store,
                c.partner_center,
            )
    return [
        users.ensure_user(
            c.directory,
            u.reseller,
            u.email,
            u.role,
            display_name=u.name,
            sign_ins=local_sign_ins(c.settings, u.email),
        )
        for u in USERS
    ]


# Reseller demo's two existing customers (tenants in the simulator), and its customer user.
DEMO_CUSTOMERS = [
    # (tenant name, organisation, IČO, segment, industry)
    ("alfastrojirny", "Alfa Strojírny s.r.o.", "25596641", "commercial", "Manufacturing"),
    ("gymnaziumbrno", "Gymnázium Brno, příspěvková organizace", "26168685", "education", None),
]
CUSTOMER_USER = DemoUser("demo", "it@customer.example", Role.CUSTOMER_ADMIN, "Ivan IT")


def seed_customers(c: Container, reseller_slug: str = "demo") -> list[Customer]:
    """Two Active customers of `demo` (their tenants made in Partner Center once) and the
    customer user `it@customer.example` (CustomerAdmin of the first)."""
    reseller = c.resellers.get(RESELLER_PARTITION, reseller_slug)
    seeded: list[Customer] = []
    for tenant_name, name, ico, segment, industry in DEMO_CUSTOMERS:
        domain = f"{tenant_name}.onmicrosoft.com"
        holder = c.customers.claim_owner(reseller.slug, Claim("domain", domain))
        known = [c.customers.get(reseller.slug, holder)] if holder else []
        if known:
            seeded.append(known[0])
            continue
        tenant = next(
            (
                t
                for t in customer_service.reseller_tenants(c.partner_center, reseller)
                if t.domain == domain
            ),
            None,
        )
        if tenant is None:
            tenant = c.partner_center.create_customer_tenant(
                _demo_tenant(reseller.require_tenant_id(), domain, name, ico),
                request_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, domain)),
            ).tenant
        command = CustomerImport(segment=segment, industry=industry)
        customer = customer_service.from_tenant(tenant, reseller.slug, c.clock, command)
        seeded.append(c.customers.add(customer, claims=customer.claims()))
    u = CUSTOMER_USER
    users.ensure_user(
        c.directory,
        u.reseller,
        u.email,
        u.role,
        customer_id=seeded[0].id,
        display_name=u.name,
        sign_ins=local_sign_ins(c.settings, u.email),
    )
    return seeded


# The demo orders of the first (commercial) customer: (product, quantity, final status).
DEMO_ORDERS = [("Microsoft 365 E3", 3, OrderStatus.COMPLETED), ("Microsoft 365 E3", 5, None)]


def demo_line(
    c: Container, customer: Customer, title: str, quantity: int, *, trial: bool = False
) -> dict[str, Any]:
    """An order line (camelCase body) for `customer`: the first paid monthly term of `title`,
    or its trial (`trial=True`)."""
    reseller = c.resellers.get(RESELLER_PARTITION, customer.reseller)
    market = c.products.list(reseller.country, page_size=1000).items
    product = next(p for p in market if p.title == title and not p.withdrawn)
    for sku in product.skus:
        availability = sku.availability("commercial") if sku.is_trial == trial else None
        if availability is not None and availability.terms:
            term = availability.terms[0]
            return {
                "catalogItemId": availability.catalog_item_id,
                "quantity": quantity,
                "termDuration": term.duration,
                "billingCycle": term.billing_cycle,
            }
    raise LookupError(f"{title} has no {'trial' if trial else 'paid'} commercial offer")


class _Resends:
    """Keeps provision-order's delayed re-sends, so the step can be run here to the end."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_later(self, queue: Queue, body: Mapping[str, Any], delay_seconds: float) -> None:
        """Remember the message."""
        self.sent.append(dict(body))


def provision_now(c: Container, order: Order, *, wait_seconds: float = 0.5) -> Order:
    """Run `provision-order` for a submitted order in this process until it is final (the
    queued message then finds it done). Returns the order as stored."""
    resends = _Resends()
    book = replace(c.order_book, scheduler=resends)
    message = ProvisionOrderMessage(reseller=order.reseller, order_id=order.id)
    for _ in range(book.policy.max_polls + 1):
        resends.sent.clear()
        orders.provision(book, c.partner_center, message)
        if not resends.sent:
            break
        message = ProvisionOrderMessage.model_validate(resends.sent[-1])
        time.sleep(wait_seconds)
    return c.orders.get(order.reseller, order_row_key(order.id))


def _owner(customer: Customer) -> Principal:
    """The reseller's Account Manager, who places the demo data."""
    owner = next(
        u for u in USERS if u.reseller == customer.reseller and u.role is Role.ACCOUNT_MANAGER
    )
    return Principal("seed", customer.reseller, None, owner.role, owner.email, SignInKind.PLATFORM)


def seed_orders(c: Container, customer: Customer) -> list[Order]:
    """The demo orders of `customer` through the real path: one placed in Partner Center (the
    simulator) and Completed, one left a Draft. Nothing is added if it has orders already."""
    existing = c.orders.list(customer.reseller, equals={"customer_id": customer.id}).items
    if existing:
        return existing
    principal = _owner(customer)
    seeded: list[Order] = []
    for title, quantity, final in DEMO_ORDERS:
        command = OrderCreate.model_validate({"lines": [demo_line(c, customer, title, quantity)]})
        order = orders.create(c.order_book, principal, customer.reseller, customer.id, command)
        if final is not None:
            order = orders.submit(
                c.order_book, principal, customer.reseller, customer.id, order.id, order.etag or ""
            )
            order = provision_now(c, order)
        seeded.append(order)
    return seeded


# The seeded Completed order's subscription gets more seats; and a trial (it ends, and renews
# or expires, within 30 days, so `GET /renewals` has something to show from the start).
DEMO_SEAT_INCREASE = 2
DEMO_TRIAL = "Microsoft 365 Business Premium"


def seed_subscriptions(c: Container, customer: Customer) -> list[Order]:
    """A Completed Change order (more seats on the subscription of the Completed demo order)
    and a Completed trial order of `customer`, through the real path. Nothing is added if the
    customer has a Change order already."""
    existing = c.orders.list(customer.reseller, equals={"customer_id": customer.id}).items
    if any(o.kind is OrderKind.CHANGE for o in existing):
        return [o for o in existing if o.kind is OrderKind.CHANGE or o.lines[0].is_trial]
    principal = _owner(customer)
    bought = next(o for o in existing if o.status is OrderStatus.COMPLETED)
    sub = next(s for s in c.subscriptions.iterate(customer.id) if s.order_id == bought.id)
    more = SubscriptionPatch(quantity=sub.quantity + DEMO_SEAT_INCREASE)
    change = subscription_requests.request_update(
        c.order_book, c.partner_center, principal, customer.reseller, customer.id, sub.id, "*", more
    )
    trial_line = demo_line(c, customer, DEMO_TRIAL, TRIAL_SEATS, trial=True)
    command = OrderCreate.model_validate({"lines": [trial_line]})
    trial = orders.create(c.order_book, principal, customer.reseller, customer.id, command)
    trial = orders.submit(
        c.order_book, principal, customer.reseller, customer.id, trial.id, trial.etag or ""
    )
    return [provision_now(c, change), provision_now(c, trial)]


def seed_quotes(c: Container, customer: Customer) -> list[Quote]:
    """One sent demo quote of `customer` (its e-mail with the link lands in the drop folder).
    Nothing is added if the customer has quotes already."""
    existing = c.quotes.list(customer.reseller, equals={"customer_id": customer.id}).items
    if existing:
        return existing
    principal = _owner(customer)
    command = QuoteCreate.model_validate(
        {
            "lines": [demo_line(c, customer, DEMO_ORDERS[0][0], 10)],
            "note": "Ten more seats for the new office, as discussed.",
        }
    )
    quote = quotes.create(c.quote_book, principal, customer.reseller, customer.id, command)
    sent = quotes.send(c.quote_book, principal, customer.reseller, customer.id, quote.id, "*")
    return [sent]


# Tenants only Partner Center knows, for Sync now to find: (partner id, how many). The second
# partner id begins with demo's, as another reseller's may: Partner Center's `starts_with`
# filter lists its tenant when asked for demo's, and sync must leave it out.
SYNC_ONLY_TENANTS = 3
PREFIX_PARTNER_ID = _DEMO.id + "7"


def _simulator(settings: Settings) -> httpx.Client:
    """A client of the simulator's control API (`/_sim/...`, no sign-in)."""
    ca = settings.partner_center_ca_cert_path
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
    return httpx.Client(
        base_url=settings.partner_center_api_base_url.rstrip("/"), verify=verify, timeout=30
    )


def seed_sync_tenants(c: Container, reseller_slug: str = "demo") -> dict[str, list[str]]:
    """Tenants in the simulator the platform does not know yet: SYNC_ONLY_TENANTS associated
    with the reseller, with subscriptions, and one of PREFIX_PARTNER_ID. Only what is missing
    is made: a tenant the platform created or imported itself does not count, one a sync found
    does. Returns the new tenant ids by partner id."""
    reseller = c.resellers.get(RESELLER_PARTITION, reseller_slug)
    partner_id = reseller.require_tenant_id()
    ours = {
        (customer.tenant_id or "").lower()
        for customer in c.customers.iterate(reseller.slug)
        if customer.sync_run is None
    }
    made: dict[str, list[str]] = {}
    with _simulator(c.settings) as sim:
        for owner, wanted in ((partner_id, SYNC_ONLY_TENANTS), (PREFIX_PARTNER_ID, 1)):
            listed = sim.get("/_sim/state/customers", params={"resellerId": owner})
            listed.raise_for_status()
            there = [t for t in listed.json()["items"] if t["id"].lower() not in ours]
            missing = wanted - len(there)
            if missing <= 0:
                continue
            created = sim.post(
                "/_sim/seed",
                json={
                    "customers": missing,
                    "resellerId": owner,
                    "subscriptionsPerCustomer": 2,
                    "seed": 14,
                },
            )
            created.raise_for_status()
            made[owner] = list(created.json()["customerIds"])
    return made


# The demo's Azure consumption: an Azure plan on the first customer's tenant, placed in Partner
# Center itself (the simulator generates its daily usage from the day it starts).
AZURE_PLAN = f"{AZURE_PLAN_PRODUCT_ID}:0001:CFQ7TTC0PB6M"


def seed_azure_plan(c: Container, customer: Customer) -> str | None:
    """An Azure plan subscription on `customer`'s tenant, unless it has one; the new order's id."""
    tenant = customer.tenant_id or customer.id
    held = c.partner_center.subscription_facts(tenant)
    if any((f.catalog_item_id or "").upper().startswith(AZURE_PLAN_PRODUCT_ID) for f in held):
        return None
    with _simulator(c.settings) as sim:
        placed = sim.post(
            f"/_sim/customers/{tenant}/orders",
            json={
                "catalogItemId": AZURE_PLAN,
                "quantity": 1,
                "termDuration": "",
                "billingCycle": "monthly",
            },
        )
        placed.raise_for_status()
    return str(placed.json()["id"])


def _demo_tenant(partner_id: str, domain: str, name: str, ico: str) -> TenantRequest:
    return TenantRequest(
        domain=domain,
        company_name=name,
        registration_number=ico,
        contact=Contact(
            first_name="Ivan",
            last_name="Dvořák",
            email="it@customer.example",
            phone="+420541123456",
        ),
        address=Address(country="CZ", city="Brno", street="Kounicova 1", postcode="602 00"),
        culture="cs-CZ",
        language="cs",
        reseller_tenant_id=partner_id,
    )


def main() -> int:
    """Seed the storage that the settings (environment, local.settings.json) point at."""
    from localdev.funchost.config import load_settings
    from localdev.tokens import ROOT

    load_settings(ROOT / "local.settings.json")
    c = Container(Settings())
    seeded = seed(c)
    for user in seeded:
        print(f"seeded {user.role.value:<17} {user.email}  ({user.reseller})")
    placed = seed_catalog(c)
    print(f"seeded the CZ catalog ({placed} products placed in the resellers' categories)")
    for name in c.migrate():
        print(f"upgraded stored data: {name}")
    seeded_customers = seed_customers(c)
    for customer in seeded_customers:
        print(
            f"seeded customer {customer.name} ({customer.domain}, {customer.segment}): "
            f"id {customer.id}"
        )
    print(f"seeded {CUSTOMER_USER.role.value:<17} {CUSTOMER_USER.email}  (demo, first customer)")
    first = seeded_customers[0]
    for order in seed_orders(c, first):
        print(f"seeded order {order.id} of {first.name}: {order.status.value}")
    for order in seed_subscriptions(c, first):
        what = f"{order.kind.value.lower()} order {order.id}"
        print(f"seeded {what} of {first.name}: {order.status.value}")
    for quote in seed_quotes(c, first):
        print(f"seeded quote {quote.id} of {first.name}: {quote.status.value}")
    if (azure := seed_azure_plan(c, first)) is not None:
        print(f"seeded an Azure plan of {first.name} in Partner Center (order {azure})")
    # Queued now, run by the host once it is up: the usage report has rows from the start.
    for record in usage_import.begin(c.usage_book):
        print(f"queued the Azure usage import of {record.month} ({record.status.value})")
    for owner, tenants in seed_sync_tenants(c).items():
        whose = "demo" if owner != PREFIX_PARTNER_ID else f"partner {owner} (prefix of demo's)"
        print(f"seeded {len(tenants)} tenant(s) only Partner Center knows, of {whose}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
