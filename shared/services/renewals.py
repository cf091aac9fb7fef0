"""Subscriptions renewing soon across a reseller's customers, and what changes then.

One server-side filtered query of the Subscriptions table (reseller, commitment end date in
the window) finds them: only the matching rows travel, whichever customer's partition they
are in, so a reseller with 10,000 customers costs one query (see bench/renewals.py), not one
per customer. A customer user's query stays inside its own customer's partition.
"""

from __future__ import annotations

from datetime import date

from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.identity import Principal
from shared.domain.model import Page, WireModel
from shared.domain.renewals import renewal_bounds, renews_within, term_at_renewal
from shared.domain.subscriptions import Subscription
from shared.services import access, resellers
from shared.services.attribution import Names, names_for
from shared.services.catalog import offset, token
from shared.services.orders import OrderBook
from shared.services.subscriptions.views import (
    SubscriptionPublic,
    SubscriptionStaff,
    present_subscription,
)

DEFAULT_WITHIN = 30
MAX_WITHIN = 365


class NextTerm(WireModel):
    """What the subscription becomes at renewal (the scheduled change applied, if any)."""

    catalog_item_id: str | None
    quantity: int
    term_duration: str | None
    billing_cycle: str | None
    changes: list[str]  # what differs from the current term, in words; empty: renews as is


class _RenewalFields(WireModel):
    customer_id: str
    customer_name: str | None
    renews_on: date
    will_renew: bool  # False: auto-renew is off, the subscription expires on `renewsOn`
    next_term: NextTerm | None  # None when it expires


class RenewalStaff(_RenewalFields):
    """A renewal as reseller staff see it (the subscription with cost and margin)."""

    subscription: SubscriptionStaff


class RenewalPublic(_RenewalFields):
    """A renewal as the customer's users see it (their price only)."""

    subscription: SubscriptionPublic


def renewing(
    book: OrderBook, reseller: str, today: date, within: int, customer_id: str | None = None
) -> list[Subscription]:
    """Live subscriptions of the reseller (or of one of its customers) renewing or expiring
    from `today` to `within` days after it, soonest first."""
    start, end = renewal_bounds(today, within)
    found = book.subscriptions.iterate(
        customer_id,
        equals={"reseller": reseller},
        since={"commitment_end_date": start},
        before={"commitment_end_date": end},
    )
    subs = [s for s in found if s.live and renews_within(s, today, within)]
    return sorted(subs, key=lambda s: (s.renews_on, s.customer_id, s.id.lower()))


def _present(
    principal: Principal, sub: Subscription, customer_name: str | None, names: Names
) -> RenewalStaff | RenewalPublic:
    assert sub.renews_on is not None  # renewing() keeps only those with a date
    term = term_at_renewal(sub) if sub.auto_renew else None
    fields = _RenewalFields(
        customer_id=sub.customer_id,
        customer_name=customer_name,
        renews_on=sub.renews_on,
        will_renew=sub.auto_renew,
        next_term=(
            NextTerm(
                catalog_item_id=term.catalog_item_id,
                quantity=term.quantity,
                term_duration=term.term_duration,
                billing_cycle=term.billing_cycle,
                changes=list(term.changes),
            )
            if term is not None
            else None
        ),
    ).model_dump()
    view = present_subscription(principal, sub, names)
    if isinstance(view, SubscriptionStaff):
        return RenewalStaff(**fields, subscription=view)
    return RenewalPublic(**fields, subscription=view)


def list_renewals(
    book: OrderBook,
    principal: Principal,
    reseller: str,
    *,
    within: int = DEFAULT_WITHIN,
    page_size: int = 50,
    continuation_token: str | None = None,
) -> Page[RenewalStaff | RenewalPublic]:
    """A page of the caller's subscriptions renewing within `within` days, soonest first (a
    customer user: its own customer's only, at its prices)."""
    if not 1 <= within <= MAX_WITHIN:
        raise ValidationFailed([FieldError("within", f"must be 1 to {MAX_WITHIN} days")])
    customer_id = principal.customer_id if principal.is_customer_user else None
    access.ensure_visible(principal, reseller, customer_id)
    resellers.get(book.resellers, reseller)
    start = offset(continuation_token)
    subs = renewing(book, reseller, book.clock.now().date(), within, customer_id)
    chunk = subs[start : start + page_size]
    names: dict[str, str | None] = {}
    for cid in dict.fromkeys(s.customer_id for s in chunk):
        customer = book.customers.find(reseller, cid)
        names[cid] = customer.name if customer is not None else None
    end = start + page_size
    by = names_for(book, principal, reseller, customer_id)
    return Page[RenewalStaff | RenewalPublic](
        items=[_present(principal, s, names[s.customer_id], by) for s in chunk],
        continuation_token=token(end) if end < len(subs) else None,
    )
