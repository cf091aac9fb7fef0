"""Microsoft's new-commerce rules for changing a subscription, checked before anything is queued.

Pure functions of the record, the request and `now` (REFERENCE.md "New-commerce subscription
rules"). Each refusal is a `RuleBroken` whose `rule` becomes the problem's type
(`/problems/<rule>`) and whose detail says what is possible instead. Partner Center stays the
judge: passing here only means the request is worth sending. What a change also undoes (a
scheduled next-term change wiped by a mid-term change) comes back as warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.domain.errors import RuleBroken
from shared.domain.orders import ChangeKind, SubscriptionChangeOrder
from shared.domain.subscriptions import NextTerm, Subscription, TransitionOption

CANCELLATION_WINDOW_CLOSED = "cancellation-window-closed"
REDUCE_BEYOND_REFUNDABLE = "reduce-beyond-refundable"
BELOW_ASSIGNED_LICENCES = "below-assigned-licences"
SUBSCRIPTION_SUSPENDED = "subscription-suspended"
TRIAL_QUANTITY_FIXED = "trial-quantity-fixed"
TERM_ONLY_LONGER = "term-only-longer"
BILLING_CYCLE_NOT_CHANGEABLE = "billing-cycle-not-changeable"
AUTO_RENEW_REQUIRED = "auto-renew-required"
CHANGE_IN_PROGRESS = "change-in-progress"
NOT_ELIGIBLE = "not-eligible"

WIPES_NEXT_TERM = "the change scheduled for renewal ({}) is removed by this change"
SUSPEND_WARNING = "suspending turns auto-renew off; billing continues while suspended"

ACTIVE, SUSPENDED, CANCELLED = "Active", "Suspended", "Cancelled"


@dataclass(frozen=True)
class UpdateRequest:
    """What a PATCH asks for; None leaves a field as it is."""

    quantity: int | None = None
    billing_cycle: str | None = None
    term_duration: str | None = None
    auto_renew: bool | None = None
    status: str | None = None  # Active, Suspended, Cancelled


def when(moment: datetime) -> str:
    """A moment as people read it in an answer: `2026-12-04 10:00 UTC`."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _state(sub: Subscription) -> str:
    return sub.status.lower()


def next_term_summary(next_term: NextTerm) -> str:
    """A scheduled change in a few words."""
    parts = [
        f"quantity {next_term.quantity}" if next_term.quantity is not None else "",
        f"term {next_term.term_duration}" if next_term.term_duration else "",
        f"billing {next_term.billing_cycle}" if next_term.billing_cycle else "",
        f"offer {next_term.catalog_item_id}" if next_term.catalog_item_id else "",
    ]
    return ", ".join(p for p in parts if p) or "renewal as is"


def _wipes_next_term(sub: Subscription) -> list[str]:
    return [WIPES_NEXT_TERM.format(next_term_summary(sub.next_term))] if sub.next_term else []


def no_change_in_flight(sub: Subscription) -> None:
    """One change at a time: a subscription with a pending change refuses another."""
    if sub.pending_change is not None:
        p = sub.pending_change
        raise RuleBroken(
            CHANGE_IN_PROGRESS,
            f"order {p.order_id} ({p.summary}) is still being applied to this subscription; "
            "wait until it is Completed or Failed, then ask again",
        )


def _changeable(sub: Subscription, *, reactivating: bool = False) -> None:
    """Suspended: only reactivation; anything not active: nothing at all."""
    state = _state(sub)
    if state == "suspended" and not reactivating:
        raise RuleBroken(
            SUBSCRIPTION_SUSPENDED,
            "a suspended subscription can only be reactivated (status Active) before its term "
            "ends; reactivate it first, then change it",
        )
    if state not in ("active", "suspended"):
        raise RuleBroken(
            NOT_ELIGIBLE,
            f"the subscription is {sub.status}: it can no longer be changed; buy a new one instead",
        )


def refundable_now(sub: Subscription, now: datetime) -> list[tuple[int, datetime]]:
    """Seats still inside their own window, as (quantity, until), soonest first."""
    return sorted(
        ((r.quantity, r.until) for r in sub.refundable if r.quantity > 0 and now <= r.until),
        key=lambda pair: pair[1],
    )


def check_decrease(sub: Subscription, quantity: int, now: datetime) -> None:
    """Only seats inside their 7-day window may be removed (800090 otherwise)."""
    removing = sub.quantity - quantity
    open_seats = refundable_now(sub, now)
    total = sum(q for q, _ in open_seats)
    if removing <= total:
        return
    if not open_seats:
        raise RuleBroken(
            REDUCE_BEYOND_REFUNDABLE,
            "no seats can be removed now: every seat is past its 7-day window; schedule a "
            "lower quantity for renewal (next-term) or turn auto-renew off"
            + (f" before {when(sub.commitment_end_date)}" if sub.commitment_end_date else ""),
        )
    windows = ", ".join(f"{q} until {when(until)}" for q, until in open_seats)
    raise RuleBroken(
        REDUCE_BEYOND_REFUNDABLE,
        f"{total} seat{'s' if total != 1 else ''} can be removed ({windows}), so the quantity "
        f"can go down to {sub.quantity - total}, not {quantity}; schedule a lower quantity for "
        "renewal (next-term) for the rest",
    )


def check_assigned(sub: Subscription, quantity: int, assigned: int, total: int) -> None:
    """Never below the licences assigned to users (counted per SKU over the tenant: the other
    subscriptions of the SKU keep their seats)."""
    others = max(total - sub.quantity, 0)
    floor = max(assigned - others, 0)
    if quantity < floor:
        raise RuleBroken(
            BELOW_ASSIGNED_LICENCES,
            f"{assigned} licences of this product are assigned to users, so the quantity can go "
            f"down to {floor} at most; unassign {floor - quantity} licence"
            f"{'s' if floor - quantity != 1 else ''} first",
        )


def _check_cancel(sub: Subscription, now: datetime) -> None:
    until = sub.cancellation_allowed_until
    if until is None or now > until:
        closed = f" on {when(until)}" if until is not None else ""
        end = f" on {when(sub.commitment_end_date)}" if sub.commitment_end_date else ""
        raise RuleBroken(
            CANCELLATION_WINDOW_CLOSED,
            f"the cancellation window closed{closed}; turn auto-renew off and the subscription "
            f"ends with its term{end}",
        )


_TERM_MONTHS = {"P1M": 1, "P1Y": 12, "P3Y": 36}


def term_months(term: str | None) -> int | None:
    """A term's length in months (None for one we do not know)."""
    return _TERM_MONTHS.get((term or "").upper())


def _check_term(sub: Subscription, term: str) -> None:
    old, new = term_months(sub.term_duration), term_months(term)
    if old is None or new is None or new <= old:
        raise RuleBroken(
            TERM_ONLY_LONGER,
            f"mid-term the term can only get longer than {sub.term_duration} (P1M → P1Y or "
            "P3Y, P1Y → P3Y); schedule a shorter term for renewal (next-term)",
        )


def check_update(sub: Subscription, request: UpdateRequest, now: datetime) -> list[str]:
    """Whether a PATCH may go to Partner Center now (RuleBroken if not); its warnings.

    Only what the request changes is judged: a field equal to the record's is no change.
    Assigned licences are checked apart (`check_assigned`), as they need Partner Center.
    """
    no_change_in_flight(sub)
    status = request.status
    state = _state(sub)
    if status == ACTIVE:
        if state == "active":
            status = None
        else:
            _changeable(sub, reactivating=True)
            return []
    _changeable(sub)
    warnings: list[str] = []
    if status == CANCELLED:
        if sub.is_trial:
            raise RuleBroken(
                NOT_ELIGIBLE,
                "a trial cannot be cancelled; turn auto-renew off and it ends with the trial",
            )
        _check_cancel(sub, now)
        return _wipes_next_term(sub)
    if status == SUSPENDED:
        if sub.is_trial:
            raise RuleBroken(
                NOT_ELIGIBLE,
                "a trial cannot be suspended; turn auto-renew off and it ends with the trial",
            )
        return [SUSPEND_WARNING, *_wipes_next_term(sub)]
    quantity = request.quantity if request.quantity != sub.quantity else None
    if quantity is not None:
        if sub.is_trial:
            raise RuleBroken(
                TRIAL_QUANTITY_FIXED,
                f"a trial keeps its {sub.quantity} seats; convert it to paid (POST …/convert) "
                "to choose a quantity",
            )
        if quantity < sub.quantity:
            check_decrease(sub, quantity, now)
        warnings += _wipes_next_term(sub)
    cycle = request.billing_cycle
    if cycle is not None and cycle.lower() != (sub.billing_cycle or "").lower():
        raise RuleBroken(
            BILLING_CYCLE_NOT_CHANGEABLE,
            f"the billing cycle ({sub.billing_cycle}) cannot change mid-term (Microsoft blocks "
            "it since 2025-04-01); schedule it for renewal (PUT …/next-term)",
        )
    term = request.term_duration
    if term is not None and term.upper() != (sub.term_duration or "").upper():
        if sub.is_trial:
            raise RuleBroken(
                NOT_ELIGIBLE, "a trial's term is fixed; convert it to paid to choose a term"
            )
        _check_term(sub, term)
        warnings += _wipes_next_term(sub)
    if request.auto_renew is False and sub.auto_renew:
        warnings += _wipes_next_term(sub)
    return list(dict.fromkeys(warnings))


def check_schedule(sub: Subscription, next_term: NextTerm) -> None:
    """A change at renewal needs an active subscription with auto-renew on."""
    no_change_in_flight(sub)
    _changeable(sub)
    if not sub.auto_renew:
        raise RuleBroken(
            AUTO_RENEW_REQUIRED,
            "a change at renewal needs auto-renew on; turn it on first (PATCH autoRenew true)",
        )


def check_unschedule(sub: Subscription) -> None:
    """Only a scheduled change can be removed."""
    no_change_in_flight(sub)
    _changeable(sub)
    if sub.next_term is None:
        raise RuleBroken(NOT_ELIGIBLE, "no change is scheduled for renewal; nothing to remove")


def check_convert(sub: Subscription) -> list[str]:
    """Only a trial converts to paid; the conversion wipes a scheduled change."""
    no_change_in_flight(sub)
    _changeable(sub)
    if not sub.is_trial:
        raise RuleBroken(NOT_ELIGIBLE, "only a trial converts to paid; this subscription is paid")
    return _wipes_next_term(sub)


def check_upgrade(sub: Subscription, quantity: int) -> list[str]:
    """Upgrades: active, paid, at most the subscription's seats; a scheduled change is wiped."""
    no_change_in_flight(sub)
    _changeable(sub)
    if sub.is_trial:
        raise RuleBroken(NOT_ELIGIBLE, "a trial is not upgraded; convert it to paid first")
    if quantity > sub.quantity:
        raise RuleBroken(
            NOT_ELIGIBLE,
            f"at most the subscription's {sub.quantity} seats move in an upgrade; add seats "
            "after it (PATCH quantity)",
        )
    return _wipes_next_term(sub)


def check_change(sub: Subscription, change: SubscriptionChangeOrder, now: datetime) -> list[str]:
    """The rules again for a change already asked for (a Change order retried after a refusal,
    or approved after waiting): the same checks as its request, from the record and the clock
    only (the record's last licence count stands for Partner Center's). Its warnings."""
    if change.kind is ChangeKind.UPDATE:
        request = UpdateRequest(
            quantity=change.quantity,
            billing_cycle=change.billing_cycle,
            term_duration=change.term_duration,
            auto_renew=change.auto_renew,
            status=change.status,
        )
        warnings = check_update(sub, request, now)
        decrease = change.quantity is not None and change.quantity < sub.quantity
        if decrease and change.quantity is not None and sub.assigned_licences is not None:
            check_assigned(sub, change.quantity, sub.assigned_licences, sub.quantity)
        return warnings
    if change.kind is ChangeKind.CONVERT:
        return check_convert(sub)
    if change.kind is ChangeKind.UPGRADE:
        return check_upgrade(sub, change.quantity or sub.quantity)
    if change.kind is ChangeKind.SCHEDULE:
        next_term = NextTerm(
            catalog_item_id=change.to_catalog_item_id,
            quantity=change.quantity,
            term_duration=change.term_duration,
            billing_cycle=change.billing_cycle,
        )
        check_schedule(sub, next_term)
        return []
    check_unschedule(sub)
    return []


def eligible_target(
    options: Sequence[TransitionOption], target: str | None, what: str
) -> TransitionOption:
    """The option a transition goes to (`target`, or the one eligible option), or why not."""
    wanted = [o for o in options if target is None or o.catalog_item_id.upper() == target.upper()]
    if target is not None and not wanted:
        names = ", ".join(o.catalog_item_id for o in options if o.eligible) or "none"
        raise RuleBroken(
            NOT_ELIGIBLE,
            f"{target} is not a {what} target of this subscription; eligible now: {names}",
        )
    eligible = [o for o in wanted if o.eligible]
    if not eligible:
        reasons = "; ".join(r for o in wanted for r in o.reasons) or "no reason given"
        raise RuleBroken(NOT_ELIGIBLE, f"Partner Center does not allow this {what} now: {reasons}")
    return eligible[0]
