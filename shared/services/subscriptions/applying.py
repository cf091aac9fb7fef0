"""The `provision-order` step of a Change order: one change of one subscription made in Partner
Center exactly once, whatever crashes.

`provisioning.provision` checks the customer and its tenant as for a purchase, then calls
`apply`. The MS-RequestId of the change (`order.change.request_id`) was stored with the order
and its message before anything reached Partner Center, so every call below may be repeated:
Partner Center answers a repeated request id with its first answer.

1. the call: Update / Schedule / Unschedule → `change_subscription`, Convert / Upgrade →
   `transition`. A 202 (`ChangeAccepted`) is polled with `change_progress` by re-enqueueing the
   step with a delay; so is a transition answered "started" (seats not moved yet), with
   `transition_progress` by its id, until it is completed (the seats' subscription known) or
   failed (the order Failed, the subscription freed). 800082 / 900278 (renewal or another
   operation in progress) and throttling wait the same way, at most `max_polls` times, then
   the watchdog takes over. Partner Center's ETag moving between its read and its write (412)
   is sent again at once. A 412 or a "not now" means nothing was applied, and Partner Center
   answers a repeated request id with its first answer: before the change is sent again it
   gets a new request id, saved on the order first (a crash between leaves the old id, whose
   replayed refusal renews it again). A refusal fails the order with a sentence from `refusals.py`.
2. the end: read the subscription (and the one an upgrade or conversion moved seats to), take
   its facts onto the record (`Subscription.apply_facts`), update its price snapshot, clear its
   `pending_change`; then the order Completed with its e-mail (event `subscriptionChanged`).

Writes, and what each protects (the order and the records are different tables, so no two of
them share a transaction):
- after an answer that says nothing was applied (412, 800082, 900278), the order with a new
  request id, before the change is sent again.
- after the call, the order (Provisioning) with Partner Center's answer: a 202's
  `accepted_location`, a started transition's `transition_id` (boundary
  `transition-started`), or `applied` with the subscription the change landed on
  (`lines[0].result`): a redelivery polls that 202 or transition, or goes straight to the end,
  instead of asking again. A crash before the transition id is saved sends the transition
  again with the same request id: Partner Center answers it with its first answer. Waits
  write nothing: the re-enqueued message carries the count.
- the end, first the Subscription records (one customer's records share a partition: one
  transaction, so an upgrade's new record and the old one change together), then the order
  Completed. A crash between re-runs the end: the facts are read again and written again, the
  unit price comes from the snapshot the record already holds (the same), the e-mail is found
  queued under its fixed id.
- a refusal or a give-up (`steps.fail`): the order Failed first, then the record's pending
  change cleared; a crash between is mended by the next delivery (a final order's pending
  change is released) or by the watchdog.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    DomainError,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.domain.failures import Failure, FailureKind, failure_kind
from shared.domain.identity import Reseller
from shared.domain.orders import (
    ChangeKind,
    LineResult,
    Order,
    OrderStatus,
    ProvisionOrderMessage,
    SubscriptionChangeOrder,
)
from shared.domain.outbox import Queue
from shared.domain.pricing import PricedLine
from shared.domain.subscriptions import (
    ChangeAccepted,
    NextTerm,
    Subscription,
    SubscriptionChange,
    SubscriptionFacts,
    SubscriptionOrigin,
    TransitionOutcome,
    TransitionRequest,
)
from shared.ports import PartnerCenter
from shared.services.orders.book import SYSTEM, OrderBook
from shared.services.orders.completion import notify
from shared.services.orders.steps import (
    Saver,
    boundary,
    fail,
    in_partner_center,
    poll_again,
    step_body,
    superseded,
)
from shared.services.subscriptions.pricing import price_after, priced_as, terms_of_facts
from shared.services.subscriptions.refusals import refusal_sentence

log = logging.getLogger(__name__)

# Partner Center's "not now" answers to a subscription write: wait and ask again.
WAIT_CODES = frozenset({"800082", "900278"})
# How often a write that lost Partner Center's ETag race is sent again at once.
ETAG_RACE_TRIES = 3
_RECORD_TRIES = 5
_TRANSITIONS = frozenset({ChangeKind.CONVERT, ChangeKind.UPGRADE})


def apply(
    book: OrderBook,
    partner_center: PartnerCenter,
    order: Order,
    message: ProvisionOrderMessage,
    tenant: str,
) -> None:
    """The step for a Change order still in flight (see the module docstring)."""
    change = order.change
    if change is None:
        fail(book, order, FailureKind.REFUSED, "the change order names no change", None)
        return
    saver = Saver(book, order)
    if not change.applied:
        if change.accepted_location is not None:
            if not _accepted_done(book, partner_center, saver, message, tenant):
                return
        elif change.transition_id is not None:
            if not _transition_done(book, partner_center, saver, message, tenant):
                return
        elif not _send(book, partner_center, saver, message, tenant):
            return
    _finish(book, partner_center, saver, message, tenant)


def give_up(book: OrderBook, order: Order, failure: Failure) -> None:
    """The step was refused for good or ran out of tries: Failed, the subscription freed;
    unless Partner Center already accepted or made the change, which is left in flight for the
    watchdog to finish (a Failed order would leave the record out of step with Partner
    Center, and a retry would ask for the change again)."""
    if in_partner_center(order):
        log.error(
            "change order %s/%s: Partner Center has the change but its step keeps failing "
            "(%s); left Provisioning for the watchdog",
            order.reseller,
            order.id,
            failure.reason,
        )
        return
    reason = (
        f"the change was refused: {failure.reason}"
        if failure.kind is FailureKind.REFUSED
        else "Partner Center could not be reached; check the subscription in Partner Center, "
        "then ask for the change again"
    )
    fail(book, order, failure.kind, reason, failure.reason)


# --- 1. the call ------------------------------------------------------------------------------


def _send(
    book: OrderBook,
    partner_center: PartnerCenter,
    saver: Saver,
    message: ProvisionOrderMessage,
    tenant: str,
) -> bool:
    """Send the change with its stored request id and record the answer; True when it is
    applied (go on to the end), False when the step waits or the order failed."""
    for attempt in range(1, ETAG_RACE_TRIES + 1):
        order = saver.order
        change = _change_of(order)
        try:
            answer = _call(partner_center, tenant, order, change)
            break
        except ConcurrencyConflict as exc:
            # Partner Center's resource moved between its read and its write: not applied.
            log.info("subscription %s moved under its PATCH; again", change.subscription_id)
            _renew_request_id(saver)
            if attempt == ETAG_RACE_TRIES:
                _wait(book, saver.order, message, exc.detail, None)
                return False
        except UpstreamRejected as exc:
            if exc.code in WAIT_CODES:
                _renew_request_id(saver)
            if exc.code in WAIT_CODES or failure_kind(exc) is FailureKind.TRANSIENT:
                # Not ready, throttled, signed out: nothing about the change itself.
                _wait(book, saver.order, message, exc.detail, None)
                return False
            reason = refusal_sentence(exc.code, exc.detail)
            fail(book, order, FailureKind.REFUSED, reason, exc.detail)
            return False
        except UpstreamUnavailable as exc:
            if exc.code in WAIT_CODES:
                _renew_request_id(saver)
            # Without Partner Center's code the change may have been made: the same id again.
            _wait(book, saver.order, message, exc.detail, exc.retry_after)
            return False
    if isinstance(answer, TransitionOutcome) and answer.failed:
        _transition_failed(book, order, answer)
        return False
    if isinstance(answer, TransitionOutcome) and not answer.done and not answer.transition_id:
        # Started, and nothing to read it again by: the same request id is asked again (its
        # replayed answer, or the seats found moved, ends the wait; else the watchdog).
        _wait(book, order, message, "the transition was started without an id", None)
        return False
    if order.status is OrderStatus.SUBMITTED:
        order.move(OrderStatus.PROVISIONING, book.clock.now(), SYSTEM)
    if isinstance(answer, ChangeAccepted):
        change.accepted_location = answer.location
        saver.save("accepted")
        delay = answer.retry_after_seconds or book.policy.poll_seconds
        poll_again(book, saver, message, _what(change), delay)
        return False
    if isinstance(answer, TransitionOutcome):
        if not answer.done:
            # Started: the seats have not moved yet. Read it again later by its id.
            change.transition_id = answer.transition_id
            saver.save("transition-started")
            poll_again(book, saver, message, _what(change), book.policy.poll_seconds)
            return False
        _landed_on(order, answer.to_subscription_id, answer.partner_center_order_id)
    else:
        _landed_on(order, change.subscription_id, None)
    change.applied = True
    saver.save("applied")
    return True


def _transition_failed(book: OrderBook, order: Order, outcome: TransitionOutcome) -> None:
    """Partner Center gave the transition up: the order Failed with its words."""
    reason = refusal_sentence(None, outcome.failed_reason)
    fail(book, order, FailureKind.REFUSED, reason, outcome.failed_reason)


def _renew_request_id(saver: Saver) -> None:
    """Partner Center refused the change without applying it (412, 800082, 900278) and keeps
    that answer for its request id: the next send is a new request, stored before it goes."""
    change = _change_of(saver.order)
    change.request_id = str(uuid.uuid4())
    saver.save("request-id")


def _call(
    partner_center: PartnerCenter, tenant: str, order: Order, change: SubscriptionChangeOrder
) -> SubscriptionFacts | ChangeAccepted | TransitionOutcome:
    """The one Partner Center write of the change, with the order's request id."""
    if change.kind in _TRANSITIONS:
        return partner_center.transition(
            tenant,
            change.subscription_id,
            _transition_of(order, change),
            request_id=change.request_id,
        )
    return partner_center.change_subscription(
        tenant, change.subscription_id, _patch_of(change), request_id=change.request_id
    )


def _patch_of(change: SubscriptionChangeOrder) -> SubscriptionChange:
    """What the PATCH changes, in the port's words."""
    if change.kind is ChangeKind.SCHEDULE:
        return SubscriptionChange(
            next_term=NextTerm(
                catalog_item_id=change.to_catalog_item_id,
                quantity=change.quantity,
                term_duration=change.term_duration,
                billing_cycle=change.billing_cycle,
            )
        )
    if change.kind is ChangeKind.UNSCHEDULE:
        return SubscriptionChange(clear_next_term=True)
    return SubscriptionChange(
        quantity=change.quantity,
        billing_cycle=change.billing_cycle,
        term_duration=change.term_duration,
        auto_renew=change.auto_renew,
        status=change.status,
    )


def _transition_of(order: Order, change: SubscriptionChangeOrder) -> TransitionRequest:
    """The transition of a conversion or upgrade (its target and seats from the order)."""
    target = change.to_catalog_item_id or (order.lines[0].catalog_item_id if order.lines else None)
    quantity = change.quantity or change.previous_quantity
    if target is None or quantity is None:
        raise NotFound("the change order names no target offer or quantity")
    return TransitionRequest(
        to_catalog_item_id=target,
        quantity=quantity,
        term_duration=change.term_duration,
        billing_cycle=change.billing_cycle,
    )


def _wait(
    book: OrderBook,
    order: Order,
    message: ProvisionOrderMessage,
    why: str,
    retry_after: float | None,
) -> None:
    """Partner Center is not ready for the change: ask again later with the same request id,
    at most `max_polls` times; then nothing is re-enqueued and the watchdog takes over."""
    change = _change_of(order)
    if message.poll >= book.policy.max_polls:
        log.warning(
            "Partner Center still refuses to %s now after %d tries (%s); left to the watchdog",
            _what(change),
            message.poll,
            why,
        )
        return
    delay = max(retry_after or 0.0, book.policy.poll_seconds)
    book.scheduler.send_later(Queue.PROVISION_ORDER, step_body(order, message.poll + 1), delay)
    boundary(book, "wait")


def _accepted_done(
    book: OrderBook,
    partner_center: PartnerCenter,
    saver: Saver,
    message: ProvisionOrderMessage,
    tenant: str,
) -> bool:
    """Where the 202 is: True when done; failed → the order Failed; running → look again."""
    order = saver.order
    change = _change_of(order)
    if superseded(book, order, message):
        return False
    assert change.accepted_location is not None
    progress = partner_center.change_progress(
        tenant, change.subscription_id, ChangeAccepted(location=change.accepted_location)
    )
    if progress.failed:
        reason = refusal_sentence(progress.failed_code, progress.failed_reason)
        fail(book, order, FailureKind.REFUSED, reason, progress.failed_reason)
        return False
    if progress.done:
        _landed_on(order, change.subscription_id, None)
        return True
    delay = progress.retry_after_seconds or book.policy.poll_seconds
    poll_again(book, saver, message, _what(change), delay)
    return False


def _transition_done(
    book: OrderBook,
    partner_center: PartnerCenter,
    saver: Saver,
    message: ProvisionOrderMessage,
    tenant: str,
) -> bool:
    """Where a started transition is: True when the seats have moved (the subscription they
    went to saved on the order); failed → the order Failed; still running → look again."""
    order = saver.order
    change = _change_of(order)
    if superseded(book, order, message):
        return False
    assert change.transition_id is not None
    try:
        outcome = partner_center.transition_progress(
            tenant, change.subscription_id, change.transition_id
        )
    except NotFound:
        # Partner Center lists a transition a little after it answered Started: read it again
        # later (NotFound would end the step for good, with the seats perhaps still moving).
        poll_again(book, saver, message, _what(change), book.policy.poll_seconds)
        return False
    if outcome.failed:
        _transition_failed(book, order, outcome)
        return False
    if not outcome.done:
        poll_again(book, saver, message, _what(change), book.policy.poll_seconds)
        return False
    _landed_on(order, outcome.to_subscription_id, outcome.partner_center_order_id)
    change.applied = True
    saver.save("applied")
    return True


# --- 2. the end -----------------------------------------------------------------------------


def _finish(
    book: OrderBook,
    partner_center: PartnerCenter,
    saver: Saver,
    message: ProvisionOrderMessage,
    tenant: str,
) -> None:
    """Partner Center has made the change: the records take its facts, then the order ends."""
    order = saver.order
    change = _change_of(order)
    source = partner_center.subscription(tenant, change.subscription_id)
    target_id = _target_id(order)
    target: SubscriptionFacts | None = None
    if target_id.lower() != change.subscription_id.lower():
        try:
            target = partner_center.subscription(tenant, target_id)
        except NotFound:
            # The seats' new subscription is not visible yet: look again later.
            poll_again(book, saver, message, _what(change), book.policy.poll_seconds)
            return
    reseller = book.resellers.get("reseller", order.reseller)
    _record(book, reseller, order, source, target)
    boundary(book, "record")
    if order.status is OrderStatus.SUBMITTED:
        order.move(OrderStatus.PROVISIONING, book.clock.now(), SYSTEM)
    order.move(OrderStatus.COMPLETED, book.clock.now(), SYSTEM)
    notify(book, reseller, order)
    saver.save("completed")


def _record(
    book: OrderBook,
    reseller: Reseller,
    order: Order,
    source: SubscriptionFacts,
    target: SubscriptionFacts | None,
) -> None:
    """The changed subscription's record (and the new one of an upgrade or conversion): the
    facts, the price snapshot, no pending change; in one transaction, re-read on a lost race."""
    change = _change_of(order)
    for _ in range(_RECORD_TRIES):
        now = book.clock.now()
        record = book.subscriptions.find(order.customer_id, change.subscription_id.lower())
        adds: list[Subscription] = []
        updates: list[Subscription] = []
        if record is None:
            record = _new_record(order, source, now)
            adds.append(record)
        else:
            updates.append(record)
        kept = record.priced
        record.apply_facts(source, now)
        record.updated_at = now
        record.priced = _snapshot(book, reseller, order, kept, source)
        record.end_change(order.id)
        if target is not None:
            moved = book.subscriptions.find(order.customer_id, target.id.lower())
            if moved is None:
                moved = _new_record(order, target, now)
                adds.append(moved)
            else:
                updates.append(moved)
            before = moved.priced
            moved.apply_facts(target, now)
            moved.updated_at = now
            moved.priced = _snapshot(book, reseller, order, before, target)
        try:
            book.subscriptions.save_all(order.customer_id, adds=adds, updates=updates)
            return
        except Conflict:  # a refresh or a new record raced this write: read again
            continue
    raise ConcurrencyConflict(f"subscription {change.subscription_id} kept changing")


def _new_record(order: Order, facts: SubscriptionFacts, now: datetime) -> Subscription:
    """A record for a subscription this change made (an upgrade's or conversion's seats)."""
    return Subscription.from_facts(
        order.reseller,
        order.customer_id,
        facts,
        now,
        origin=SubscriptionOrigin.ORDERED_HERE,
        order_id=order.id,
    )


def _snapshot(
    book: OrderBook,
    reseller: Reseller,
    order: Order,
    before: PricedLine | None,
    facts: SubscriptionFacts,
) -> PricedLine | None:
    """The price snapshot after the change: the order line's, when Partner Center's facts are
    what the line priced (the price the change was ordered at); else `price_after` of the
    facts (the seats an upgrade left behind, a change Partner Center made otherwise). An offer
    that cannot be priced keeps the snapshot it had (the change is made; a price is never a
    reason to fail it) and says so in the log."""
    after = terms_of_facts(facts)
    if after is None:
        return before
    if order.lines and priced_as(order.lines[0].priced, after):
        return order.lines[0].priced
    try:
        customer = book.customers.get(order.reseller, order.customer_id)
        return price_after(book, reseller, customer, before, after)
    except (DomainError, ValueError) as exc:
        log.warning("subscription %s could not be priced after its change: %s", facts.id, exc)
    return before


# --- helpers ----------------------------------------------------------------------------------


def _change_of(order: Order) -> SubscriptionChangeOrder:
    assert order.change is not None
    return order.change


def _what(change: SubscriptionChangeOrder) -> str:
    return f"change subscription {change.subscription_id} ({change.summary})"


def _landed_on(order: Order, subscription_id: str | None, pc_order_id: str | None) -> None:
    """Record on the order's line the subscription the change landed on (a new one for an
    upgrade or conversion) and Partner Center's order, if it made one."""
    if not order.lines:
        return
    current = order.lines[0].result or LineResult()
    order.lines[0].result = LineResult(
        subscription_id=subscription_id
        or current.subscription_id
        or _change_of(order).subscription_id,
        partner_center_order_id=pc_order_id or current.partner_center_order_id,
    )


def _target_id(order: Order) -> str:
    """The subscription the change landed on (the changed one unless seats moved)."""
    result = order.lines[0].result if order.lines else None
    if result is not None and result.subscription_id:
        return result.subscription_id
    return _change_of(order).subscription_id
