"""Partner Center's subscription, transition and licence shapes mapped to ours (and back).

Only this module knows that our `Cancelled` is Partner Center's `deleted`, that the next-term
product is three ids in `scheduledNextTermInstructions.product`, or that an eligibility hides
its reasons in `eligibilities[].errors`. The services speak `SubscriptionFacts`,
`SubscriptionChange`, `TransitionOption`, `LicenceCount`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.adapters.partner_center import wire as pc
from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.subscriptions import (
    ChangeProgress,
    LicenceCount,
    NextTerm,
    RefundableSeats,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionOption,
    TransitionOutcome,
    TransitionRequest,
)

# Partner Center's subscription statuses in our words; readers tolerate the unknown ones.
_STATUS_OURS = {
    "active": "Active",
    "pending": "Pending",
    "suspended": "Suspended",
    "deleted": "Cancelled",
    "expired": "Expired",
    "disabled": "Disabled",
}
# What a change may set, in Partner Center's words (reactivate, suspend, cancel).
_STATUS_THEIRS = {"active": "active", "suspended": "suspended", "cancelled": "deleted"}

# Statuses of the operation a 202's Location points at.
_RUNNING = frozenset({"inprogress", "notstarted", "running", "pending", "accepted"})
_FAILED = frozenset({"failed", "error", "cancelled", "canceled"})


def our_status(status: str | None) -> str:
    """Partner Center's status as ours (`deleted` → `Cancelled`); unknown ones capitalised."""
    value = (status or "unknown").strip()
    return _STATUS_OURS.get(value.lower(), value[:1].upper() + value[1:])


def _catalog_item(product: pc.ScheduledProduct | None) -> str | None:
    if product is None or not (product.product_id and product.sku_id and product.availability_id):
        return None
    return f"{product.product_id}:{product.sku_id}:{product.availability_id}".upper()


def next_term(instructions: pc.ScheduledNextTermInstructions | None) -> NextTerm | None:
    """The change scheduled for renewal, or None."""
    if instructions is None:
        return None
    product = instructions.product
    return NextTerm(
        catalog_item_id=_catalog_item(product),
        quantity=instructions.quantity,
        term_duration=_term(product.term_duration) if product else None,
        billing_cycle=_cycle(product.billing_cycle) if product else None,
    )


def _cycle(value: str | None) -> str | None:
    """A billing cycle in our one spelling, lower-case as the catalog and request bodies have
    it (Partner Center writes `monthly`, `Monthly` and `MONTHLY` alike)."""
    return value.strip().lower() if value else None


def _term(value: str | None) -> str | None:
    """A term duration upper-case (`P1Y`), as the catalog has it."""
    return value.strip().upper() if value else None


def subscription_facts(sub: pc.Subscription) -> SubscriptionFacts:
    """What Partner Center says about a subscription, in our words."""
    extra = sub.model_extra or {}
    catalog_item = extra.get("catalogItemId") or sub.offer_id
    refundable = sub.refundable_quantity.details if sub.refundable_quantity else []
    is_trial = bool(sub.is_trial)
    return SubscriptionFacts(
        id=sub.id,
        catalog_item_id=str(catalog_item).upper() if catalog_item else None,
        name=sub.friendly_name or sub.offer_name or sub.id,
        quantity=sub.quantity or 0,
        term_duration=_term(sub.term_duration),
        billing_cycle=_cycle(sub.billing_cycle),
        status=our_status(sub.status),
        start_date=sub.effective_start_date or sub.creation_date,
        commitment_end_date=sub.commitment_end_date,
        cancellation_allowed_until=sub.cancellation_allowed_until_date,
        auto_renew=bool(sub.auto_renew_enabled),
        is_trial=is_trial,
        order_id=sub.order_id,
        parent_subscription_id=sub.parent_subscription_id,
        etag=sub.attributes.etag if sub.attributes else None,
        refundable=tuple(
            RefundableSeats(quantity=d.quantity, until=d.allowed_until_date_time)
            for d in refundable
            if d.quantity > 0
        ),
        next_term=next_term(sub.scheduled_next_term_instructions),
        trial_ends=sub.commitment_end_date if is_trial else None,
        partner_id=(sub.partner_id or "").strip() or None,
    )


def _instructions(current: pc.Subscription, wanted: NextTerm) -> pc.ScheduledNextTermInstructions:
    # A next term that leaves a part out keeps the current one (Partner Center wants all three
    # ids of the product, its term and billing cycle, and the quantity).
    item = wanted.catalog_item_id or str(current.offer_id or "")
    parts = item.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValidationFailed(
            [FieldError("nextTerm.catalogItemId", "must be product:sku:availability")]
        )
    product_id, sku_id, availability_id = parts
    return pc.ScheduledNextTermInstructions(
        product=pc.ScheduledProduct(
            product_id=product_id,
            sku_id=sku_id,
            availability_id=availability_id,
            billing_cycle=wanted.billing_cycle or current.billing_cycle,
            term_duration=wanted.term_duration or current.term_duration,
        ),
        quantity=wanted.quantity if wanted.quantity is not None else current.quantity,
    )


def changed(current: pc.Subscription, change: SubscriptionChange) -> pc.Subscription:
    """The whole resource as read, with only what `change` names changed.

    Everything else goes back exactly as Partner Center returned it: leaving out
    `autoRenewEnabled` or `scheduledNextTermInstructions` would silently reset them.
    """
    update: dict[str, Any] = {}
    if change.quantity is not None:
        update["quantity"] = change.quantity
    if change.billing_cycle is not None:
        update["billing_cycle"] = change.billing_cycle.lower()
    if change.term_duration is not None:
        update["term_duration"] = change.term_duration
    if change.auto_renew is not None:
        update["auto_renew_enabled"] = change.auto_renew
    if change.status is not None:
        theirs = _STATUS_THEIRS.get(change.status.lower())
        if theirs is None:
            raise ValidationFailed([FieldError("status", "must be Active, Suspended or Cancelled")])
        update["status"] = theirs
    if change.clear_next_term:
        update["scheduled_next_term_instructions"] = None
    elif change.next_term is not None:
        update["scheduled_next_term_instructions"] = _instructions(current, change.next_term)
    # model_copy(update=) bypasses validation and "fields set"; assigning marks them set, so
    # `to_wire(as_read=True)` sends them (an explicit null included).
    body = current.model_copy(deep=True)
    for name, value in update.items():
        setattr(body, name, value)
    return body


def progress(payload: Mapping[str, Any], retry_after: float | None) -> ChangeProgress:
    """Where an accepted change is, from one read of its Location.

    Partner Center documents the Location as "where to retrieve the subscription": a body that
    is the subscription itself means done. The simulator answers with an operation resource
    (`status` inProgress / succeeded / failed + `error`) before that.
    """
    kind = str((payload.get("attributes") or {}).get("objectType") or "")
    if kind.lower() == "subscription" or ("offerId" in payload and "quantity" in payload):
        facts = subscription_facts(pc.Subscription.model_validate(payload))
        return ChangeProgress(done=True, facts=facts)
    status = str(payload.get("status") or "").replace(" ", "").replace("_", "").lower()
    if status in _RUNNING:
        return ChangeProgress(done=False, retry_after_seconds=retry_after)
    if status in _FAILED:
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        code = error.get("code") if error else None
        return ChangeProgress(
            done=False,
            failed_code=str(code) if code is not None else None,
            failed_reason=str(
                (error or {}).get("description") or (error or {}).get("message") or "failed"
            ),
        )
    return ChangeProgress(done=True)


def transition_options(items: Sequence[pc.TransitionEligibility]) -> list[TransitionOption]:
    """One option per target catalog item: eligible if any transition type is."""
    options: dict[str, TransitionOption] = {}
    for item in items:
        target = (item.catalog_item_id or "").upper()
        if not target:
            continue
        eligible = any(bool(e.is_eligible) for e in item.eligibilities)
        reasons = tuple(
            dict.fromkeys(
                (err.description or str(err.code))
                for e in item.eligibilities
                if not e.is_eligible
                for err in e.errors
            )
        )
        options[target] = TransitionOption(
            catalog_item_id=target,
            title=item.title or target,
            eligible=eligible,
            reasons=() if eligible else reasons,
        )
    return list(options.values())


def transition_body(subscription_id: str, request: TransitionRequest) -> pc.Transition:
    """The POST …/transitions body for moving `request.quantity` seats."""
    return pc.Transition(
        from_subscription_id=subscription_id,
        to_catalog_item_id=request.to_catalog_item_id,
        quantity=request.quantity,
        term_duration=request.term_duration,
        billing_cycle=request.billing_cycle.lower() if request.billing_cycle else None,
        transition_type=(
            pc.TransitionType.TRANSITION_WITH_LICENSE_TRANSFER
            if request.with_licence_transfer
            else pc.TransitionType.TRANSITION_ONLY
        ).value,
    )


def transition_outcome(result: pc.Transition) -> TransitionOutcome:
    """What a transition did: its status (from the result or its last event) in our words."""
    extra = result.model_extra or {}
    events = extra.get("events") or extra.get("Events") or []
    last = events[-1] if isinstance(events, list) and events else {}
    raw = str(result.status or (last.get("status") if isinstance(last, dict) else "") or "").strip()
    status = {
        "complete": "Completed",
        "completed": "Completed",
        "succeeded": "Completed",
        "started": "Started",
        "pending": "Started",
        "inprogress": "Started",
        "failed": "Failed",
    }.get(raw.replace(" ", "").lower(), raw.capitalize() or "Started")
    reason = None
    if status == "Failed":
        reason = _transition_error(extra.get("error")) or _transition_error(
            (last.get("errors") or last.get("error")) if isinstance(last, dict) else None
        )
    return TransitionOutcome(
        status=status,
        to_subscription_id=result.to_subscription_id,
        partner_center_order_id=result.order_id,
        failed_reason=reason
        or ("Partner Center gave the transition up" if status == "Failed" else None),
        transition_id=result.id,
    )


def _transition_error(value: object) -> str | None:
    """Partner Center's words for a failed transition: a text, an error `{code, description}`
    or a list of them (a failed event's `errors`)."""
    if isinstance(value, list):
        words = [w for w in (_transition_error(v) for v in value) if w]
        return "; ".join(words) or None
    if isinstance(value, dict):
        text = value.get("description") or value.get("message")
        return str(text) if text else (str(value["code"]) if value.get("code") else None)
    return str(value) if value else None


def licence_counts(skus: Sequence[pc.SubscribedSku]) -> list[LicenceCount]:
    """Licences per SKU on the tenant (assigned = `consumedUnits`)."""
    return [
        LicenceCount(
            sku_id=s.product_sku.id or "",
            name=s.product_sku.name or s.product_sku.sku_part_number or "",
            part_number=s.product_sku.sku_part_number,
            assigned=s.consumed_units or 0,
            total=s.total_units or 0,
            active=s.active_units or 0,
            suspended=s.suspended_units or 0,
        )
        for s in skus
        if s.product_sku is not None and s.product_sku.id
    ]
