"""The Partner Center REST client: every operation the platform uses, typed both ways.

Credentials: each operation signs in as Microsoft documents it (`Operation`, one table): app-only
wherever "App or App+User" is allowed, app+user (the configured refresh token, Secure Application
Model) only where a page says "App+User only". Without a refresh token those operations fail with
a configuration error instead of trying app-only, which Partner Center refuses with 403.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from enum import Enum
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from shared.adapters.partner_center import audit, catalog, customers
from shared.adapters.partner_center import orders as mapping
from shared.adapters.partner_center import subscriptions as subs
from shared.adapters.partner_center.price_sheet import parse_price_sheet
from shared.adapters.partner_center.relationships import INDIRECT_RESELLERS, PartnerRelationship
from shared.adapters.partner_center.transport import (
    PartnerCenterTransport,
    error_details,
    retry_after_seconds,
)
from shared.adapters.partner_center.usage import AzureUsageClient, NoCredentials, storage_http
from shared.adapters.partner_center.wire import (
    AuditRecord,
    Availability,
    AzureUtilizationRecord,
    Cart,
    CartCheckoutResult,
    Customer,
    CustomerQualification,
    Order,
    OrderLineItemProvisioningStatus,
    PriceSheetRow,
    Product,
    RelationshipRequest,
    ResourceCollection,
    ScheduledNextTermInstructions,
    Sku,
    SubscribedSku,
    Subscription,
    SubscriptionStatus,
    Transition,
    TransitionEligibility,
    iso_date,
)
from shared.domain.catalog import OfferedProduct, PriceLine, ProductSku
from shared.domain.customers import CreatedTenant, Qualification, Tenant, TenantRequest
from shared.domain.errors import (
    ConcurrencyConflict,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.domain.identity import IndirectReseller
from shared.domain.orders import (
    CartLineRequest,
    CartRef,
    CheckoutResult,
    OrderProvisioning,
    PlacedOrder,
)
from shared.domain.subscriptions import (
    ChangeAccepted,
    ChangeProgress,
    LicenceCount,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionOption,
    TransitionOutcome,
    TransitionRequest,
)
from shared.domain.sync import AuditEvent
from shared.domain.usage import (
    BilledUsageExport,
    UnbilledUsageExport,
    UsageBlobRef,
    UsageExportOperation,
    UsageExportStatus,
    UsageLine,
    UsageManifest,
)

M = TypeVar("M", bound=BaseModel)

DEFAULT_SCOPE = "https://api.partnercenter.microsoft.com/.default"
PRICE_SHEET_SCOPE = "https://api.partner.microsoft.com/.default"

# Keep small price sheets in memory, spill big ones (tens of MB unzipped) to a temporary file.
_SPOOL_BYTES = 16 * 1024 * 1024

# Operation statuses (202 + Location polling) that mean "not finished yet".
_IN_PROGRESS = frozenset(
    {"inprogress", "in_progress", "notstarted", "running", "pending", "accepted"}
)
_FAILED = frozenset({"failed", "error", "cancelled", "canceled"})

# A subscription write refused for now, not for good: 800082 "not ready" (a renewal in
# progress, up to 24 h), 900278 "another operation pending".
_NOT_NOW_CODES = frozenset({"800082", "900278"})
_NOT_NOW_RETRY_SECONDS = 300.0
# Partner Center's "Etag is no longer valid" (400); the simulator answers 412.
_STALE_ETAG_CODE = "2055"


class Operation(Enum):
    """Every Partner Center operation the client calls, with the credentials Microsoft documents
    for it (each page's "Prerequisites"; REFERENCE.md "Credentials per operation").

    `True`: "App+User only" (a user's token is required); `False`: "App or App+User" (the client
    uses app-only). The one place that decides which token a call gets.
    """

    # App+User only.
    CREATE_INDIRECT_RESELLER_CUSTOMER = ("POST /v1/customers (associatedPartnerId)", True)
    LIST_INDIRECT_RESELLER_CUSTOMERS = ("GET /v1/customers?filter=IndirectReseller", True)
    GET_RELATIONSHIP_REQUEST_LINK = ("GET /v1/customers/relationshiprequests", True)
    GET_ORDER_PROVISIONING_STATUS = ("GET …/orders/{o}/provisioningstatus", True)
    LIST_SUBSCRIBED_SKUS = ("GET …/customers/{c}/subscribedskus", True)
    GET_PRICE_SHEET = ("GET /v1.0/sales/pricesheets(…)/$value", True)
    LIST_INDIRECT_RESELLERS = ("GET /v1/relationships?relationship_type=…", True)
    # App or App+User.
    CREATE_CUSTOMER = ("POST /v1/customers", False)
    LIST_CUSTOMERS = ("GET /v1/customers", False)
    GET_CUSTOMER = ("GET /v1/customers/{c}", False)
    CHECK_DOMAIN = ("HEAD /v1/domains/{d}", False)
    LIST_PRODUCTS = ("GET /v1/products", False)
    GET_PRODUCT = ("GET /v1/products/{p}", False)
    LIST_SKUS = ("GET /v1/products/{p}/skus", False)
    LIST_AVAILABILITIES = ("GET …/skus/{s}/availabilities", False)
    CREATE_CART = ("POST …/carts", False)
    CHECKOUT = ("POST …/carts/{id}/checkout", False)
    GET_ORDER = ("GET …/orders/{o}", False)
    LIST_ORDERS = ("GET …/orders", False)
    LIST_SUBSCRIPTIONS = ("GET …/subscriptions", False)
    GET_SUBSCRIPTION = ("GET …/subscriptions/{s}", False)
    UPDATE_SUBSCRIPTION = ("PATCH …/subscriptions/{s}", False)
    GET_SUBSCRIPTION_OPERATION = ("GET …/subscriptions/{s}/operations/{id} (202 Location)", False)
    LIST_TRANSITION_ELIGIBILITIES = ("GET …/subscriptions/{s}/transitionEligibilities", False)
    CREATE_TRANSITION = ("POST …/subscriptions/{s}/transitions", False)
    LIST_TRANSITIONS = ("GET …/subscriptions/{s}/transitions", False)
    LIST_ADDONS = ("GET …/subscriptions/{s}/addons", False)
    LIST_AZURE_UTILIZATION = ("GET …/subscriptions/{s}/utilizations/azure", False)
    LIST_AUDIT_RECORDS = ("GET /v1/auditrecords", False)
    GET_CUSTOMER_QUALIFICATIONS = ("GET /v1/customers/{c}/qualifications", False)

    def __init__(self, route: str, app_user_only: bool) -> None:
        self.route = route
        self.app_user_only = app_user_only


def _seg(value: str) -> str:
    # Ids come from Partner Center or our records, but a stray "/" or "?" must never change
    # which resource is addressed.
    return quote(value, safe="")


class PartnerCenterClient:
    """Talks to Partner Center (or the simulator) over HTTPS; implements `ports.PartnerCenter`."""

    def __init__(
        self,
        transport: PartnerCenterTransport,
        *,
        price_sheet_base_url: str = "https://api.partner.microsoft.com",
        scope: str = DEFAULT_SCOPE,
        price_sheet_scope: str = PRICE_SHEET_SCOPE,
        poll_interval_seconds: float = 5.0,
        poll_timeout_seconds: float = 300.0,
        usage: AzureUsageClient | None = None,
    ) -> None:
        self._transport = transport
        self._usage = usage or AzureUsageClient(
            transport,
            PartnerCenterTransport(
                storage_http(httpx.Client(timeout=transport.http.timeout)),
                NoCredentials(),
                retry=transport.retry,
            ),
        )
        self._price_sheet_base_url = price_sheet_base_url.rstrip("/")
        self._scope = scope
        self._price_sheet_scope = price_sheet_scope
        self._poll_interval = poll_interval_seconds
        self._poll_timeout = poll_timeout_seconds

    def close(self) -> None:
        """Close pooled connections."""
        self._transport.http.close()
        self._usage.close()

    # --- plumbing --------------------------------------------------------------------------

    def _call(
        self,
        operation: Operation,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        return self._transport.call(
            method,
            path,
            scope=self._scope,
            user=operation.app_user_only,
            params=params,
            body=body,
            headers=headers,
            request_id=request_id,
            accept=accept,
        )

    def _one(
        self, operation: Operation, model: type[M], method: str, path: str, **kwargs: Any
    ) -> M:
        response = self._call(operation, method, path, **kwargs)
        return _parse(model, response)

    def _all(self, operation: Operation, model: type[M], path: str, **kwargs: Any) -> list[M]:
        return list(self._pages(operation, model, path, **kwargs))

    def _pages(
        self,
        operation: Operation,
        model: type[M],
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
    ) -> Iterator[M]:
        """Items of a collection, following `continuationToken` page by page."""
        collection = ResourceCollection[model]  # type: ignore[valid-type]
        token: str | None = None
        while True:
            page_params: dict[str, str | int] = dict(params or {})
            headers: dict[str, str] = {}
            if token:
                page_params["seekOperation"] = "next"
                headers["MS-ContinuationToken"] = token
            response = self._call(operation, "GET", path, params=page_params, headers=headers)
            page: ResourceCollection[M] = _parse(collection, response)
            yield from page.items
            next_token = page.next_page_token()
            # An empty page or a token that does not move would loop forever.
            if not next_token or not page.items or next_token == token:
                return
            token = next_token

    # --- customers -------------------------------------------------------------------------

    def list_customers(
        self, *, indirect_reseller_id: str | None = None, page_size: int = 500
    ) -> Iterator[Customer]:
        """All customers (or one indirect reseller's), lazily, page after page."""
        params: dict[str, str | int] = {"size": page_size}
        operation = Operation.LIST_CUSTOMERS
        if indirect_reseller_id:
            operation = Operation.LIST_INDIRECT_RESELLER_CUSTOMERS
            params["filter"] = json.dumps(
                {
                    "Field": "IndirectReseller",
                    "Value": indirect_reseller_id,
                    "Operator": "starts_with",
                },
                separators=(",", ":"),
            )
        return self._pages(operation, Customer, "/v1/customers", params=params)

    def get_customer(self, customer_id: str) -> Customer:
        """One customer by tenant id."""
        return self._one(
            Operation.GET_CUSTOMER, Customer, "GET", f"/v1/customers/{_seg(customer_id)}"
        )

    def create_customer(self, customer: Customer, *, request_id: str | None = None) -> Customer:
        """Create a customer tenant; `associatedPartnerId` makes it an indirect reseller's."""
        operation = (
            Operation.CREATE_INDIRECT_RESELLER_CUSTOMER
            if customer.associated_partner_id
            else Operation.CREATE_CUSTOMER
        )
        return self._one(
            operation,
            Customer,
            "POST",
            "/v1/customers",
            body=customer.to_wire(),
            request_id=request_id,
        )

    def is_domain_available(self, domain: str) -> bool:
        """Whether `<domain>` (e.g. `contoso.onmicrosoft.com`) is still free."""
        response = self._call(
            Operation.CHECK_DOMAIN, "HEAD", f"/v1/domains/{_seg(domain)}", accept=(404,)
        )
        # Partner Center answers the question "does it exist": 200 taken, 404 free.
        return response.status_code == 404

    def get_relationship_request_link(self) -> RelationshipRequest:
        """The link a customer's admin opens to accept the partner as reseller."""
        return self._one(
            Operation.GET_RELATIONSHIP_REQUEST_LINK,
            RelationshipRequest,
            "GET",
            "/v1/customers/relationshiprequests",
        )

    # --- customers, in the domain's words (mapped in adapters/partner_center/customers.py) --

    def customer_tenants(self, *, indirect_reseller_id: str | None = None) -> Iterator[Tenant]:
        """Every customer tenant (or those whose reseller id starts with the given one)."""
        for customer in self.list_customers(indirect_reseller_id=indirect_reseller_id):
            yield customers.tenant(customer)

    def customer_tenant(self, tenant_id: str) -> Tenant:
        """One customer tenant by id."""
        return customers.tenant(self.get_customer(tenant_id))

    def create_customer_tenant(
        self, request: TenantRequest, *, request_id: str | None = None
    ) -> CreatedTenant:
        """Create the tenant (the same `request_id` replays the first answer, sign-in included)."""
        created = self.create_customer(customers.customer_body(request), request_id=request_id)
        return customers.created_tenant(created, request.domain)

    def relationship_request_url(self) -> str:
        """The link a customer's admin opens to accept the partner as reseller."""
        return self.get_relationship_request_link().url

    # --- indirect resellers -----------------------------------------------------------------

    def list_indirect_resellers(self) -> list[IndirectReseller]:
        """Every indirect reseller in a relationship with the distributor (app+user only)."""
        relationships = self._pages(
            Operation.LIST_INDIRECT_RESELLERS,
            PartnerRelationship,
            "/v1/relationships",
            params={"relationship_type": INDIRECT_RESELLERS},
        )
        return [r.to_indirect_reseller() for r in relationships]

    # --- catalog ---------------------------------------------------------------------------

    def list_products(
        self, country: str, target_view: str, *, target_segment: str | None = None
    ) -> list[Product]:
        """Products of a catalog view (e.g. `OnlineServices`) in a country."""
        params: dict[str, str | int] = {"country": country, "targetView": target_view}
        if target_segment:
            params["targetSegment"] = target_segment
        return self._all(Operation.LIST_PRODUCTS, Product, "/v1/products", params=params)

    def get_product(self, product_id: str, country: str) -> Product:
        """One product in a country."""
        return self._one(
            Operation.GET_PRODUCT,
            Product,
            "GET",
            f"/v1/products/{_seg(product_id)}",
            params={"country": country},
        )

    def list_skus(
        self, product_id: str, country: str, *, target_segment: str | None = None
    ) -> list[Sku]:
        """SKUs of a product in a country."""
        params: dict[str, str | int] = {"country": country}
        if target_segment:
            params["targetSegment"] = target_segment
        return self._all(
            Operation.LIST_SKUS, Sku, f"/v1/products/{_seg(product_id)}/skus", params=params
        )

    def list_availabilities(
        self, product_id: str, sku_id: str, country: str, *, target_segment: str | None = None
    ) -> list[Availability]:
        """Availabilities (purchasable terms) of a SKU in a country."""
        params: dict[str, str | int] = {"country": country}
        if target_segment:
            params["targetSegment"] = target_segment
        return self._all(
            Operation.LIST_AVAILABILITIES,
            Availability,
            f"/v1/products/{_seg(product_id)}/skus/{_seg(sku_id)}/availabilities",
            params=params,
        )

    def get_price_sheet(
        self, market: str, *, view: str = "updatedlicensebased"
    ) -> Iterator[PriceSheetRow]:
        """The price sheet of a market, row by row (downloaded first, then parsed lazily)."""
        market_code = market.upper().replace("'", "")
        view_name = view.replace("'", "")
        url = (
            f"{self._price_sheet_base_url}/v1.0/sales/pricesheets"
            f"(Market='{market_code}',PricesheetView='{view_name}')/$value"
        )
        spool = self._transport.execute(
            "GET",
            url,
            scope=self._price_sheet_scope,
            user=Operation.GET_PRICE_SHEET.app_user_only,
            headers={"Accept": "text/csv, application/zip, application/octet-stream, */*"},
            consume=_spool_body,
        )
        return _rows_then_close(spool)

    # --- catalog, in the domain's words (mapped in adapters/partner_center/catalog.py) ------

    def catalog_products(self, market: str, target_view: str) -> list[OfferedProduct]:
        """Products of a catalog view (e.g. `OnlineServices`) in a market."""
        return [catalog.offered_product(p) for p in self.list_products(market, target_view)]

    def product_skus(self, product_id: str, market: str) -> list[ProductSku]:
        """A product's SKUs in a market, each with its purchasable availabilities."""
        return [
            catalog.product_sku(
                product_id, sku, self.list_availabilities(product_id, sku.id, market)
            )
            for sku in self.list_skus(product_id, market)
        ]

    def price_lines(self, market: str) -> Iterator[PriceLine]:
        """The licence-based price sheet of a market, line by line."""
        return (catalog.price_line(row) for row in self.get_price_sheet(market))

    # --- carts and orders ------------------------------------------------------------------

    def create_cart(self, customer_id: str, cart: Cart, *, request_id: str | None = None) -> Cart:
        """Create a cart for a customer (lines carry the indirect reseller as participant)."""
        return self._one(
            Operation.CREATE_CART,
            Cart,
            "POST",
            f"/v1/customers/{_seg(customer_id)}/carts",
            body=cart.to_wire(),
            request_id=request_id,
        )

    def checkout(
        self, customer_id: str, cart_id: str, *, request_id: str | None = None
    ) -> CartCheckoutResult:
        """Check a cart out into orders; failed order groups come back in `orderErrors`."""
        return self._one(
            Operation.CHECKOUT,
            CartCheckoutResult,
            "POST",
            f"/v1/customers/{_seg(customer_id)}/carts/{_seg(cart_id)}/checkout",
            request_id=request_id,
        )

    def get_order(self, customer_id: str, order_id: str) -> Order:
        """One order of a customer."""
        return self._one(
            Operation.GET_ORDER,
            Order,
            "GET",
            f"/v1/customers/{_seg(customer_id)}/orders/{_seg(order_id)}",
        )

    def list_orders(self, customer_id: str) -> list[Order]:
        """All orders of a customer."""
        return self._all(Operation.LIST_ORDERS, Order, f"/v1/customers/{_seg(customer_id)}/orders")

    def get_order_provisioning_status(
        self, customer_id: str, order_id: str
    ) -> list[OrderLineItemProvisioningStatus]:
        """Provisioning status of each line of an order."""
        return self._all(
            Operation.GET_ORDER_PROVISIONING_STATUS,
            OrderLineItemProvisioningStatus,
            f"/v1/customers/{_seg(customer_id)}/orders/{_seg(order_id)}/provisioningstatus",
        )

    # --- ordering, in the domain's words (mapped in adapters/partner_center/orders.py) -----

    def place_cart(
        self, customer_tenant: str, lines: Sequence[CartLineRequest], *, request_id: str
    ) -> CartRef:
        """Create a cart of `lines` (the same `request_id` gives back the same cart)."""
        return mapping.cart_ref(
            self.create_cart(customer_tenant, mapping.cart_body(lines), request_id=request_id)
        )

    def check_out(self, customer_tenant: str, cart_id: str, *, request_id: str) -> CheckoutResult:
        """Check a cart out (the same `request_id` repeats the first result)."""
        return mapping.checkout_result(
            self.checkout(customer_tenant, cart_id, request_id=request_id)
        )

    def placed_orders(self, customer_tenant: str) -> list[PlacedOrder]:
        """Every order of the customer's tenant."""
        return [mapping.placed_order(o) for o in self.list_orders(customer_tenant)]

    def placed_order(self, customer_tenant: str, order_id: str) -> PlacedOrder:
        """One order of the customer's tenant, as it stands now (subscription ids included)."""
        return mapping.placed_order(self.get_order(customer_tenant, order_id))

    def order_provisioning(self, customer_tenant: str, order_id: str) -> OrderProvisioning:
        """Whether Partner Center has provisioned every line of an order."""
        return mapping.provisioning(
            order_id, self.get_order_provisioning_status(customer_tenant, order_id)
        )

    def subscription_facts(self, customer_tenant: str) -> list[SubscriptionFacts]:
        """Every subscription of the customer's tenant, in our words."""
        return [subs.subscription_facts(s) for s in self.list_subscriptions(customer_tenant)]

    # --- subscriptions in our words (mapped in adapters/partner_center/subscriptions.py) ---

    def subscription(self, customer_tenant: str, subscription_id: str) -> SubscriptionFacts:
        """One subscription as Partner Center holds it now (NotFound if it has none)."""
        return subs.subscription_facts(self.get_subscription(customer_tenant, subscription_id))

    def change_subscription(
        self,
        customer_tenant: str,
        subscription_id: str,
        change: SubscriptionChange,
        *,
        request_id: str,
    ) -> SubscriptionFacts | ChangeAccepted:
        """GET → change only what `change` names → PATCH the whole resource with If-Match.

        Never waits: a 202 comes back as `ChangeAccepted` for the caller to poll later.
        """
        current = self.get_subscription(customer_tenant, subscription_id)
        response = self._write(
            Operation.UPDATE_SUBSCRIPTION,
            "PATCH",
            self._subscription_path(customer_tenant, current.id),
            body=subs.changed(current, change).to_wire(as_read=True),
            headers=_if_match(current),
            request_id=request_id,
        )
        if response.status_code == 202:
            return ChangeAccepted(
                location=self._own_location(response, current.id, customer_tenant),
                retry_after_seconds=retry_after_seconds(response),
            )
        return subs.subscription_facts(_parse(Subscription, response))

    def change_progress(
        self, customer_tenant: str, subscription_id: str, accepted: ChangeAccepted
    ) -> ChangeProgress:
        """One read of the accepted change's Location: running, done (with the subscription as
        it now is) or failed with Partner Center's code and words."""
        response = self._call(Operation.GET_SUBSCRIPTION_OPERATION, "GET", accepted.location)
        retry_after = retry_after_seconds(response)
        if response.status_code == 202 or not response.content:
            return ChangeProgress(done=False, retry_after_seconds=retry_after)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise UpstreamRejected(
                f"Partner Center GET {accepted.location}: unexpected response",
                code="invalid_response",
                status=response.status_code,
            )
        progress = subs.progress(payload, retry_after)
        if progress.done and progress.facts is None:
            # The operation says "succeeded": the subscription as it now is.
            return replace(progress, facts=self.subscription(customer_tenant, subscription_id))
        return progress

    def licence_counts(self, customer_tenant: str) -> list[LicenceCount]:
        """Licences bought and assigned per SKU on the tenant (`subscribedskus`, app+user)."""
        return subs.licence_counts(self.list_subscribed_skus(customer_tenant))

    def transition_options(
        self, customer_tenant: str, subscription_id: str, *, scheduled: bool = False
    ) -> list[TransitionOption]:
        """Where the subscription may move now (or, `scheduled`, at renewal), and why not."""
        return subs.transition_options(
            self.list_transition_eligibilities(
                customer_tenant,
                subscription_id,
                eligibility_type="scheduled" if scheduled else "immediate",
            )
        )

    def transition(
        self,
        customer_tenant: str,
        subscription_id: str,
        request: TransitionRequest,
        *,
        request_id: str,
    ) -> TransitionOutcome:
        """Move the subscription (trial → paid, upgrade) with the stored MS-RequestId."""
        body = subs.transition_body(subscription_id, request)
        response = self._write(
            Operation.CREATE_TRANSITION,
            "POST",
            f"{self._subscription_path(customer_tenant, subscription_id)}/transitions",
            body=body.to_wire(),
            request_id=request_id,
        )
        return subs.transition_outcome(_parse(Transition, response))

    def transition_progress(
        self, customer_tenant: str, subscription_id: str, transition_id: str
    ) -> TransitionOutcome:
        """One read of a started transition (`GET …/transitions?operationId=`): still
        started, completed with the subscription the seats went to, or failed."""
        found = [
            t
            for t in self.list_transitions(
                customer_tenant, subscription_id, operation_id=transition_id
            )
            if (t.id or "").lower() == transition_id.lower()
        ]
        if not found:
            raise NotFound(f"transition {transition_id} of subscription {subscription_id}")
        return subs.transition_outcome(found[-1])

    def audit_events(self, since: datetime, until: datetime) -> Iterator[AuditEvent]:
        """Partner Center's audit records of [since, until), oldest first, one day per query
        (every page of it); a start older than the 90 days Partner Center keeps is moved up."""
        start = audit.readable_start(since, until)
        for window_start, window_end in audit.day_windows(start, until):
            events = [
                event
                for record in self.list_audit_records(
                    window_start, window_end, page_size=audit.PAGE_SIZE
                )
                if (event := audit.audit_event(record)) is not None
                # Partner Center may read the bounds as dates: keep the window exact.
                and window_start <= event.at < window_end
            ]
            # Pages list the newest first: reversed, a stable sort keeps equal times in order.
            events.reverse()
            events.sort(key=lambda e: e.at)
            yield from events

    # --- Azure usage: Graph's partner billing exports (adapters/partner_center/usage.py) ------

    def start_usage_export(
        self, request: UnbilledUsageExport | BilledUsageExport
    ) -> UsageExportOperation:
        """Start an export of daily rated usage; the operation to poll."""
        return self._usage.start_usage_export(request)

    def usage_export_status(self, operation: UsageExportOperation) -> UsageExportStatus:
        """Poll an export once."""
        return self._usage.usage_export_status(operation)

    def usage_lines(self, manifest: UsageManifest, blob: UsageBlobRef) -> Iterator[UsageLine]:
        """The usage lines of one blob of a finished export, streamed."""
        return self._usage.usage_lines(manifest, blob)

    def customer_qualification(self, customer_tenant: str, segment: str) -> Qualification:
        """Microsoft's verification of the customer for `segment` (education, government,
        nonprofit): None when it never asked, else Pending, Approved or Rejected."""
        response = self._call(
            Operation.GET_CUSTOMER_QUALIFICATIONS,
            "GET",
            f"/v1/customers/{_seg(customer_tenant)}/qualifications",
        )
        return customers.qualification(_parse_list(CustomerQualification, response), segment)

    def _subscription_path(self, customer_tenant: str, subscription_id: str) -> str:
        return f"/v1/customers/{_seg(customer_tenant)}/subscriptions/{_seg(subscription_id)}"

    def _write(
        self,
        operation: Operation,
        method: str,
        path: str,
        *,
        body: Any,
        request_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A subscription write whose refusals come back in the port's terms, at once.

        "Not now" (800082 renewal in progress, 900278 another operation pending) is not retried
        inside the call: it can last a day, so the caller waits by re-enqueueing.
        """
        response = self._call(
            operation,
            method,
            path,
            body=body,
            headers=headers,
            request_id=request_id,
            accept=(400, 409, 412),
        )
        if response.status_code < 400:
            return response
        code, description = error_details(response)
        where = f"Partner Center {method} {path}"
        if code in _NOT_NOW_CODES:
            raise UpstreamUnavailable(
                f"{where}: {description} ({code})",
                retry_after=retry_after_seconds(response) or _NOT_NOW_RETRY_SECONDS,
                code=code,
            )
        if response.status_code == 412 or code == _STALE_ETAG_CODE:
            raise ConcurrencyConflict(f"{where}: the subscription changed since it was read")
        raise UpstreamRejected(f"{where}: {description}", code=code, status=response.status_code)

    def _own_location(self, response: httpx.Response, subscription_id: str, tenant: str) -> str:
        # The Location is polled with our bearer token: it must stay on Partner Center's host.
        location = response.headers.get("Location") or self._subscription_path(
            tenant, subscription_id
        )
        url = httpx.URL(location)
        if url.is_relative_url:
            path = location if location.lower().startswith("/v1/") else f"/v1{location}"
            return path
        base = self._transport.http.base_url
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise UpstreamRejected(
                f"Partner Center answered 202 with a Location on another host ({url.host})",
                code="invalid_response",
                status=202,
            )
        return str(url)

    # --- subscriptions ---------------------------------------------------------------------

    def list_subscriptions(self, customer_id: str) -> list[Subscription]:
        """All subscriptions of a customer."""
        return self._all(
            Operation.LIST_SUBSCRIPTIONS,
            Subscription,
            f"/v1/customers/{_seg(customer_id)}/subscriptions",
        )

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription:
        """One subscription (with its ETag in `attributes.etag`)."""
        return self._one(
            Operation.GET_SUBSCRIPTION,
            Subscription,
            "GET",
            f"/v1/customers/{_seg(customer_id)}/subscriptions/{_seg(subscription_id)}",
        )

    def update_subscription(
        self, customer_id: str, subscription: Subscription, *, request_id: str | None = None
    ) -> Subscription:
        """PATCH the whole subscription; waits for a 202 + Location operation to finish."""
        path = self._subscription_path(customer_id, subscription.id)
        response = self._call(
            Operation.UPDATE_SUBSCRIPTION,
            "PATCH",
            path,
            body=subscription.to_wire(as_read=True),
            headers=_if_match(subscription),
            request_id=request_id,
        )
        if response.status_code == 202:
            self._wait_for_operation(response, path)
            return self.get_subscription(customer_id, subscription.id)
        return _parse(Subscription, response)

    def _change(
        self,
        customer_id: str,
        subscription_id: str,
        change: Callable[[Subscription], Subscription],
        request_id: str | None,
    ) -> Subscription:
        # Read-modify-write on the current object and its ETag: Partner Center wants the whole
        # subscription back, and the ETag turns a concurrent change into a 412, not a lost update.
        current = self.get_subscription(customer_id, subscription_id)
        return self.update_subscription(customer_id, change(current), request_id=request_id)

    def suspend_subscription(
        self, customer_id: str, subscription_id: str, *, request_id: str | None = None
    ) -> Subscription:
        """Suspend (billing continues; auto-renew and scheduled changes are cleared)."""
        return self._set_status(
            customer_id, subscription_id, SubscriptionStatus.SUSPENDED, request_id
        )

    def reactivate_subscription(
        self, customer_id: str, subscription_id: str, *, request_id: str | None = None
    ) -> Subscription:
        """Reactivate a suspended subscription."""
        return self._set_status(customer_id, subscription_id, SubscriptionStatus.ACTIVE, request_id)

    def cancel_subscription(
        self, customer_id: str, subscription_id: str, *, request_id: str | None = None
    ) -> Subscription:
        """Cancel (only inside the cancellation window; final)."""
        return self._set_status(
            customer_id, subscription_id, SubscriptionStatus.DELETED, request_id
        )

    def _set_status(
        self,
        customer_id: str,
        subscription_id: str,
        status: SubscriptionStatus,
        request_id: str | None,
    ) -> Subscription:
        return self._change(
            customer_id,
            subscription_id,
            lambda s: s.model_copy(update={"status": status.value}),
            request_id,
        )

    def set_subscription_quantity(
        self,
        customer_id: str,
        subscription_id: str,
        quantity: int,
        *,
        request_id: str | None = None,
    ) -> Subscription:
        """Change the seat count (decreases only for seats inside their 7-day window)."""
        return self._change(
            customer_id,
            subscription_id,
            lambda s: s.model_copy(update={"quantity": quantity}),
            request_id,
        )

    def set_auto_renew(
        self,
        customer_id: str,
        subscription_id: str,
        enabled: bool,
        *,
        request_id: str | None = None,
    ) -> Subscription:
        """Turn auto-renew on or off."""
        return self._change(
            customer_id,
            subscription_id,
            lambda s: s.model_copy(update={"auto_renew_enabled": enabled}),
            request_id,
        )

    def set_billing_cycle(
        self,
        customer_id: str,
        subscription_id: str,
        billing_cycle: str,
        *,
        request_id: str | None = None,
    ) -> Subscription:
        """Change the billing cycle (`monthly`, `annual`, `triennial`) where allowed."""
        return self._change(
            customer_id,
            subscription_id,
            lambda s: s.model_copy(update={"billing_cycle": billing_cycle}),
            request_id,
        )

    def schedule_next_term(
        self,
        customer_id: str,
        subscription_id: str,
        instructions: ScheduledNextTermInstructions | None,
        *,
        request_id: str | None = None,
    ) -> Subscription:
        """Set (or with None, clear) the changes applied at renewal."""
        return self._change(
            customer_id,
            subscription_id,
            # None is sent as an explicit null (the PATCH keeps set fields), which clears them.
            lambda s: s.model_copy(update={"scheduled_next_term_instructions": instructions}),
            request_id,
        )

    def list_transition_eligibilities(
        self, customer_id: str, subscription_id: str, *, eligibility_type: str = "immediate"
    ) -> list[TransitionEligibility]:
        """What a subscription may transition to (`immediate` or `scheduled`)."""
        return self._all(
            Operation.LIST_TRANSITION_ELIGIBILITIES,
            TransitionEligibility,
            f"/v1/customers/{_seg(customer_id)}/subscriptions/{_seg(subscription_id)}"
            "/transitionEligibilities",
            params={"eligibilityType": eligibility_type},
        )

    def list_transitions(
        self, customer_id: str, subscription_id: str, *, operation_id: str | None = None
    ) -> list[Transition]:
        """A subscription's transitions with their events (one of them: `operation_id`)."""
        return self._all(
            Operation.LIST_TRANSITIONS,
            Transition,
            f"/v1/customers/{_seg(customer_id)}/subscriptions/{_seg(subscription_id)}/transitions",
            params={"operationId": operation_id} if operation_id else None,
        )

    def create_transition(
        self,
        customer_id: str,
        subscription_id: str,
        transition: Transition,
        *,
        request_id: str | None = None,
    ) -> Transition:
        """Transition a subscription (trial → paid, upgrade)."""
        return self._one(
            Operation.CREATE_TRANSITION,
            Transition,
            "POST",
            f"/v1/customers/{_seg(customer_id)}/subscriptions/{_seg(subscription_id)}/transitions",
            body=transition.to_wire(),
            request_id=request_id,
        )

    def list_addons(self, customer_id: str, subscription_id: str) -> list[Subscription]:
        """Add-on subscriptions of a subscription."""
        return self._all(
            Operation.LIST_ADDONS,
            Subscription,
            f"/v1/customers/{_seg(customer_id)}/subscriptions/{_seg(subscription_id)}/addons",
        )

    def list_subscribed_skus(self, customer_id: str) -> list[SubscribedSku]:
        """Licence counts on the customer's tenant (assigned = `consumedUnits`)."""
        return self._all(
            Operation.LIST_SUBSCRIBED_SKUS,
            SubscribedSku,
            f"/v1/customers/{_seg(customer_id)}/subscribedskus",
        )

    # --- usage and audit -------------------------------------------------------------------

    def list_azure_utilization(
        self,
        customer_id: str,
        subscription_id: str,
        start: datetime,
        end: datetime,
        *,
        granularity: str = "daily",
        show_details: bool = True,
        page_size: int = 1000,
    ) -> Iterator[AzureUtilizationRecord]:
        """Azure utilization records of a subscription in [start, end), page after page."""
        return self._pages(
            Operation.LIST_AZURE_UTILIZATION,
            AzureUtilizationRecord,
            f"/v1/customers/{_seg(customer_id)}/subscriptions/{_seg(subscription_id)}"
            "/utilizations/azure",
            params={
                "start_time": iso_date(start),
                "end_time": iso_date(end),
                "granularity": granularity,
                "show_details": str(show_details).lower(),
                "size": page_size,
            },
        )

    def list_audit_records(
        self,
        start: date | datetime,
        end: date | datetime | None = None,
        *,
        filter: str | None = None,
        page_size: int = 500,
    ) -> Iterator[AuditRecord]:
        """Audit records from `start` (to `end`), page after page."""
        params: dict[str, str | int] = {"startDate": iso_date(start), "size": page_size}
        if end is not None:
            params["endDate"] = iso_date(end)
        if filter:
            params["filter"] = filter
        return self._pages(
            Operation.LIST_AUDIT_RECORDS, AuditRecord, "/v1/auditrecords", params=params
        )

    # --- 202 + Location ----------------------------------------------------------------------

    def _wait_for_operation(self, accepted: httpx.Response, resource_path: str) -> None:
        """Poll a 202's Location until the operation is done (or give up as transient)."""
        location = accepted.headers.get("Location") or resource_path
        transport = self._transport
        deadline = transport.clock() + self._poll_timeout
        delay = _retry_after(accepted, self._poll_interval)
        while True:
            if transport.clock() + delay > deadline:
                raise UpstreamUnavailable(
                    f"Partner Center operation {location} still running after "
                    f"{self._poll_timeout:.0f}s",
                    retry_after=self._poll_interval,
                )
            transport.sleep(delay)
            response = self._call(Operation.GET_SUBSCRIPTION_OPERATION, "GET", location)
            if response.status_code == 202:
                delay = _retry_after(response, self._poll_interval)
                continue
            status = _operation_status(response)
            if status in _FAILED:
                code, description = _operation_error(response)
                raise UpstreamRejected(
                    f"Partner Center operation {location} failed: {description}",
                    code=code,
                    status=response.status_code,
                )
            if status in _IN_PROGRESS:
                delay = _retry_after(response, self._poll_interval)
                continue
            return


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValueError as exc:
        # A 2xx whose body is not what the contract says: an upstream bug, not transient.
        raise UpstreamRejected(
            f"Partner Center {response.request.method} {response.request.url.path}: "
            f"unexpected response ({type(exc).__name__})",
            code="invalid_response",
            status=response.status_code,
        ) from exc


def _parse_list(model: type[M], response: httpx.Response) -> list[M]:
    """A bare JSON array of `model` (or, tolerated, a collection of them)."""
    try:
        data = json.loads(response.content.decode("utf-8-sig") or "null")
        items = data.get("items") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError("not a list")
        return [model.model_validate(item) for item in items]
    except ValueError as exc:
        raise UpstreamRejected(
            f"Partner Center {response.request.method} {response.request.url.path}: "
            f"unexpected response ({type(exc).__name__})",
            code="invalid_response",
            status=response.status_code,
        ) from exc


def _if_match(subscription: Subscription) -> dict[str, str]:
    etag = subscription.attributes.etag if subscription.attributes is not None else None
    return {"If-Match": etag} if etag else {}


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else default
    except ValueError:
        return default


def _operation_status(response: httpx.Response) -> str | None:
    if not response.content:
        return None
    try:
        payload = response.json()
    except ValueError:
        return None
    status = payload.get("status") if isinstance(payload, dict) else None
    return status.replace(" ", "").lower() if isinstance(status, str) else None


def _operation_error(response: httpx.Response) -> tuple[str | None, str]:
    try:
        payload = response.json()
    except ValueError:
        return None, f"HTTP {response.status_code}"
    error = payload.get("error") if isinstance(payload, dict) else None
    source = error if isinstance(error, dict) else payload if isinstance(payload, dict) else {}
    code = source.get("code")
    description = source.get("description") or source.get("message") or "operation failed"
    return (str(code) if code is not None else None), str(description)


def _spool_body(response: httpx.Response) -> IO[bytes]:
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    try:
        for chunk in response.iter_bytes():
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _rows_then_close(spool: IO[bytes]) -> Iterator[PriceSheetRow]:
    with spool:
        yield from parse_price_sheet(spool)
