"""New-commerce rules (REFERENCE.md, "New-commerce subscription rules"), as pure functions."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .catalog import BUSINESS_SEAT_CAP, Catalog, Sku
from .errors import ErrorCode, SimError
from .models import RefundWindow, Subscription

CANCELLATION_WINDOW = timedelta(hours=168)
TRIAL_DAYS = 30
EXPIRED_GRACE = timedelta(days=30)
DISABLED_GRACE = timedelta(days=90)
MAX_UPDATES = 1200
TERM_ORDER = {"P1M": 1, "P1Y": 2, "P3Y": 3}
_TERM_MONTHS = {"P1M": 1, "P1Y": 12, "P3Y": 36}
# Mid-term P3Y billing changes were blocked from this date (REFERENCE.md).
P3Y_BILLING_CHANGE_CUTOFF = datetime(2025, 4, 1, tzinfo=UTC)


def midnight(moment: datetime) -> datetime:
    """00:00 UTC of the day of `moment`."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar month arithmetic that clamps to the month's last day."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def commitment_end(start: datetime, term_duration: str, is_trial: bool = False) -> datetime:
    """The inclusive last day of a term that starts on `start`."""
    start = midnight(start)
    if is_trial:
        return start + timedelta(days=TRIAL_DAYS - 1)
    return add_months(start, _TERM_MONTHS.get(term_duration, 1)) - timedelta(days=1)


def renewal_moment(sub: Subscription) -> datetime | None:
    """Renewal happens at 00:00 UTC the day after the inclusive commitment end date."""
    if sub.commitment_end is None:
        return None
    return midnight(sub.commitment_end) + timedelta(days=1)


def open_windows(sub: Subscription, now: datetime) -> list[RefundWindow]:
    """Seats that can still be returned, each with its own deadline."""
    return [w for w in sub.refund_windows if w.until > now and w.quantity > 0]


def business_seats_in_use(subs: list[Subscription], sku: Sku, exclude_id: str | None) -> int:
    """Seats of a small-business product across the tenant (its 300 cap counts them all)."""
    return sum(
        s.quantity
        for s in subs
        if s.product_id == sku.product_id
        and not s.is_trial
        and s.status in ("active", "suspended", "pending")
        and s.id != exclude_id
    )


def check_quantity(sku: Sku, quantity: int, seats_elsewhere: int) -> None:
    """SKU minimum/maximum and the tenant-wide business cap, as cart error 10015."""
    maximum = sku.maximum_quantity
    available = maximum
    if sku.business_seat_cap:
        available = max(0, BUSINESS_SEAT_CAP - seats_elsewhere)
    if quantity < sku.minimum_quantity or quantity > available:
        raise SimError(
            400,
            ErrorCode.QUANTITY_OUT_OF_RANGE,
            f"Quantity {quantity} is outside the allowed range "
            f"{sku.minimum_quantity}-{min(maximum, available)} for this offer.",
            availableQuantity=available,
            minimumQuantity=sku.minimum_quantity,
            maximumQuantity=maximum,
        )


@dataclass(slots=True)
class PatchOutcome:
    """What a PATCH changed, so the state can write orders and audit records."""

    quantity_delta: int = 0
    cancelled: bool = False
    changed_fields: list[str] = field(default_factory=list)


def as_whole_resource(body: dict[str, Any]) -> dict[str, Any]:
    """A PATCH body read the way Partner Center reads it: the whole subscription.

    Keys may come PascalCase (`Quantity`). Microsoft warns that a body without
    `autoRenewEnabled` turns auto-renew off and one without `scheduledNextTermInstructions`
    deletes the scheduled change: "this only applies if minimal info is in the payload".
    """
    whole = {key[:1].lower() + key[1:]: value for key, value in body.items()}
    whole.setdefault("autoRenewEnabled", False)
    whole.setdefault("scheduledNextTermInstructions", None)
    return whole


def _invalid(description: str, code: ErrorCode = ErrorCode.INVALID_SUBSCRIPTION_UPDATE) -> SimError:
    return SimError(400, code, description)


def apply_patch(
    sub: Subscription,
    body: dict[str, Any],
    *,
    catalog: Catalog,
    tenant_subs: list[Subscription],
    now: datetime,
    renewal_lag: timedelta,
) -> PatchOutcome:
    """Validate a full-object PATCH against the rules, then apply it; raise before any change."""
    outcome = PatchOutcome()
    wanted = _requested_changes(sub, body)
    if not wanted:
        return outcome
    if sub.updates >= MAX_UPDATES:
        raise _invalid("The subscription has reached its maximum number of updates.")
    if sub.status in ("deleted", "expired", "disabled"):
        raise _invalid(f"A subscription in status {sub.status} cannot be changed.")
    if now < sub.ready_at:
        raise SimError(
            409,
            ErrorCode.INVALID_SUBSCRIPTION_UPDATE,
            "The subscription is still being provisioned.",
        )
    renewal = renewal_moment(sub)
    if renewal is not None and renewal <= now < renewal + renewal_lag:
        raise SimError(
            409,
            ErrorCode.RENEWAL_PENDING,
            "Subscription is not ready to be updated. Try again after sometime",
        )

    new_status = wanted.get("status", sub.status)
    if sub.is_trial and (set(wanted) & {"quantity", "status", "billingCycle", "termDuration"}):
        raise _invalid("The quantity and status of a trial subscription cannot be changed.")
    if sub.status == "suspended" and set(wanted) - {"status", "friendlyName"}:
        raise SimError(
            400,
            ErrorCode.SUBSCRIPTION_SUSPENDED,
            "Can't update a subscription with suspended status",
        )
    if new_status not in ("active", "suspended", "deleted"):
        raise _invalid(f"Status {new_status} cannot be set.")

    _, sku, availability = _resolve(catalog, sub)
    if "status" in wanted and new_status == "deleted":
        if sub.cancel_until is None or now > sub.cancel_until:
            raise SimError(
                400,
                ErrorCode.CANCELLATION_NOT_ALLOWED,
                f"You have passed your {int(CANCELLATION_WINDOW.total_seconds() // 3600)}-hour "
                "cancellation window. We are unable to cancel your purchase",
            )
        _apply_status_cancel(sub, outcome)
        return _finish(sub, outcome)

    if "status" in wanted:
        if (
            new_status == "active"
            and sub.commitment_end
            and now > sub.commitment_end + timedelta(days=1)
        ):
            raise _invalid("The term has ended; the subscription cannot be reactivated.")
        if new_status == "suspended":
            # Suspending keeps billing but turns auto-renew off and drops scheduled changes.
            sub.auto_renew = False
            sub.scheduled = None
        sub.status = new_status
        outcome.changed_fields.append("status")

    auto_renew = bool(wanted.get("autoRenewEnabled", sub.auto_renew))
    if "quantity" in wanted:
        quantity = _as_int(wanted["quantity"], "quantity")
        delta = quantity - sub.quantity
        if delta > 0:
            seats = business_seats_in_use(tenant_subs, sku, sub.id) if sku.business_seat_cap else 0
            check_quantity(sku, quantity, seats)
        else:
            refundable = sum(w.quantity for w in open_windows(sub, now))
            if -delta > refundable or quantity < sku.minimum_quantity:
                raise SimError(
                    400,
                    ErrorCode.QUANTITY_DECREASE_NOT_ALLOWED,
                    "Subscription quantity cannot be decreased.",
                )
        outcome.quantity_delta = delta
    if "billingCycle" in wanted:
        _check_billing_change(sub, sku, str(wanted["billingCycle"]), now)
    if "termDuration" in wanted:
        term = str(wanted["termDuration"])
        if TERM_ORDER.get(term, 0) <= TERM_ORDER.get(sub.term_duration, 0):
            raise _invalid(
                "The term can only be extended mid-term; shorter terms apply at renewal."
            )
        cycle = str(wanted.get("billingCycle", sub.billing_cycle))
        if availability is None or not availability.offers(term, cycle):
            raise SimError(
                400,
                ErrorCode.INVALID_TERM_OR_BILLING_CYCLE,
                f"Term {term} with {cycle} billing is not offered.",
            )
    scheduled = wanted.get("scheduledNextTermInstructions", sub.scheduled)
    if "scheduledNextTermInstructions" in wanted and scheduled is not None:
        if new_status != "active" or not auto_renew:
            raise SimError(
                400,
                ErrorCode.SCHEDULED_CHANGE_NOT_ALLOWED,
                "Scheduled changes need an active subscription with auto-renew on.",
            )
        _check_scheduled(catalog, sub, scheduled)

    # Everything is valid: apply.
    if "quantity" in wanted:
        delta = outcome.quantity_delta
        if delta > 0:
            sub.refund_windows.append(RefundWindow(delta, now + CANCELLATION_WINDOW))
        else:
            _return_seats(sub, -delta, now)
        sub.quantity += delta
        sub.consumed_units = min(sub.consumed_units, sub.quantity)
        # A mid-term quantity change wipes scheduled next-term changes.
        sub.scheduled = None
        outcome.changed_fields.append("quantity")
    if "autoRenewEnabled" in wanted:
        if auto_renew and sub.status != "active":
            raise _invalid("Auto-renew can only be turned on for an active subscription.")
        sub.auto_renew = auto_renew
        if not auto_renew:
            sub.scheduled = None
        outcome.changed_fields.append("autoRenewEnabled")
    if "billingCycle" in wanted:
        sub.billing_cycle = str(wanted["billingCycle"])
        outcome.changed_fields.append("billingCycle")
    if "termDuration" in wanted:
        sub.term_duration = str(wanted["termDuration"])
        sub.effective_start = midnight(now)
        sub.commitment_end = commitment_end(now, sub.term_duration)
        outcome.changed_fields.append("termDuration")
    if "scheduledNextTermInstructions" in wanted:
        sub.scheduled = scheduled
        outcome.changed_fields.append("scheduledNextTermInstructions")
    if "friendlyName" in wanted:
        sub.friendly_name = str(wanted["friendlyName"])
        outcome.changed_fields.append("friendlyName")
    return _finish(sub, outcome)


def _finish(sub: Subscription, outcome: PatchOutcome) -> PatchOutcome:
    sub.version += 1
    sub.updates += 1
    return outcome


def _apply_status_cancel(sub: Subscription, outcome: PatchOutcome) -> None:
    sub.status = "deleted"
    sub.auto_renew = False
    sub.scheduled = None
    sub.refund_windows = []
    outcome.cancelled = True
    outcome.changed_fields.append("status")


def _return_seats(sub: Subscription, seats: int, now: datetime) -> None:
    # Take the seats whose window closes first: what stays refundable keeps the longest windows.
    for window in sorted(open_windows(sub, now), key=lambda w: w.until):
        take = min(window.quantity, seats)
        window.quantity -= take
        seats -= take
        if seats == 0:
            break
    sub.refund_windows = [w for w in sub.refund_windows if w.quantity > 0]


def _check_billing_change(sub: Subscription, sku: Sku, cycle: str, now: datetime) -> None:
    if cycle not in sku.supported_billing_cycles:
        raise SimError(
            400, ErrorCode.INVALID_TERM_OR_BILLING_CYCLE, f"Billing cycle {cycle} is not offered."
        )
    mid_term_ok = (
        sub.term_duration == "P3Y"
        and {sub.billing_cycle, cycle} == {"monthly", "annual"}
        and now < P3Y_BILLING_CHANGE_CUTOFF
    )
    if not mid_term_ok:
        raise _invalid(
            "The billing cycle cannot change mid-term; schedule it for the renewal with "
            "scheduledNextTermInstructions."
        )


def _check_scheduled(catalog: Catalog, sub: Subscription, scheduled: Any) -> None:
    if not isinstance(scheduled, dict) or not isinstance(scheduled.get("product"), dict):
        raise _invalid(
            "scheduledNextTermInstructions needs a product.", ErrorCode.SCHEDULED_CHANGE_NOT_ALLOWED
        )
    product = scheduled["product"]
    item = catalog.item(
        f"{product.get('productId')}:{product.get('skuId')}:{product.get('availabilityId')}"
    )
    if item is None:
        raise SimError(
            400, ErrorCode.INVALID_CATALOG_ITEM, "The scheduled product is not in the catalog."
        )
    _, sku, availability = item
    term = str(product.get("termDuration") or sub.term_duration)
    cycle = str(product.get("billingCycle") or sub.billing_cycle)
    if sku.is_trial or not availability.offers(term, cycle):
        raise SimError(
            400,
            ErrorCode.INVALID_TERM_OR_BILLING_CYCLE,
            f"Term {term} with {cycle} billing is not offered.",
        )
    if sku.key != sub.sku_key and sku.key not in _upgrade_keys(catalog, sub):
        raise _invalid(
            "The scheduled product must be the same product or one of its upgrades.",
            ErrorCode.SCHEDULED_CHANGE_NOT_ALLOWED,
        )
    if "quantity" in scheduled:
        check_quantity(sku, _as_int(scheduled["quantity"], "quantity"), 0)


def _upgrade_keys(catalog: Catalog, sub: Subscription) -> tuple[str, ...]:
    sku = catalog.sku_by_key(sub.sku_key)
    return sku.upgrade_target_keys if sku else ()


def _resolve(catalog: Catalog, sub: Subscription) -> Any:
    item = catalog.item(sub.catalog_item_id)
    if item is None:
        sku = catalog.sku_by_key(sub.sku_key)
        if sku is None:
            raise _invalid("The subscription's offer is no longer in the catalog.")
        return None, sku, None
    return item


def _requested_changes(sub: Subscription, body: dict[str, Any]) -> dict[str, Any]:
    current = {
        "status": sub.status,
        "quantity": sub.quantity,
        "autoRenewEnabled": sub.auto_renew,
        "billingCycle": sub.billing_cycle,
        "termDuration": sub.term_duration,
        "scheduledNextTermInstructions": sub.scheduled,
        "friendlyName": sub.friendly_name,
    }
    wanted: dict[str, Any] = {}
    for key, value in current.items():
        if key not in body:
            continue
        new = body[key]
        if key == "status" and isinstance(new, str):
            new = new.lower()
        if key in ("billingCycle",) and isinstance(new, str):
            new = new.lower()
        if (
            key == "scheduledNextTermInstructions"
            and new is not None
            and _same_scheduled(new, value)
        ):
            continue
        if new != value:
            wanted[key] = new
    return wanted


def _same_scheduled(new: Any, current: Any) -> bool:
    if not isinstance(new, dict) or not isinstance(current, dict):
        return False
    return bool(new == current)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimError(400, ErrorCode.BAD_REQUEST, f"{name} must be an integer.")
    return value
