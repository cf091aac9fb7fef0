"""The simulator's in-memory state and the operations on it (thread-safe, optionally persisted)."""

from __future__ import annotations

import copy
import logging
import os
import pickle
import random
import re
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import render
from .catalog import Availability, Catalog, Product, Sku
from .clock import SimClock
from .errors import ErrorCode, SimError, bad_request, not_found
from .models import (
    LIVE_STATUSES,
    AuditRecord,
    Cart,
    Customer,
    Order,
    OrderLine,
    PendingPatch,
    RefundWindow,
    Subscription,
    Transition,
)
from .resellers import DEMO_RESELLERS, IndirectReseller
from .rules import (
    CANCELLATION_WINDOW,
    DISABLED_GRACE,
    EXPIRED_GRACE,
    apply_patch,
    business_seats_in_use,
    check_quantity,
    commitment_end,
    midnight,
    renewal_moment,
)

log = logging.getLogger("partner_center_sim")

AZURE_PLAN_PRODUCT_ID = "DZH318Z0BPS6"
SNAPSHOT_NAME = "state.pickle"
# 2: carts live days (cart_lifetime_days), not minutes. 3: a 202 PATCH may finish by polls.
SNAPSHOT_VERSION = 4
MAX_IDEMPOTENT_RESPONSES = 50_000
_DOMAIN_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_REQUIRED_ADDRESS = ("country", "city", "postalCode", "addressLine1")
_REQUIRED_BILLING = ("email", "culture", "language", "companyName")


@dataclass(slots=True)
class SimConfig:
    """Behaviour knobs; the control API changes them at run time (camelCase keys)."""

    partner_tenant_id: str = "9f1c6f3a-4b5e-4d7a-9a51-5d3c0c2f7e11"
    partner_id: str = "4812345"
    billing_currency: str = "EUR"
    customer_provisioning_seconds: float = 0.0
    order_provisioning_seconds: float = 0.0
    cart_lifetime_days: float = 7.0  # Partner Center: "A cart lives 7 days"
    renewal_lag_hours: float = 0.0
    # PATCHes answer 202 + Location: all of them (`async_patch`) or the next N
    # (`async_patch_next`); the operation finishes `async_patch_seconds` of simulated time
    # later, or, with `async_patch_polls` > 0, on that many reads of its Location.
    async_patch: bool = False
    async_patch_next: int = 0
    async_patch_seconds: float = 1.0
    async_patch_polls: int = 0
    # The next N immediate transitions answer in progress (status `inProgress`, events
    # `Started`, no seats moved); each ends on its `async_transition_polls`-th read
    # (`GET …/transitions?operationId=`): failed with `async_transition_failure` as the
    # error's description when that is set, else completed (the seats move then).
    async_transition_next: int = 0
    async_transition_polls: int = 1
    async_transition_failure: str = ""
    require_app_user: bool = True
    rate_limit_per_minute: int = 0
    rate_limit_scope: str = "partner"
    # Azure usage exports (Graph): an operation stays `running` for `usage_export_polls` reads
    # and at least `usage_export_seconds` of simulated time; a non-empty `usage_export_failure`
    # makes new exports fail with it. Blobs hold `usage_lines_per_blob` lines each; their SAS
    # token lasts `usage_sas_minutes` of simulated time. `usage_manifest_inline`: the succeeded
    # operation carries the manifest (`resourceLocation`), else only its link.
    usage_export_polls: int = 1
    usage_export_seconds: float = 0.0
    usage_export_failure: str = ""
    usage_lines_per_blob: int = 1000
    usage_sas_minutes: float = 60.0
    usage_manifest_inline: bool = True

    def to_json(self) -> dict[str, Any]:
        """camelCase view for the control API."""
        return {_camel(k): v for k, v in asdict(self).items()}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply camelCase changes; unknown keys are a 400."""
        names = {_camel(f.name): f for f in fields(self)}
        for key, value in changes.items():
            spec = names.get(key)
            if spec is None:
                raise bad_request(f"Unknown setting {key}.")
            current = getattr(self, spec.name)
            try:
                if isinstance(current, bool):
                    converted: Any = (
                        value if isinstance(value, bool) else str(value).lower() == "true"
                    )
                else:
                    converted = type(current)(value)
            except (TypeError, ValueError) as exc:
                raise bad_request(f"Invalid value for {key}.") from exc
            setattr(self, spec.name, converted)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(slots=True)
class StoredResponse:
    """The first answer to a request id, replayed for retries."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _LineCheck:
    product: Product
    sku: Sku
    availability: Availability
    term: str
    cycle: str
    quantity: int
    line: dict[str, Any]
    parent_index: int | None = None
    children: list[int] = field(default_factory=list)


class SimState:
    """All simulated Partner Center data behind one re-entrant lock."""

    def __init__(
        self,
        catalog: Catalog,
        clock: SimClock,
        config: SimConfig | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.config = config or SimConfig()
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self._changes = 0
        self._saved_changes = 0
        self._clear()

    # ----------------------------------------------------------------- housekeeping

    def _clear(self) -> None:
        self.customers: dict[str, Customer] = {}
        self.domains: dict[str, str] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.subs_by_customer: dict[str, list[str]] = {}
        self.orders: dict[str, Order] = {}
        self.orders_by_customer: dict[str, list[str]] = {}
        self.carts: dict[str, Cart] = {}
        self.audit: list[AuditRecord] = []
        self.transitions: dict[str, list[Transition]] = {}
        self.pending_patches: dict[str, PendingPatch] = {}
        self.idempotent: OrderedDict[str, StoredResponse] = OrderedDict()
        self.trials_used: set[tuple[str, str]] = set()
        self.refresh_tokens: dict[str, dict[str, str]] = {}
        self.resellers: dict[str, IndirectReseller] = {r.id: copy.copy(r) for r in DEMO_RESELLERS}
        self._next_due: datetime | None = None
        self._seeded = 0

    @contextmanager
    def session(self) -> Iterator[datetime]:
        """Hold the lock, let due events happen, and yield the simulated now."""
        with self.lock:
            now = self.clock.now()
            self._process_due(now)
            yield now

    def touch(self) -> None:
        """Record that something changed, so the snapshot writer saves it."""
        self._changes += 1

    @property
    def changes(self) -> int:
        """A counter that grows with every change."""
        return self._changes

    @property
    def unsaved(self) -> bool:
        """Whether the last snapshot is behind the state."""
        return self._changes != self._saved_changes

    def reset(self, keep_tokens: bool = True) -> None:
        """Forget all data (refresh tokens survive so connection.json stays valid)."""
        with self.lock:
            tokens = self.refresh_tokens
            self._clear()
            if keep_tokens:
                self.refresh_tokens = tokens
            self.clock.set_offset(timedelta(0))
            self.config = SimConfig(
                partner_tenant_id=self.config.partner_tenant_id, partner_id=self.config.partner_id
            )
            self.touch()

    def save(self, force: bool = False) -> bool:
        """Write a snapshot if anything changed since the last one (temp file + rename)."""
        if self.state_dir is None:
            return False
        with self.lock:
            if not force and self._changes == self._saved_changes:
                return False
            changes = self._changes
            data = {
                "version": SNAPSHOT_VERSION,
                "clock_offset": self.clock.offset,
                "config": self.config,
                "customers": self.customers,
                "domains": self.domains,
                "subscriptions": self.subscriptions,
                "subs_by_customer": self.subs_by_customer,
                "orders": self.orders,
                "orders_by_customer": self.orders_by_customer,
                "carts": self.carts,
                "audit": self.audit,
                "transitions": self.transitions,
                "pending_patches": self.pending_patches,
                "idempotent": self.idempotent,
                "trials_used": self.trials_used,
                "refresh_tokens": self.refresh_tokens,
                "resellers": self.resellers,
                "seeded": self._seeded,
            }
            payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        target = self.state_dir / SNAPSHOT_NAME
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, target)
        self._saved_changes = changes
        return True

    def load(self) -> bool:
        """Load the snapshot from the state directory, if there is a readable one."""
        if self.state_dir is None:
            return False
        path = self.state_dir / SNAPSHOT_NAME
        if not path.exists():
            return False
        try:
            data = pickle.loads(path.read_bytes())
            if data.get("version") != SNAPSHOT_VERSION:
                raise ValueError("snapshot version differs")
        except Exception:  # a stale or broken snapshot must not keep the simulator from starting
            log.warning("ignoring unreadable snapshot %s", path, exc_info=True)
            return False
        with self.lock:
            self.clock.set_offset(data["clock_offset"])
            # Knobs added since the snapshot was written keep their defaults.
            saved = data["config"]
            self.config = SimConfig(
                **{
                    f.name: getattr(saved, f.name)
                    for f in fields(SimConfig)
                    if hasattr(saved, f.name)
                }
            )
            for name in (
                "customers",
                "domains",
                "subscriptions",
                "subs_by_customer",
                "orders",
                "orders_by_customer",
                "carts",
                "audit",
                "transitions",
                "pending_patches",
                "idempotent",
                "trials_used",
                "refresh_tokens",
            ):
                setattr(self, name, data[name])
            # Snapshots older than the reseller list keep the demo resellers.
            self.resellers = data.get("resellers", self.resellers)
            self._seeded = data["seeded"]
            self._next_due = self.clock.now()  # re-evaluate lifecycles on the next request
        return True

    # ----------------------------------------------------------------- idempotency

    def replay(self, key: str) -> StoredResponse | None:
        """The stored answer for an MS-RequestId, if there is one."""
        with self.lock:
            return self.idempotent.get(key)

    def remember(self, key: str, response: StoredResponse) -> None:
        """Store the first answer for an MS-RequestId."""
        with self.lock:
            self.idempotent.setdefault(key, response)
            while len(self.idempotent) > MAX_IDEMPOTENT_RESPONSES:
                self.idempotent.popitem(last=False)
            self.touch()

    # ----------------------------------------------------------------- indirect resellers

    def indirect_resellers(self) -> list[IndirectReseller]:
        """The distributor's indirect resellers, in the order they were added."""
        return list(self.resellers.values())

    def mpn_id_of(self, reseller_tenant_id: str | None) -> str | None:
        """The MPN id of the indirect reseller with this tenant id (None for one not known):
        what a subscription of its customer shows as `partnerId`."""
        reseller = self.resellers.get((reseller_tenant_id or "").lower())
        return reseller.mpn_id if reseller is not None else None

    def add_indirect_reseller(self, reseller: IndirectReseller) -> IndirectReseller:
        """Add (or replace) an indirect reseller relationship."""
        self.resellers[reseller.id] = reseller
        self.touch()
        return reseller

    # ----------------------------------------------------------------- customers

    def customer(self, customer_id: str, *, ready: bool = False) -> Customer:
        """A customer by id; with `ready`, refuse while its tenant is being provisioned."""
        found = self.customers.get(customer_id.lower())
        if found is None:
            raise not_found(f"Customer {customer_id}", ErrorCode.CUSTOMER_NOT_FOUND)
        if ready and self.clock.now() < found.ready_at:
            raise SimError(
                409,
                ErrorCode.TENANT_PROVISIONING,
                "The customer's tenant is still being provisioned. Try again later.",
            )
        return found

    def list_customers(self, field_name: str | None, value: str | None) -> list[Customer]:
        """Customers in creation order, optionally filtered (starts_with)."""
        if not field_name:
            return list(self.customers.values())
        needle = (value or "").lower()
        key = field_name.lower()
        if key == "indirectreseller":
            return [
                c
                for c in self.customers.values()
                if (c.associated_partner_id or "").lower().startswith(needle)
            ]
        if key in ("companyname", "displayname"):
            return [c for c in self.customers.values() if c.company_name.lower().startswith(needle)]
        if key in ("domain", "defaultdomainname"):
            return [c for c in self.customers.values() if c.domain.startswith(needle)]
        raise bad_request(f"Filter field {field_name} is not supported.")

    def domain_taken(self, domain: str) -> bool:
        """Whether a tenant domain is already used by any tenant."""
        return normalize_domain(domain) in self.domains

    def create_customer(self, body: dict[str, Any], now: datetime) -> Customer:
        """Create a customer and start provisioning its tenant."""
        customer = self._customer_from_body(
            body, now, ready_at=now + timedelta(seconds=self.config.customer_provisioning_seconds)
        )
        self._add_customer(customer)
        self._audit(
            now, customer, "customer", "add_customer", customer.id, {"domain": customer.domain}
        )
        return customer

    def accept_reseller(
        self, body: dict[str, Any], reseller_id: str, now: datetime
    ) -> tuple[Customer, list[Order]]:
        """A tenant that existed before accepts `reseller_id`'s relationship request: it turns up
        among the reseller's customers at once, with an add_customer audit record; the orders
        of `subscriptions` ([{catalogItemId, quantity, termDuration, billingCycle}]) follow."""
        if not reseller_id:
            raise bad_request("associatedPartnerId (the reseller's tenant id) is required.")
        subscriptions = body.get("subscriptions") or []
        if not isinstance(subscriptions, list):
            raise bad_request("subscriptions must be a list of order lines.")
        customer = self._customer_from_body(
            {**body, "associatedPartnerId": reseller_id}, now, ready_at=now
        )
        # Validate the lines before anything is stored: a bad line leaves no half-made tenant.
        lines = _parse_cart_lines({"lineItems": subscriptions}) if subscriptions else []
        checks = self._check_group(customer, lines) if lines else []
        self._add_customer(customer)
        self._audit(
            now, customer, "customer", "add_customer", customer.id, render.customer(customer)
        )
        orders = [self._place_order(customer, checks, "0", now)] if checks else []
        return customer, orders

    def place_direct_order(
        self, customer_id: str, lines: list[dict[str, Any]], now: datetime
    ) -> Order:
        """An order placed in Partner Center's own UI (not through the API): the same checks,
        subscriptions, order and create_order audit record as a checkout, without a cart."""
        customer = self.customer(customer_id, ready=True)
        if not lines:
            raise bad_request("An order needs at least one line.")
        checks = self._check_group(customer, _parse_cart_lines({"lineItems": lines}))
        return self._place_order(customer, checks, "0", now)

    def update_company(self, customer_id: str, changes: dict[str, Any], now: datetime) -> Customer:
        """Company data changed in Partner Center (billingProfile fields, companyName,
        organizationRegistrationNumber): an update_customer_billing_profile audit record.
        `associatedPartnerId: null` ends the reseller relationship
        (remove_partner_customer_relationship)."""
        customer = self.customer(customer_id)
        before = render.customer(customer)
        billing = changes.get("billingProfile") or {}
        if not isinstance(billing, dict):
            raise bad_request("billingProfile must be an object.")
        address = billing.get("defaultAddress")
        if address is not None and not isinstance(address, dict):
            raise bad_request("billingProfile.defaultAddress must be an object.")
        updated = {k: v for k, v in billing.items() if k not in ("links", "attributes", "id")}
        if address is not None:
            updated["defaultAddress"] = {**customer.billing.get("defaultAddress", {}), **address}
        customer.billing = {**customer.billing, **updated}
        name = changes.get("companyName") or billing.get("companyName")
        if name:
            customer.company_name = str(name)
            customer.billing["companyName"] = str(name)
        if "organizationRegistrationNumber" in changes:
            number = changes["organizationRegistrationNumber"]
            customer.registration_number = str(number) if number else None
        after = render.customer(customer)
        if after != before:
            self._audit(
                now,
                customer,
                "customer",
                "update_customer_billing_profile",
                customer.id,
                after["billingProfile"],
                before["billingProfile"],
            )
        if "associatedPartnerId" in changes and not changes["associatedPartnerId"]:
            if customer.associated_partner_id:
                self._audit(
                    now,
                    customer,
                    "partner_customer_relationship",
                    "remove_partner_customer_relationship",
                    customer.id,
                    None,
                    {"associatedPartnerId": customer.associated_partner_id},
                )
            customer.associated_partner_id = None
        self.touch()
        return customer

    def _customer_from_body(
        self, body: dict[str, Any], now: datetime, *, ready_at: datetime
    ) -> Customer:
        billing = body.get("billingProfile")
        company = body.get("companyProfile")
        missing = []
        if not isinstance(billing, dict):
            missing.append("billingProfile")
            billing = {}
        if not isinstance(company, dict) or not company.get("domain"):
            missing.append("companyProfile.domain")
            company = company if isinstance(company, dict) else {}
        missing += [f"billingProfile.{k}" for k in _REQUIRED_BILLING if not billing.get(k)]
        address = billing.get("defaultAddress")
        if not isinstance(address, dict):
            missing.append("billingProfile.defaultAddress")
        else:
            missing += [
                f"billingProfile.defaultAddress.{k}"
                for k in _REQUIRED_ADDRESS
                if not address.get(k)
            ]
        if missing:
            raise bad_request("Missing required fields: " + ", ".join(missing))
        domain = normalize_domain(str(company["domain"]))
        prefix = domain.removesuffix(".onmicrosoft.com")
        if not domain.endswith(".onmicrosoft.com") or not _DOMAIN_PREFIX.match(prefix):
            raise bad_request(f"Domain {company['domain']} is not a valid tenant domain.")
        if domain in self.domains:
            raise SimError(409, ErrorCode.DOMAIN_TAKEN, f"Domain {domain} already exists.")
        customer_id = str(uuid.uuid4())
        customer = Customer(
            id=customer_id,
            commerce_id=str(uuid.uuid4()),
            domain=domain,
            company_name=str(company.get("companyName") or billing["companyName"]),
            registration_number=company.get("organizationRegistrationNumber"),
            billing={k: v for k, v in billing.items() if k not in ("links", "attributes", "id")},
            associated_partner_id=body.get("associatedPartnerId") or None,
            created=now,
            ready_at=ready_at,
            admin_password=secrets.token_urlsafe(12),
        )
        return customer

    def _add_customer(self, customer: Customer) -> None:
        self.customers[customer.id] = customer
        self.domains[customer.domain] = customer.id
        self.subs_by_customer.setdefault(customer.id, [])
        self.orders_by_customer.setdefault(customer.id, [])
        self.touch()

    def set_qualification(self, customer_id: str, segment: str, status: str) -> Customer:
        """Approve, reject or put under review a customer's segment qualification."""
        customer = self.customer(customer_id)
        if status not in ("approved", "underReview", "rejected"):
            raise bad_request("status must be approved, underReview or rejected.")
        before = dict(customer.qualifications)
        customer.qualifications[segment.lower()] = status
        self._audit(
            self.clock.now(),
            customer,
            "customer",
            "update_customer_qualification",
            customer.id,
            {"qualifications": render.qualifications(customer)},
            {"qualifications": before},
        )
        self.touch()
        return customer

    # ----------------------------------------------------------------- carts and orders

    def create_cart(self, customer_id: str, body: dict[str, Any], now: datetime) -> Cart:
        """Create a cart that expires after the configured lifetime (Partner Center: 7 days)."""
        self.customer(customer_id, ready=True)
        lines = _parse_cart_lines(body)
        cart = Cart(
            id=str(uuid.uuid4()),
            customer_id=customer_id.lower(),
            lines=lines,
            created=now,
            modified=now,
            expires=now + timedelta(days=self.config.cart_lifetime_days),
        )
        self.carts[cart.id] = cart
        self.touch()
        return cart

    def cart(self, customer_id: str, cart_id: str) -> Cart:
        """A cart of a customer, or 404."""
        cart = self.carts.get(cart_id.lower())
        if cart is None or cart.customer_id != customer_id.lower():
            raise not_found(f"Cart {cart_id}")
        return cart

    def update_cart(
        self, customer_id: str, cart_id: str, body: dict[str, Any], now: datetime
    ) -> Cart:
        """Replace the lines of an active cart."""
        cart = self._active_cart(customer_id, cart_id, now)
        cart.lines = _parse_cart_lines(body)
        cart.modified = now
        self.touch()
        return cart

    def _active_cart(self, customer_id: str, cart_id: str, now: datetime) -> Cart:
        cart = self.cart(customer_id, cart_id)
        if cart.status == "Ordered":
            raise SimError(
                400, ErrorCode.CART_ALREADY_ORDERED, "The cart has already been submitted."
            )
        if now >= cart.expires:
            raise SimError(400, ErrorCode.CART_EXPIRED, f"Cart {cart.id} has expired.")
        return cart

    def checkout(self, customer_id: str, cart_id: str, now: datetime) -> dict[str, Any]:
        """Check a cart out: one order per order group, errors per failed group.

        Idempotent per cart: a second checkout of a checked-out cart repeats the first result
        (the same orders, as they stand now), whatever its MS-RequestId; nothing is bought twice.
        """
        done = self.cart(customer_id, cart_id)
        if done.status == "Ordered" and done.checkout_result is not None:
            first = done.checkout_result
            return {
                **first,
                "orders": [
                    render.order(self.order(customer_id, o["id"]), now) for o in first["orders"]
                ],
            }
        customer = self.customer(customer_id, ready=True)
        cart = self._active_cart(customer_id, cart_id, now)
        groups: dict[str, list[dict[str, Any]]] = {}
        for line in cart.lines:
            groups.setdefault(str(line.get("orderGroup") or "0"), []).append(line)
        orders: list[Order] = []
        errors: list[dict[str, Any]] = []
        for group, lines in groups.items():
            try:
                checks = self._check_group(customer, lines)
            except SimError as error:
                errors.append(
                    {
                        "orderGroupId": group,
                        "code": error.code,
                        "description": error.description,
                        **error.extra,
                    }
                )
                continue
            orders.append(self._place_order(customer, checks, group, now))
        cart.status = "Ordered"
        cart.modified = now
        result = {
            "orders": [render.order(o, now) for o in orders],
            "orderErrors": errors,
            "attributes": {"objectType": "CartCheckoutResult"},
        }
        cart.checkout_result = result
        self.touch()
        return result

    def _check_group(self, customer: Customer, lines: list[dict[str, Any]]) -> list[_LineCheck]:
        tenant = self.tenant_subscriptions(customer.id)
        checks: list[_LineCheck] = []
        business_in_cart: dict[str, int] = {}
        trials_in_cart: set[str] = set()
        flat: list[tuple[dict[str, Any], int | None]] = []
        for line in lines:
            flat.append((line, None))
            parent = len(flat) - 1
            flat.extend((addon, parent) for addon in line.get("addonItems") or [])
        for line, parent_index in flat:
            check = self._check_line(customer, line, tenant, business_in_cart, trials_in_cart)
            check.parent_index = parent_index
            if parent_index is not None:
                checks[parent_index].children.append(len(checks))
            checks.append(check)
        cart_keys = {c.sku.key for c in checks}
        for check in checks:
            prerequisites = check.sku.prerequisite_keys
            if not prerequisites:
                continue
            on_tenant = any(
                s.sku_key in prerequisites and s.status in LIVE_STATUSES for s in tenant
            )
            if not on_tenant and not (cart_keys & set(prerequisites)):
                raise SimError(
                    400,
                    ErrorCode.ADDON_PREREQUISITE_MISSING,
                    f"{check.sku.title} needs one of its prerequisite offers on the tenant.",
                    lineItemId=check.line.get("id"),
                )
        return checks

    def _check_line(
        self,
        customer: Customer,
        line: dict[str, Any],
        tenant: list[Subscription],
        business_in_cart: dict[str, int],
        trials_in_cart: set[str],
    ) -> _LineCheck:
        item = self.catalog.item(line["catalogItemId"])
        if item is None:
            raise SimError(
                400,
                ErrorCode.INVALID_CATALOG_ITEM,
                f"Catalog item {line['catalogItemId']} is not valid.",
                lineItemId=line.get("id"),
            )
        product, sku, availability = item
        _check_segment(customer, availability.segment)
        cycle = str(line.get("billingCycle") or "").lower()
        term = str(line.get("termDuration") or "")
        if product.id == AZURE_PLAN_PRODUCT_ID:
            cycle, term = cycle or "monthly", ""
        elif sku.is_trial:
            term = term or "P1M"
            cycle = cycle or "none"
        if product.id != AZURE_PLAN_PRODUCT_ID and not availability.offers(term, cycle):
            raise SimError(
                400,
                ErrorCode.INVALID_TERM_OR_BILLING_CYCLE,
                f"Term {term or '(none)'} with {cycle or '(none)'} billing is not offered for "
                f"{line['catalogItemId']}.",
                lineItemId=line.get("id"),
            )
        if sku.is_trial:
            if (customer.id, product.id) in self.trials_used or product.id in trials_in_cart:
                raise SimError(
                    400,
                    ErrorCode.TRIAL_NOT_ALLOWED,
                    "The customer already had a trial of this offer.",
                    lineItemId=line.get("id"),
                )
            trials_in_cart.add(product.id)
        quantity = int(line["quantity"])
        seats = 0
        if sku.business_seat_cap:
            seats = business_seats_in_use(tenant, sku, None) + business_in_cart.get(product.id, 0)
        try:
            check_quantity(sku, quantity, seats)
        except SimError as error:
            error.extra["lineItemId"] = line.get("id")
            raise
        if sku.business_seat_cap:
            business_in_cart[product.id] = business_in_cart.get(product.id, 0) + quantity
        return _LineCheck(product, sku, availability, term, cycle, quantity, line)

    def _place_order(
        self, customer: Customer, checks: list[_LineCheck], group: str, now: datetime
    ) -> Order:
        delay = timedelta(seconds=self.config.order_provisioning_seconds)
        order = Order(
            id=str(uuid.uuid4()),
            customer_id=customer.id,
            lines=[],
            currency=self.config.billing_currency,
            created=now,
            ready_at=now + delay,
            billing_cycle=checks[0].cycle,
            transaction_type="UserPurchase",
            order_group=group,
        )
        tenant = self.tenant_subscriptions(customer.id)
        created: list[Subscription] = []
        for index, check in enumerate(checks):
            parent_id: str | None = None
            if check.parent_index is not None:
                parent_id = created[check.parent_index].id
            elif check.sku.prerequisite_keys:
                parent_id = next(
                    (
                        s.id
                        for s in [*tenant, *created]
                        if s.sku_key in check.sku.prerequisite_keys and s.status in LIVE_STATUSES
                    ),
                    None,
                )
            sub = self._new_subscription(customer, check, order.id, parent_id, now, delay)
            created.append(sub)
            price = self.catalog.price(check.sku, check.term, check.cycle, order.currency)
            order.lines.append(
                OrderLine(
                    number=index,
                    offer_id=check.availability.catalog_item_id,
                    subscription_id=sub.id,
                    parent_subscription_id=parent_id,
                    term_duration=check.term,
                    billing_cycle=check.cycle,
                    transaction_type="New",
                    quantity=check.quantity,
                    unit_price=price.unit_price,
                    erp=price.erp,
                    partner_id_on_record=sub.partner_id,
                    friendly_name=sub.friendly_name,
                )
            )
        self._add_order(order)
        self._audit(
            now,
            customer,
            "order",
            "create_order",
            order.id,
            {
                "id": order.id,
                "lines": len(order.lines),
                "subscriptionIds": [line.subscription_id for line in order.lines],
            },
        )
        return order

    def _new_subscription(
        self,
        customer: Customer,
        check: _LineCheck,
        order_id: str,
        parent_id: str | None,
        now: datetime,
        delay: timedelta,
    ) -> Subscription:
        sku = check.sku
        is_azure = check.product.id == AZURE_PLAN_PRODUCT_ID
        window = not (sku.is_trial or is_azure)
        sub = Subscription(
            id=str(uuid.uuid4()),
            customer_id=customer.id,
            product_id=check.product.id,
            sku_id=sku.id,
            availability_id=check.availability.id,
            segment=check.availability.segment,
            friendly_name=str(check.line.get("friendlyName") or sku.title),
            quantity=check.quantity,
            status="active",
            auto_renew=window,
            billing_cycle=check.cycle,
            term_duration=check.term,
            created=now,
            ready_at=now + delay,
            effective_start=midnight(now),
            commitment_end=None if is_azure else commitment_end(now, check.term, sku.is_trial),
            cancel_until=now + CANCELLATION_WINDOW if window else None,
            refund_windows=[RefundWindow(check.quantity, now + CANCELLATION_WINDOW)]
            if window
            else [],
            is_trial=sku.is_trial,
            partner_id=_reseller_of(check.line) or self.mpn_id_of(customer.associated_partner_id),
            order_id=order_id,
            parent_id=parent_id,
            trial_seats=check.quantity if sku.is_trial else 0,
        )
        if sku.is_trial:
            self.trials_used.add((customer.id, check.product.id))
        self._add_subscription(sub)
        return sub

    def _add_subscription(self, sub: Subscription) -> None:
        self.subscriptions[sub.id] = sub
        self.subs_by_customer.setdefault(sub.customer_id, []).append(sub.id)
        self._note_due(self._due(sub))
        self.touch()

    def _add_order(self, order: Order) -> None:
        self.orders[order.id] = order
        self.orders_by_customer.setdefault(order.customer_id, []).append(order.id)
        self.touch()

    def order(self, customer_id: str, order_id: str) -> Order:
        """An order of a customer, or 404."""
        self.customer(customer_id)
        order = self.orders.get(order_id.lower())
        if order is None or order.customer_id != customer_id.lower():
            raise not_found(f"Order {order_id}")
        return order

    def customer_orders(self, customer_id: str) -> list[Order]:
        """Orders of a customer, oldest first."""
        self.customer(customer_id)
        return [self.orders[i] for i in self.orders_by_customer.get(customer_id.lower(), [])]

    # ----------------------------------------------------------------- subscriptions

    def tenant_subscriptions(self, customer_id: str) -> list[Subscription]:
        """All subscriptions of a customer, oldest first."""
        return [self.subscriptions[i] for i in self.subs_by_customer.get(customer_id.lower(), [])]

    def subscription(self, customer_id: str, subscription_id: str) -> Subscription:
        """A subscription of a customer, or 404."""
        self.customer(customer_id)
        sub = self.subscriptions.get(subscription_id.lower())
        if sub is None or sub.customer_id != customer_id.lower():
            raise not_found(f"Subscription {subscription_id}")
        return sub

    def patch_subscription(
        self, customer_id: str, subscription_id: str, body: dict[str, Any], now: datetime
    ) -> Subscription:
        """Apply a PATCH now: quantity, status, auto-renew, billing, term, scheduled changes."""
        customer = self.customer(customer_id)
        sub = self.subscription(customer_id, subscription_id)
        before = _audit_view(sub)
        outcome = apply_patch(
            sub,
            body,
            catalog=self.catalog,
            tenant_subs=self.tenant_subscriptions(customer.id),
            now=now,
            renewal_lag=timedelta(hours=self.config.renewal_lag_hours),
        )
        if outcome.quantity_delta or outcome.cancelled:
            self._change_order(customer, sub, outcome.quantity_delta, outcome.cancelled, now)
        if outcome.changed_fields:
            self._note_due(self._due(sub))
            self._audit(
                now,
                customer,
                "subscription",
                "update_subscription",
                sub.id,
                _audit_view(sub),
                before,
            )
            self.touch()
        return sub

    def validate_patch(
        self, customer_id: str, subscription_id: str, body: dict[str, Any], now: datetime
    ) -> None:
        """Run the PATCH rules on a copy, so a slow (202) PATCH can refuse at once."""
        sub = copy.deepcopy(self.subscription(customer_id, subscription_id))
        apply_patch(
            sub,
            body,
            catalog=self.catalog,
            tenant_subs=self.tenant_subscriptions(customer_id),
            now=now,
            renewal_lag=timedelta(hours=self.config.renewal_lag_hours),
        )

    def take_async_patch(self) -> bool:
        """Whether this PATCH answers 202 (counting down `async_patch_next`)."""
        if self.config.async_patch_next > 0:
            self.config.async_patch_next -= 1
            self.touch()
            return True
        return self.config.async_patch

    def queue_patch(
        self, customer_id: str, subscription_id: str, body: dict[str, Any], now: datetime
    ) -> PendingPatch:
        """Accept a PATCH for later (the 202 + Location answer)."""
        self.validate_patch(customer_id, subscription_id, body, now)
        by_polls = self.config.async_patch_polls > 0
        op = PendingPatch(
            id=str(uuid.uuid4()),
            customer_id=customer_id.lower(),
            subscription_id=subscription_id.lower(),
            body=body,
            created=now,
            # Finished by reads of its Location only: never by the clock.
            due=datetime.max.replace(tzinfo=now.tzinfo)
            if by_polls
            else now + timedelta(seconds=self.config.async_patch_seconds),
            polls_left=self.config.async_patch_polls if by_polls else None,
        )
        self.pending_patches[op.id] = op
        if not by_polls:
            self._note_due(op.due)
        self.touch()
        return op

    def pending_patch(self, customer_id: str, operation_id: str) -> PendingPatch:
        """A queued PATCH operation, or 404."""
        op = self.pending_patches.get(operation_id.lower())
        if op is None or op.customer_id != customer_id.lower():
            raise not_found(f"Operation {operation_id}")
        return op

    def poll_patch(self, customer_id: str, operation_id: str, now: datetime) -> PendingPatch:
        """Read a queued PATCH; one that finishes after N polls does so on the Nth read."""
        op = self.pending_patch(customer_id, operation_id)
        if op.status == "inProgress" and op.polls_left is not None:
            op.polls_left -= 1
            if op.polls_left <= 0:
                self._finish_patch(op, now)
            self.touch()
        return op

    def _change_order(
        self, customer: Customer, sub: Subscription, delta: int, cancelled: bool, now: datetime
    ) -> Order:
        sku = self.catalog.sku_by_key(sub.sku_key)
        price = (
            self.catalog.price(
                sku, sub.term_duration, sub.billing_cycle, self.config.billing_currency
            )
            if sku
            else None
        )
        kind = "cancel" if cancelled else ("addQuantity" if delta > 0 else "removeQuantity")
        order = Order(
            id=str(uuid.uuid4()),
            customer_id=customer.id,
            lines=[
                OrderLine(
                    number=0,
                    offer_id=sub.catalog_item_id,
                    subscription_id=sub.id,
                    parent_subscription_id=sub.parent_id,
                    term_duration=sub.term_duration,
                    billing_cycle=sub.billing_cycle,
                    transaction_type=kind,
                    quantity=-sub.quantity if cancelled else delta,
                    unit_price=price.unit_price if price else Decimal(0),
                    erp=price.erp if price else Decimal(0),
                    partner_id_on_record=sub.partner_id,
                    friendly_name=sub.friendly_name,
                )
            ],
            currency=self.config.billing_currency,
            created=now,
            ready_at=now,
            billing_cycle=sub.billing_cycle,
            transaction_type="UserPurchase",
        )
        self._add_order(order)
        return order

    def addons(self, customer_id: str, subscription_id: str) -> list[Subscription]:
        """Add-on subscriptions bought on top of a base subscription."""
        base = self.subscription(customer_id, subscription_id)
        return [s for s in self.tenant_subscriptions(customer_id) if s.parent_id == base.id]

    def set_consumed_units(
        self, customer_id: str, subscription_id: str, consumed: int
    ) -> Subscription:
        """Assign licences (the directory side Partner Center reports as consumedUnits)."""
        sub = self.subscription(customer_id, subscription_id)
        sub.consumed_units = max(0, min(consumed, sub.quantity))
        self.touch()
        return sub

    # ----------------------------------------------------------------- transitions

    def eligibilities(self, sub: Subscription, eligibility_type: str) -> list[dict[str, Any]]:
        """Where a subscription may transition to (a trial to its paid offer, paid to upgrades),
        one item per target catalog item with an eligibility per transition type, as Partner
        Center answers `transitionEligibilities`."""
        sku = self.catalog.sku_by_key(sub.sku_key)
        result: list[dict[str, Any]] = []
        if sku is None:
            return result
        errors: list[dict[str, Any]] = []
        if sub.status != "active":
            errors.append(
                {
                    "code": 1,
                    "description": (
                        "Subscription can't be Transitioned - source subscription isn't active."
                    ),
                }
            )
        elif self.clock.now() < sub.ready_at:
            errors.append(
                {
                    "code": 1,
                    "description": "Subscription can't be Transitioned - source subscription "
                    "isn't provisioned yet.",
                }
            )
        for key in sku.upgrade_target_keys:
            target = self.catalog.sku_by_key(key)
            if target is None:
                continue
            segment = "commercial" if sub.is_trial else sub.segment
            availability = target.availability_for(segment)
            if availability is None:
                continue
            types = (
                ["transition_only"]
                if sub.is_trial
                else ["transition_only", "transition_with_license_transfer"]
            )
            result.append(
                {
                    "operationId": str(uuid.uuid4()),
                    "catalogItemId": availability.catalog_item_id,
                    "title": target.title,
                    "description": target.description,
                    "quantity": sub.quantity,
                    "eligibilities": [
                        {"isEligible": not errors, "transitionType": t, "errors": errors}
                        for t in types
                    ],
                    # Empty for trials and scheduled transitions (Microsoft's words).
                    "subscriptionEligibilities": [],
                    "attributes": {"objectType": "TransitionEligibility"},
                }
            )
        return result

    def transition(
        self, customer_id: str, subscription_id: str, body: dict[str, Any], now: datetime
    ) -> Transition:
        """Convert a trial or upgrade a subscription, immediately or at the end of its term."""
        customer = self.customer(customer_id, ready=True)
        source = self.subscription(customer_id, subscription_id)
        source_was_trial, before = source.is_trial, _audit_view(source)
        eligibility_type = str(body.get("eligibilityType") or "immediate").lower()
        if eligibility_type not in ("immediate", "scheduled"):
            raise bad_request("eligibilityType must be immediate or scheduled.")
        to_sub: Subscription | None = None
        if body.get("toSubscriptionId"):
            to_sub = self.subscription(customer_id, str(body["toSubscriptionId"]))
            to_item_id = to_sub.catalog_item_id
        else:
            to_item_id = str(body.get("toCatalogItemId") or "")
        eligible = {
            e["catalogItemId"].upper(): e for e in self.eligibilities(source, eligibility_type)
        }
        target_entry = eligible.get(to_item_id.upper())
        if target_entry is None:
            raise SimError(
                400,
                ErrorCode.INVALID_CATALOG_ITEM,
                f"{to_item_id or 'The target'} is not an eligible transition target.",
            )
        if not any(e["isEligible"] for e in target_entry["eligibilities"]):
            reasons = [
                err["description"] for e in target_entry["eligibilities"] for err in e["errors"]
            ]
            raise SimError(
                400,
                ErrorCode.INVALID_SUBSCRIPTION_UPDATE,
                reasons[0] if reasons else "The subscription is not eligible for a transition.",
            )
        item = self.catalog.item(to_item_id)
        assert item is not None
        product, sku, availability = item
        quantity = body.get("quantity", source.quantity)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise bad_request("quantity must be a positive integer.")
        term = str(body.get("termDuration") or ("P1Y" if source.is_trial else source.term_duration))
        cycle = str(
            body.get("billingCycle") or ("monthly" if source.is_trial else source.billing_cycle)
        ).lower()
        if not availability.offers(term, cycle):
            raise SimError(
                400,
                ErrorCode.INVALID_TERM_OR_BILLING_CYCLE,
                f"Term {term} with {cycle} billing is not offered.",
            )
        if source.is_trial and quantity < source.trial_seats:
            raise SimError(
                400,
                ErrorCode.QUANTITY_OUT_OF_RANGE,
                f"A trial converts with at least {source.trial_seats} seats.",
                availableQuantity=sku.maximum_quantity,
            )
        if not source.is_trial and quantity > source.quantity:
            raise bad_request("An upgrade cannot move more seats than the subscription has.")
        transition_type = str(body.get("transitionType") or "transition_only")
        record = Transition(
            id=str(uuid.uuid4()),
            customer_id=customer.id,
            from_subscription_id=source.id,
            to_subscription_id=to_sub.id if to_sub else None,
            from_catalog_item_id=source.catalog_item_id,
            to_catalog_item_id=availability.catalog_item_id,
            quantity=quantity,
            term_duration=term,
            billing_cycle=cycle,
            transition_type=transition_type,
            eligibility_type=eligibility_type,
            status="pending" if eligibility_type == "scheduled" else "complete",
            created=now,
        )
        if eligibility_type == "scheduled":
            # A scheduled transition is the next term's instructions: applied at renewal.
            source.auto_renew = True
            source.scheduled = {
                "product": {
                    "productId": product.id,
                    "skuId": sku.id,
                    "availabilityId": availability.id,
                    "billingCycle": cycle,
                    "termDuration": term,
                },
                "quantity": quantity,
            }
            source.version += 1
        elif self.config.async_transition_next > 0:
            self.config.async_transition_next -= 1
            record.status = "inProgress"
            record.polls_left = max(1, self.config.async_transition_polls)
        else:
            record.order_id, record.to_subscription_id = self._transition_now(
                customer, source, to_sub, product, sku, availability, quantity, term, cycle, now
            )
        self.transitions.setdefault(source.id, []).append(record)
        self._audit(
            now,
            customer,
            "subscription",
            "convert_trial_subscription" if source_was_trial else "upgrade_subscription",
            source.id,
            render.transition(record),
            before,
        )
        self.touch()
        return record

    def read_transitions(
        self, customer_id: str, subscription_id: str, operation_id: str | None, now: datetime
    ) -> list[Transition]:
        """A subscription's transitions (only `operation_id`'s when given); reading one still
        in progress counts down its reads, and the last one ends it."""
        sub = self.subscription(customer_id, subscription_id)
        records = self.transitions.get(sub.id, [])
        if operation_id is None:
            return list(records)
        found = [t for t in records if t.id.lower() == operation_id.lower()]
        for record in found:
            if record.status == "inProgress" and record.polls_left is not None:
                record.polls_left -= 1
                if record.polls_left <= 0:
                    self._end_transition(record, now)
                self.touch()
        return found

    def _end_transition(self, record: Transition, now: datetime) -> None:
        """Finish a transition answered in progress: fail it (as configured) or move the
        seats as an immediate one would have."""
        record.polls_left = None
        if self.config.async_transition_failure:
            record.status = "failed"
            record.error = {
                "code": int(ErrorCode.INVALID_SUBSCRIPTION_UPDATE),
                "description": self.config.async_transition_failure,
            }
            return
        customer = self.customer(record.customer_id, ready=True)
        source = self.subscription(record.customer_id, record.from_subscription_id)
        to_sub = (
            self.subscription(record.customer_id, record.to_subscription_id)
            if record.to_subscription_id
            else None
        )
        item = self.catalog.item(record.to_catalog_item_id)
        assert item is not None
        product, sku, availability = item
        record.order_id, record.to_subscription_id = self._transition_now(
            customer,
            source,
            to_sub,
            product,
            sku,
            availability,
            record.quantity,
            record.term_duration,
            record.billing_cycle,
            now,
        )
        record.status = "complete"

    def _transition_now(
        self,
        customer: Customer,
        source: Subscription,
        to_sub: Subscription | None,
        product: Product,
        sku: Sku,
        availability: Availability,
        quantity: int,
        term: str,
        cycle: str,
        now: datetime,
    ) -> tuple[str, str]:
        line = {"catalogItemId": availability.catalog_item_id, "quantity": quantity}
        check = _LineCheck(product, sku, availability, term, cycle, quantity, line)
        order = Order(
            id=str(uuid.uuid4()),
            customer_id=customer.id,
            lines=[],
            currency=self.config.billing_currency,
            created=now,
            ready_at=now,
            billing_cycle=cycle,
            transaction_type="UserPurchase",
        )
        if to_sub is not None:
            to_sub.quantity += quantity
            to_sub.version += 1
            target = to_sub
        else:
            target = self._new_subscription(
                customer, check, order.id, source.parent_id, now, timedelta(0)
            )
            target.partner_id = source.partner_id
        if source.is_trial:
            # A converted trial becomes a paid subscription with its own cancellation window.
            source.status = "deleted"
            source.auto_renew = False
        else:
            # Upgrades get no cancellation window; a partial upgrade keeps the source's end date.
            target.cancel_until = None
            target.refund_windows = []
            target.commitment_end = source.commitment_end
            target.term_duration = source.term_duration
            source.quantity -= quantity
            if source.quantity == 0:
                source.status = "deleted"
                source.auto_renew = False
        source.scheduled = None
        source.version += 1
        price = self.catalog.price(sku, term, cycle, order.currency)
        order.lines.append(
            OrderLine(
                number=0,
                offer_id=availability.catalog_item_id,
                subscription_id=target.id,
                parent_subscription_id=None,
                term_duration=target.term_duration,
                billing_cycle=cycle,
                transaction_type="convert" if source.is_trial else "upgrade",
                quantity=quantity,
                unit_price=price.unit_price,
                erp=price.erp,
                partner_id_on_record=target.partner_id,
                friendly_name=target.friendly_name,
            )
        )
        self._add_order(order)
        return order.id, target.id

    # ----------------------------------------------------------------- time passing

    def _note_due(self, due: datetime | None) -> None:
        if due is not None and (self._next_due is None or due < self._next_due):
            self._next_due = due

    def _due(self, sub: Subscription) -> datetime | None:
        if sub.status in ("active", "suspended"):
            renewal = renewal_moment(sub)
            if renewal is None:
                return None
            return renewal + timedelta(hours=self.config.renewal_lag_hours)
        if sub.status == "expired" and sub.lifecycle_since:
            return sub.lifecycle_since + EXPIRED_GRACE
        if sub.status == "disabled" and sub.lifecycle_since:
            return sub.lifecycle_since + DISABLED_GRACE
        return None

    def _process_due(self, now: datetime) -> None:
        if self._next_due is None or now < self._next_due:
            return
        next_due: datetime | None = None
        for op in list(self.pending_patches.values()):
            if op.status != "inProgress":
                continue
            if op.due <= now:
                self._finish_patch(op, op.due)
            else:
                next_due = op.due if next_due is None else min(next_due, op.due)
        for sub in self.subscriptions.values():
            due = self._due(sub)
            while due is not None and due <= now:
                self._step(sub, due)
                due = self._due(sub)
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        self._next_due = next_due
        self.touch()

    def _finish_patch(self, op: PendingPatch, at: datetime) -> None:
        try:
            self.patch_subscription(op.customer_id, op.subscription_id, op.body, at)
            op.status = "succeeded"
        except SimError as error:
            op.status = "failed"
            op.error = error.body()

    def _step(self, sub: Subscription, at: datetime) -> None:
        renewal = renewal_moment(sub)
        if sub.status == "active" and sub.auto_renew and renewal is not None:
            # Microsoft renews (and expires) on its own: no partner operation, no audit record.
            # The sync finds both by the dates (REFERENCE.md, audit records).
            self._renew(sub, renewal, at)
        elif sub.status == "active" and renewal is not None:
            sub.status, sub.lifecycle_since = "expired", renewal
        elif sub.status == "suspended" and renewal is not None:
            sub.status, sub.lifecycle_since = "disabled", renewal
        elif sub.status == "expired":
            sub.status = "disabled"
            sub.lifecycle_since = (sub.lifecycle_since or at) + EXPIRED_GRACE
        elif sub.status == "disabled":
            sub.status = "deleted"
        sub.version += 1

    def _renew(self, sub: Subscription, renewal: datetime, at: datetime) -> None:
        scheduled = sub.scheduled or {}
        product = scheduled.get("product") if isinstance(scheduled, dict) else None
        if sub.is_trial and not product:
            # A trial with auto-renew on becomes paid: annual term, monthly billing.
            paid = self.catalog.sku_by_key(f"{sub.product_id}:0001")
            availability = paid.availability_for("commercial") if paid else None
            if availability is not None:
                sub.sku_id, sub.availability_id = availability.sku_id, availability.id
                sub.term_duration, sub.billing_cycle = "P1Y", "monthly"
        if product:
            item = self.catalog.item(
                f"{product.get('productId')}:{product.get('skuId')}:{product.get('availabilityId')}"
            )
            if item is not None:
                sub.product_id, sub.sku_id, sub.availability_id = (
                    item[2].product_id,
                    item[2].sku_id,
                    item[2].id,
                )
            sub.term_duration = str(product.get("termDuration") or sub.term_duration)
            sub.billing_cycle = str(product.get("billingCycle") or sub.billing_cycle)
        if isinstance(scheduled, dict) and isinstance(scheduled.get("quantity"), int):
            sub.quantity = scheduled["quantity"]
        sub.is_trial = False
        sub.scheduled = None
        sub.effective_start = renewal
        sub.commitment_end = commitment_end(renewal, sub.term_duration)
        # Every renewal opens a new 7-day window for the whole quantity.
        sub.cancel_until = at + CANCELLATION_WINDOW
        sub.refund_windows = [RefundWindow(sub.quantity, at + CANCELLATION_WINDOW)]

    def advance_clock(self, delta: timedelta) -> datetime:
        """Move simulated time and let renewals, expiries and queued changes happen."""
        with self.lock:
            now = self.clock.advance(delta)
            self._next_due = now if self._next_due is None else min(self._next_due, now)
            self._process_due(now)
            self.touch()
            return now

    # ----------------------------------------------------------------- audit

    def _audit(
        self,
        now: datetime,
        customer: Customer | None,
        resource_type: str,
        operation: str,
        resource_id: str,
        new_value: dict[str, Any] | None,
        old_value: dict[str, Any] | None = None,
    ) -> None:
        self.audit.append(
            AuditRecord(
                id=str(uuid.uuid4()),
                date=now,
                customer_id=customer.id if customer else None,
                customer_name=customer.company_name if customer else None,
                resource_type=resource_type,
                operation_type=operation,
                resource_id=resource_id,
                new_value=new_value,
                old_value=old_value,
            )
        )

    def audit_between(
        self, start: datetime, end: datetime, spec: dict[str, Any] | None = None
    ) -> list[AuditRecord]:
        """Audit records in [start, end), newest first (as Partner Center lists them), filtered
        by `{"Field": CustomerId|ResourceType|CompanyName, "Value", "Operator"}`."""
        found = [a for a in self.audit if start <= a.date < end and _audit_matches(a, spec)]
        found.reverse()
        return found

    # ----------------------------------------------------------------- seeding

    def seed(
        self,
        count: int,
        reseller_id: str | None,
        subscriptions_per_customer: int,
        seed: int | None,
        now: datetime,
    ) -> list[str]:
        """Add existing customers that accepted `reseller_id`, with subscriptions bought earlier."""
        rng = random.Random(seed if seed is not None else self._seeded)
        pool = [self.catalog.sku_by_slug(s) for s in _SEED_POOL]
        ids: list[str] = []
        for _ in range(count):
            self._seeded += 1
            n = self._seeded
            first, second = rng.choice(_SEED_NAMES), rng.choice(_SEED_TRADES)
            name = f"{first} {second} {rng.choice(('s.r.o.', 'a.s.', 'spol. s r.o.'))}"
            domain = f"{_ascii(first)}{_ascii(second)}{n}.onmicrosoft.com"
            while domain in self.domains:
                domain = (
                    f"{_ascii(first)}{_ascii(second)}{n}x{rng.randrange(10**6)}.onmicrosoft.com"
                )
            created = now - timedelta(days=rng.randint(30, 900))
            customer = Customer(
                id=str(uuid.uuid4()),
                commerce_id=str(uuid.uuid4()),
                domain=domain,
                company_name=name,
                registration_number=f"{rng.randrange(10**7, 10**8)}",
                billing={
                    "firstName": "Jana",
                    "lastName": first,
                    "email": f"admin@{domain}",
                    "culture": "cs-CZ",
                    "language": "cs",
                    "companyName": name,
                    "defaultAddress": {
                        "country": "CZ",
                        "city": rng.choice(("Praha", "Brno", "Ostrava", "Plzeň", "Olomouc")),
                        "region": "",
                        "postalCode": f"{rng.randrange(100, 799)} {rng.randrange(10, 99)}",
                        "addressLine1": f"Hlavní {rng.randrange(1, 200)}",
                        "phoneNumber": f"+420{rng.randrange(600000000, 799999999)}",
                    },
                },
                associated_partner_id=reseller_id,
                created=created,
                ready_at=created,
            )
            self._add_customer(customer)
            self._seed_subscriptions(customer, rng, pool, subscriptions_per_customer, now)
            ids.append(customer.id)
        self.touch()
        return ids

    def _seed_subscriptions(
        self, customer: Customer, rng: random.Random, pool: list[Sku], count: int, now: datetime
    ) -> None:
        if count <= 0:
            return
        bought = customer.created + timedelta(days=rng.randint(0, 20))
        order = Order(
            id=str(uuid.uuid4()),
            customer_id=customer.id,
            lines=[],
            currency=self.config.billing_currency,
            created=bought,
            ready_at=bought,
            billing_cycle="monthly",
            transaction_type="UserPurchase",
        )
        for index, sku in enumerate(rng.sample(pool, min(count, len(pool)))):
            availability = sku.availability_for("commercial")
            assert availability is not None
            is_azure = sku.product_id == AZURE_PLAN_PRODUCT_ID
            if is_azure:
                term, cycle, quantity = "", "monthly", 1
            else:
                term = "P1Y" if rng.random() < 0.7 else "P1M"
                cycle = "annual" if term == "P1Y" and rng.random() < 0.3 else "monthly"
                quantity = rng.randint(1, 40)
            start = midnight(bought)
            end: datetime | None = None
            if not is_azure:
                # Roll the term forward through past renewals to the current one.
                end = commitment_end(start, term)
                while end < now:
                    start = end + timedelta(days=1)
                    end = commitment_end(start, term)
            window_end = max(start, bought) + CANCELLATION_WINDOW
            sub = Subscription(
                id=str(uuid.uuid4()),
                customer_id=customer.id,
                product_id=sku.product_id,
                sku_id=sku.id,
                availability_id=availability.id,
                segment="commercial",
                friendly_name=sku.title,
                quantity=quantity,
                status="active",
                auto_renew=not is_azure,
                billing_cycle=cycle,
                term_duration=term,
                created=bought,
                ready_at=bought,
                effective_start=start,
                commitment_end=end,
                cancel_until=None if is_azure else window_end,
                refund_windows=[] if is_azure else [RefundWindow(quantity, window_end)],
                is_trial=False,
                partner_id=self.mpn_id_of(customer.associated_partner_id),
                order_id=order.id,
                consumed_units=rng.randint(0, quantity),
            )
            self._add_subscription(sub)
            price = self.catalog.price(sku, term, cycle, order.currency)
            order.lines.append(
                OrderLine(
                    number=index,
                    offer_id=availability.catalog_item_id,
                    subscription_id=sub.id,
                    parent_subscription_id=None,
                    term_duration=term,
                    billing_cycle=cycle,
                    transaction_type="New",
                    quantity=quantity,
                    unit_price=price.unit_price,
                    erp=price.erp,
                    partner_id_on_record=sub.partner_id,
                    friendly_name=sub.friendly_name,
                )
            )
        self._add_order(order)

    # ----------------------------------------------------------------- tokens

    def issue_refresh_token(self, user: str) -> str:
        """A refresh token for an app+user (Secure Application Model) sign-in."""
        with self.lock:
            token = "sim-rt." + secrets.token_urlsafe(32)
            self.refresh_tokens[token] = {
                "upn": user,
                "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, user)),
            }
            self.touch()
            return token

    def refresh_token_user(self, token: str) -> dict[str, str] | None:
        """The user a refresh token was issued to, or None."""
        with self.lock:
            return self.refresh_tokens.get(token)

    # ----------------------------------------------------------------- test views

    def summary(self) -> dict[str, Any]:
        """Counts for tests."""
        with self.lock:
            return {
                "customers": len(self.customers),
                "subscriptions": len(self.subscriptions),
                "orders": len(self.orders),
                "carts": len(self.carts),
                "auditRecords": len(self.audit),
                "now": render.iso(self.clock.now()),
            }


def normalize_domain(domain: str) -> str:
    """Tenant domains compare case-insensitively; a bare prefix means <prefix>.onmicrosoft.com."""
    domain = domain.strip().lower()
    return domain if "." in domain else f"{domain}.onmicrosoft.com"


def _check_segment(customer: Customer, segment: str) -> None:
    if segment == "commercial":
        return
    status = customer.qualifications.get(segment)
    if status == "approved":
        return
    if status == "underReview":
        raise SimError(
            400,
            ErrorCode.SEGMENT_UNDER_REVIEW,
            f"The customer's {segment} qualification is under review.",
        )
    if status == "rejected":
        raise SimError(
            400, ErrorCode.SEGMENT_REJECTED, f"The customer's {segment} qualification was rejected."
        )
    raise SimError(
        400,
        ErrorCode.SEGMENT_NOT_QUALIFIED,
        f"The customer is not qualified for the {segment} segment.",
    )


def _reseller_of(line: dict[str, Any]) -> str | None:
    # Partner Center has accepted both {type, partnerId} and {key, value} participant shapes.
    for participant in line.get("participants") or []:
        if not isinstance(participant, dict):
            continue
        kind = str(participant.get("type") or participant.get("key") or "").lower()
        if kind in ("transactionreseller", "transaction_reseller"):
            value = participant.get("partnerId") or participant.get("value")
            return str(value) if value else None
    return None


def _parse_cart_lines(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("lineItems")
    if not isinstance(raw, list) or not raw:
        raise bad_request("A cart needs at least one line item in lineItems.")
    counter = iter(range(10_000))
    return [_parse_line(item, counter, allow_addons=True) for item in raw]


def _parse_line(item: Any, counter: Iterator[int], *, allow_addons: bool) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise bad_request("Each line item must be an object.")
    catalog_item_id = item.get("catalogItemId")
    quantity = item.get("quantity")
    if not isinstance(catalog_item_id, str) or not catalog_item_id:
        raise bad_request("lineItems[].catalogItemId is required.")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise bad_request("lineItems[].quantity must be a positive integer.")
    if not isinstance(item.get("billingCycle"), str) or not item["billingCycle"]:
        raise bad_request("lineItems[].billingCycle is required.")
    line = {
        "id": next(counter),
        "catalogItemId": catalog_item_id,
        "friendlyName": item.get("friendlyName"),
        "quantity": quantity,
        "currencyCode": item.get("currencyCode"),
        "billingCycle": str(item["billingCycle"]).lower(),
        "termDuration": item.get("termDuration"),
        "participants": item.get("participants") or [],
        "provisioningContext": item.get("provisioningContext") or {},
        "orderGroup": str(item.get("orderGroup") or "0"),
        "customTermEndDate": item.get("customTermEndDate"),
        "addonItems": [],
    }
    addons = item.get("addonItems") or []
    if addons and not allow_addons:
        raise bad_request("Add-on items cannot have add-on items.")
    if not isinstance(addons, list):
        raise bad_request("addonItems must be a list.")
    line["addonItems"] = [_parse_line(a, counter, allow_addons=False) for a in addons]
    return line


def _audit_matches(record: AuditRecord, spec: dict[str, Any] | None) -> bool:
    if not spec:
        return True
    field_name = str(spec["Field"]).lower()
    value = str(spec.get("Value") or "").lower()
    if field_name == "customerid":
        return (record.customer_id or "").lower() == value
    if field_name == "resourcetype":
        return record.resource_type.replace("_", "").lower() == value.replace("_", "")
    return value in (record.customer_name or "").lower()


def _audit_view(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "offerId": sub.catalog_item_id,
        "quantity": sub.quantity,
        "status": sub.status,
        "autoRenewEnabled": sub.auto_renew,
        "billingCycle": sub.billing_cycle,
        "termDuration": sub.term_duration,
    }


def _ascii(text: str) -> str:
    table = str.maketrans("áčďéěíňóřšťúůýž", "acdeeinorstuuyz")
    return re.sub(r"[^a-z0-9]", "", text.lower().translate(table))


_SEED_POOL = (
    "m365-business-basic",
    "m365-business-standard",
    "m365-business-premium",
    "exchange-p1",
    "teams-essentials",
    "powerbi-pro",
    "m365-e3",
    "o365-e1",
    "defender-business",
    "visio-plan-1",
    "azure-plan",
)
_SEED_NAMES = (
    "Novák",
    "Svoboda",
    "Dvořák",
    "Černý",
    "Procházka",
    "Kučera",
    "Veselý",
    "Horák",
    "Němec",
    "Marek",
    "Pokorný",
    "Král",
    "Růžička",
    "Beneš",
    "Fiala",
    "Sedláček",
    "Zeman",
    "Kolář",
)
_SEED_TRADES = (
    "Stavby",
    "Logistika",
    "Software",
    "Consulting",
    "Trade",
    "Servis",
    "Tech",
    "Agro",
    "Media",
    "Energie",
    "Strojírna",
    "Účetnictví",
    "Doprava",
    "Pekárna",
    "Nábytek",
    "Elektro",
)
