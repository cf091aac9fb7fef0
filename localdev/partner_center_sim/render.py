"""Records to Partner Center's JSON shapes (camelCase, links, attributes.objectType)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .catalog import Availability, Catalog, Product, Sku, cancellation_policies, term_text
from .models import AuditRecord, Cart, Customer, Order, Subscription, Transition
from .rules import CANCELLATION_WINDOW, open_windows


def iso(moment: datetime | None) -> str | None:
    """Partner Center's UTC timestamp format."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(amount: Decimal) -> float:
    """Partner Center sends amounts as JSON numbers; convert only here, at the wire."""
    return float(amount)


def link(
    uri: str, method: str = "GET", headers: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """A Partner Center link object; uris are relative to the API version root (/v1)."""
    return {"uri": uri, "method": method, "headers": headers or []}


def collection(
    items: Sequence[dict[str, Any]],
    *,
    self_uri: str | None = None,
    next_uri: str | None = None,
    continuation: str | None = None,
) -> dict[str, Any]:
    """A resource collection; `totalCount` counts the items in this page, as Partner Center does."""
    body: dict[str, Any] = {"totalCount": len(items), "items": list(items)}
    links: dict[str, Any] = {}
    if self_uri:
        links["self"] = link(self_uri)
    if next_uri and continuation:
        links["next"] = link(
            next_uri, headers=[{"key": "MS-ContinuationToken", "value": continuation}]
        )
        body["continuationToken"] = continuation
    if links:
        body["links"] = links
    body["attributes"] = {"objectType": "Collection"}
    return body


def etag(resource_id: str, version: int) -> str:
    """An opaque ETag that changes with every write."""
    return base64.b64encode(f"{resource_id}:{version}".encode()).decode()


def customer(c: Customer, *, with_credentials: bool = False) -> dict[str, Any]:
    """Customer resource."""
    uri = f"/customers/{c.id}"
    billing = {
        "id": c.commerce_id,
        **c.billing,
        "links": {"self": link(f"{uri}/profiles/billing")},
        "attributes": {"etag": etag(c.id, 1), "objectType": "CustomerBillingProfile"},
    }
    body: dict[str, Any] = {
        "id": c.id,
        "commerceId": c.commerce_id,
        "companyProfile": {
            "tenantId": c.id,
            "domain": c.domain,
            "companyName": c.company_name,
            "organizationRegistrationNumber": c.registration_number,
            "links": {"self": link(f"{uri}/profiles/company")},
            "attributes": {"objectType": "CustomerCompanyProfile"},
        },
        "billingProfile": billing,
        "relationshipToPartner": "reseller",
        "allowDelegatedAccess": True,
        "associatedPartnerId": c.associated_partner_id,
        "customDomains": [c.domain],
        "links": {"self": link(uri)},
        "attributes": {"objectType": "Customer"},
    }
    if with_credentials:
        body["userCredentials"] = {"userName": "admin", "password": c.admin_password}
    return body


def product(p: Product, country: str) -> dict[str, Any]:
    """Product resource."""
    uri = f"/products/{p.id}"
    return {
        "id": p.id,
        "title": p.title,
        "description": p.description,
        "productType": {"id": p.product_type, "displayName": p.product_type},
        "isMicrosoftProduct": True,
        "publisherName": "Microsoft Corporation",
        "links": {
            "skus": link(f"{uri}/skus?country={country}"),
            "self": link(f"{uri}?country={country}"),
        },
        "attributes": {"objectType": "Product"},
    }


def sku(s: Sku, country: str) -> dict[str, Any]:
    """SKU resource, with Partner Center's new-commerce dynamic attributes."""
    uri = f"/products/{s.product_id}/skus/{s.id}"
    return {
        "id": s.id,
        "productId": s.product_id,
        "title": s.title,
        "description": s.description,
        "minimumQuantity": s.minimum_quantity,
        "maximumQuantity": s.maximum_quantity,
        "isTrial": s.is_trial,
        "supportedBillingCycles": s.supported_billing_cycles,
        "purchasePrerequisites": [],
        "inventoryVariables": [],
        "provisioningVariables": [],
        "actions": ["Purchase"],
        "dynamicAttributes": {
            "isAddon": s.is_addon,
            "prerequisiteSkus": list(s.prerequisite_keys),
            "upgradeTargetOffers": list(s.upgrade_target_keys),
            "skuPartNumber": s.part_number,
            "unitType": s.unit_type,
            "isSmallBusinessSku": s.business_seat_cap,
        },
        "links": {
            "availabilities": link(f"{uri}/availabilities?country={country}"),
            "self": link(f"{uri}?country={country}"),
        },
        "attributes": {"objectType": "Sku"},
    }


def availability(
    a: Availability, p: Product, s: Sku, country: str, currency: str
) -> dict[str, Any]:
    """Availability resource with its terms and cancellation policies."""
    uri = f"/products/{a.product_id}/skus/{a.sku_id}/availabilities/{a.id}"
    return {
        "id": a.id,
        "productId": a.product_id,
        "skuId": a.sku_id,
        "catalogItemId": a.catalog_item_id,
        "defaultCurrency": {"code": currency, "symbol": "€" if currency == "EUR" else "Kč"},
        "segment": a.segment,
        "country": country,
        "isPurchasable": True,
        "isRenewable": not s.is_trial,
        "renewalInstructions": [],
        "terms": [
            {
                "duration": t.duration,
                "description": term_text(t),
                "billingCycle": t.billing_cycle,
                "cancellationPolicies": cancellation_policies(t),
            }
            for t in a.terms
        ],
        "product": product(p, country),
        "sku": sku(s, country),
        "links": {"self": link(f"{uri}?country={country}")},
        "attributes": {"objectType": "Availability"},
    }


def cart(c: Cart) -> dict[str, Any]:
    """Cart resource."""
    return {
        "id": c.id,
        "creationTimestamp": iso(c.created),
        "lastModifiedTimestamp": iso(c.modified),
        "expirationTimestamp": iso(c.expires),
        "lastModifiedUser": "partner-admin",
        "status": c.status,
        "lineItems": c.lines,
        "links": {"self": link(f"/customers/{c.customer_id}/carts/{c.id}")},
        "attributes": {"objectType": "Cart"},
    }


def order_status(o: Order, now: datetime) -> str:
    """Orders are pending until their provisioning delay passes."""
    return "completed" if now >= o.ready_at else "pending"


def order(o: Order, now: datetime) -> dict[str, Any]:
    """Order resource."""
    uri = f"/customers/{o.customer_id}/orders/{o.id}"
    lines = []
    for line in o.lines:
        item: dict[str, Any] = {
            "lineItemNumber": line.number,
            "offerId": line.offer_id,
            "subscriptionId": line.subscription_id,
            "parentSubscriptionId": line.parent_subscription_id,
            "termDuration": line.term_duration,
            "billingCycle": line.billing_cycle,
            "transactionType": line.transaction_type,
            "friendlyName": line.friendly_name,
            "quantity": line.quantity,
            "pricing": {
                "listPrice": money(line.unit_price),
                "extendedPrice": money(line.unit_price * abs(line.quantity)),
                "erpPrice": money(line.erp),
                "currencyCode": o.currency,
            },
            "partnerIdOnRecord": line.partner_id_on_record,
            "links": {},
        }
        if line.subscription_id:
            item["links"]["subscription"] = link(
                f"/customers/{o.customer_id}/subscriptions/{line.subscription_id}"
            )
        lines.append(item)
    return {
        "id": o.id,
        "alternateId": o.id.replace("-", "")[:12],
        "referenceCustomerId": o.customer_id,
        "billingCycle": o.billing_cycle,
        "currencyCode": o.currency,
        "currencySymbol": "€" if o.currency == "EUR" else "Kč",
        "lineItems": lines,
        "creationDate": iso(o.created),
        "status": order_status(o, now),
        "transactionType": o.transaction_type,
        "links": {
            "provisioningStatus": link(f"{uri}/provisioningstatus"),
            "self": link(uri),
        },
        "attributes": {"objectType": "Order"},
    }


def provisioning_status(o: Order, now: datetime) -> dict[str, Any]:
    """Order line provisioning status collection."""
    done = now >= o.ready_at
    items = [
        {
            "lineItemNumber": line.number,
            "status": "fulfilled" if done else "pending",
            "quantityProvisioningInformation": [
                {"quantity": abs(line.quantity), "status": "fulfilled" if done else "pending"}
            ],
            "attributes": {"objectType": "OrderLineItemProvisioningStatus"},
        }
        for line in o.lines
    ]
    return collection(items)


def subscription_status(s: Subscription, now: datetime) -> str:
    """Status as Partner Center reports it: pending until provisioned."""
    if s.status == "active" and now < s.ready_at:
        return "pending"
    return s.status


def subscription(s: Subscription, catalog: Catalog, now: datetime) -> dict[str, Any]:
    """Subscription resource (new commerce)."""
    sku_record = catalog.sku_by_key(s.sku_key)
    product_record = catalog.products.get(s.product_id)
    windows = open_windows(s, now)
    uri = f"/customers/{s.customer_id}/subscriptions/{s.id}"
    cancel_until = s.cancel_until if s.status not in ("deleted", "expired", "disabled") else None
    refund_options = []
    if cancel_until is not None and now <= cancel_until:
        # Full refund within 24 h of purchase or renewal, prorated after, until the window ends.
        full_until = cancel_until - CANCELLATION_WINDOW + timedelta(hours=24)
        if now <= full_until:
            refund_options.append({"type": "Full", "expiresAt": iso(full_until)})
        refund_options.append({"type": "Partial", "expiresAt": iso(cancel_until)})
    return {
        "id": s.id,
        "entitlementId": s.id,
        "offerId": s.catalog_item_id,
        "offerName": sku_record.title if sku_record else s.friendly_name,
        "friendlyName": s.friendly_name,
        "productType": {
            "id": product_record.product_type if product_record else "OnlineServicesNCE",
            "displayName": product_record.product_type if product_record else "OnlineServicesNCE",
        },
        "quantity": s.quantity,
        "unitType": sku_record.unit_type if sku_record else "Licenses",
        "hasPurchasableAddons": bool(sku_record and catalog.has_addons(sku_record)),
        "creationDate": iso(s.created),
        "effectiveStartDate": iso(s.effective_start),
        "commitmentEndDate": iso(s.commitment_end),
        "status": subscription_status(s, now),
        "autoRenewEnabled": s.auto_renew,
        "isTrial": s.is_trial,
        "billingType": "usage" if s.product_id == "DZH318Z0BPS6" else "license",
        "billingCycle": s.billing_cycle,
        "termDuration": s.term_duration or None,
        "refundOptions": refund_options,
        "isMicrosoftProduct": True,
        "partnerId": s.partner_id,
        "contractType": "subscription",
        "publisherName": "Microsoft Corporation",
        "orderId": s.order_id,
        "parentSubscriptionId": s.parent_id,
        "cancellationAllowedUntilDate": iso(cancel_until),
        "refundableQuantity": {
            "totalQuantity": sum(w.quantity for w in windows),
            "details": [
                {"quantity": w.quantity, "allowedUntilDateTime": iso(w.until)} for w in windows
            ],
        },
        "scheduledNextTermInstructions": s.scheduled,
        "suspensionReasons": ["CustomerCancellation"] if s.status == "suspended" else [],
        "attentionNeeded": False,
        "actionTaken": False,
        "links": {
            "self": link(uri),
            "offer": link(f"/offers/{s.catalog_item_id}"),
            "product": link(f"/products/{s.product_id}"),
            "sku": link(f"/products/{s.product_id}/skus/{s.sku_id}"),
            "availability": link(
                f"/products/{s.product_id}/skus/{s.sku_id}/availabilities/{s.availability_id}"
            ),
            "parentSubscription": link(f"/customers/{s.customer_id}/subscriptions/{s.parent_id}")
            if s.parent_id
            else None,
        },
        "attributes": {"etag": etag(s.id, s.version), "objectType": "Subscription"},
    }


def subscribed_skus(subs: Sequence[Subscription], catalog: Catalog) -> dict[str, Any]:
    """Licence counts per SKU of a tenant; consumedUnits are the assigned licences."""
    per_sku: dict[str, dict[str, int]] = {}
    for s in subs:
        if s.status not in ("active", "suspended"):
            continue
        counts = per_sku.setdefault(
            s.sku_key.replace(":0002", ":0001"), {"active": 0, "suspended": 0, "consumed": 0}
        )
        counts["active" if s.status == "active" else "suspended"] += s.quantity
        counts["consumed"] += s.consumed_units
    items = []
    for key, counts in per_sku.items():
        sku_record = catalog.sku_by_key(key)
        if sku_record is None:
            continue
        consumed = min(counts["consumed"], counts["active"] + counts["suspended"])
        items.append(
            {
                "availableUnits": max(0, counts["active"] - consumed),
                "activeUnits": counts["active"],
                "consumedUnits": consumed,
                "suspendedUnits": counts["suspended"],
                "totalUnits": counts["active"] + counts["suspended"],
                "warningUnits": 0,
                "capabilityStatus": "Enabled",
                "targetType": "User",
                "productSku": {
                    "id": sku_record.product_sku_id,
                    "name": sku_record.title,
                    "skuPartNumber": sku_record.part_number,
                    "targetType": "User",
                    "licenseGroupId": "Group1",
                },
                "servicePlans": [],
                "attributes": {"objectType": "SubscribedSku"},
            }
        )
    return collection(items)


def transition(t: Transition) -> dict[str, Any]:
    """Transition resource."""
    return {
        "id": t.id,
        "fromCatalogItemId": t.from_catalog_item_id,
        "toCatalogItemId": t.to_catalog_item_id,
        "fromSubscriptionId": t.from_subscription_id,
        "toSubscriptionId": t.to_subscription_id,
        "quantity": t.quantity,
        "termDuration": t.term_duration,
        "billingCycle": t.billing_cycle,
        "transitionType": t.transition_type,
        "eligibilityType": t.eligibility_type,
        "status": t.status,
        "creationDate": iso(t.created),
        "orderId": t.order_id,
        # Partner Center reports progress as events: the seats move (Conversion), then the
        # licences when asked (LicenseReassignment).
        "events": [
            {
                "name": name,
                "status": {"complete": "Completed", "failed": "Failed"}.get(t.status, "Started"),
                "timestamp": iso(t.created),
                **({"errors": [t.error]} if t.error else {}),
                "attributes": {"objectType": "TransitionEvent"},
            }
            for name in (
                ["Conversion", "LicenseReassignment"]
                if t.transition_type == "transition_with_license_transfer"
                else ["Conversion"]
            )
        ],
        "attributes": {"objectType": "Transition"},
    }


def audit_record(a: AuditRecord, partner_id: str) -> dict[str, Any]:
    """Audit record resource; old and new values are JSON text, as Partner Center sends them."""
    return {
        "partnerId": partner_id,
        "customerId": a.customer_id,
        "customerName": a.customer_name,
        "userPrincipalName": "partner-admin@sim.onmicrosoft.com",
        "resourceType": a.resource_type,
        "resourceNewValue": json.dumps(a.new_value) if a.new_value is not None else None,
        "resourceOldValue": json.dumps(a.old_value) if a.old_value is not None else None,
        "operationType": a.operation_type,
        "operationStatus": "succeeded",
        # Fractions of a second, as Partner Center sends them: records seconds apart must sort.
        "operationDate": a.date.astimezone(UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        "applicationId": "",
        "customizedData": [
            {"key": "ResourceId", "value": a.resource_id},
            {"key": "CustomerId", "value": a.customer_id or ""},
            *_audit_keys(a),
        ],
        "attributes": {"objectType": "AuditRecord"},
    }


def _audit_keys(a: AuditRecord) -> list[dict[str, Any]]:
    # Partner Center names the resource in customizedData: OrderId with SubscriptionId-<n> per
    # line for an order, SubscriptionId for a subscription.
    if a.resource_type == "order":
        lines = (a.new_value or {}).get("subscriptionIds") or []
        return [{"key": "OrderId", "value": a.resource_id}] + [
            {"key": f"SubscriptionId-{i}", "value": s} for i, s in enumerate(lines)
        ]
    if a.resource_type == "subscription":
        return [{"key": "SubscriptionId", "value": a.resource_id}]
    return []


# Our segments as Partner Center's qualification names, and our statuses as its vetting status.
QUALIFICATION_NAMES = {
    "education": "Education",
    "government": "GovernmentCommunityCloud",
    "nonprofit": "Nonprofit",
}
VETTING_STATUS = {"approved": "Approved", "underReview": "InReview", "rejected": "Denied"}


def qualifications(c: Customer) -> list[dict[str, Any]]:
    """`GET /v1/customers/{id}/qualifications`: a bare array, one entry per qualification."""
    items: list[dict[str, Any]] = []
    for segment, status in c.qualifications.items():
        item: dict[str, Any] = {
            "qualification": QUALIFICATION_NAMES.get(segment, segment.capitalize()),
            "vettingStatus": VETTING_STATUS.get(status, status),
        }
        if status == "rejected":
            item["vettingReason"] = "Not an eligible organization"
        items.append(item)
    return items
