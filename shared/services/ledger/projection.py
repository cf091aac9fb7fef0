"""The projector: a `ledger` message's facts appended once and moved into the month aggregates.

One customer's month changes in one partition transaction: the new facts inserted (a fact
already there was projected before: skipped), the subscription rows put (If-Match), and the
customer row and its totals shard moved by the change of figures (If-Match). A lost race (a
concurrent projection, a redelivery, the month's opening) fails the whole transaction, which is
read again and redone; nothing is ever counted twice, because the facts and the figures they
move commit together.

The opening state of a subscription new to a month is its closing state in the month before
when it was live there (the month before is opened by the timer before the month after it
starts, `open_months`). A fact that arrives late — for a month whose next month already has
the subscription's row, or is opening — changes what that next month opened with: `carry_on`
fixes the next month's row (its opening; its closing too when it has no facts of its own, and
then the month after it, and so on), inserts the row when the subscription is now live and the
month's opening began, or removes a carried row when it no longer is. `replay` (the rebuild)
gives the same rows.

Every delivery carries on, for every subscription its facts touch, even when its facts were all
projected before: a process that died between the month's write and `carry_on` (or whose
`carry_on` lost its races and raised) leaves the next months to the message's redelivery.
`carry_on` is idempotent, and costs nothing for facts of the current month.

A carry reads the month's slice, then the month before's rows (so what it carries is at least
as new as the slice), and always writes (at least the customer row, unchanged): two carries of
the same customer's month — the opening's and a late fact's, or two late facts' — conflict on
that row, and the loser reads both months again. Without the write, a carry that found nothing
to change would let a concurrent one carry an older state of the month before over it.

A fact in a currency other than the reseller's is refused (ValidationFailed naming the facts'
keys, after the message's other facts are projected): its amounts cannot be added to the
reseller's figures, and a person must correct the price it came with.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from shared.domain.errors import ConcurrencyConflict, Conflict, FieldError, ValidationFailed
from shared.domain.ledger import (
    Figures,
    LedgerFact,
    LedgerMessage,
    MonthWrite,
    PricedState,
    SubscriptionMonth,
    month_of,
    next_month,
    previous_month,
)
from shared.ports import Clock, LedgerStore
from shared.services.ledger.paging import PAGE_SIZE, every

log = logging.getLogger(__name__)

# How often one customer's month is re-read and redone after a lost race before the message
# goes back to the queue (the host retries it; its facts already committed are skipped then).
MAX_TRIES = 10
# Subscriptions per transaction: a fact and a row each, plus the customer row and the shard.
_SUBSCRIPTIONS_PER_WRITE = 49
# Rows per transaction when carrying: a row each, plus the customer row and the shard.
_ROWS_PER_WRITE = 98


def project(
    store: LedgerStore, clock: Clock, message: LedgerMessage, currency: str | None = None
) -> int:
    """Project a message's facts (idempotent) and carry their months on; how many were new.
    With `currency` (the reseller's), a fact priced in another is refused (ValidationFailed,
    after the others are projected)."""
    refused = [
        f
        for f in message.ledger_facts()
        if currency is not None
        and f.state.currency is not None
        and f.state.currency.upper() != currency.upper()
    ]
    by_month: dict[str, list[LedgerFact]] = {}
    for fact in message.ledger_facts():
        if fact not in refused:
            by_month.setdefault(fact.month, []).append(fact)
    new = 0
    for month in sorted(by_month):
        facts = sorted(by_month[month], key=lambda f: (f.at, f.key))
        subscriptions = sorted({f.subscription_id for f in facts})
        for start in range(0, len(subscriptions), _SUBSCRIPTIONS_PER_WRITE):
            part = set(subscriptions[start : start + _SUBSCRIPTIONS_PER_WRITE])
            new += _project(store, month, [f for f in facts if f.subscription_id in part])
            carry_on(store, clock, next_month(month), message.customer_id, message.reseller, part)
    if refused:
        keys = ", ".join(f.key for f in refused)
        raise ValidationFailed(
            [
                FieldError(
                    "facts.state.currency",
                    f"not the reseller's currency {currency}: {keys} not projected",
                )
            ]
        )
    return new


def _project(store: LedgerStore, month: str, facts: list[LedgerFact]) -> int:
    """One transaction of one customer's month (retried on a lost race); how many facts were
    new."""
    reseller, customer_id = facts[0].reseller, facts[0].customer_id
    for _ in range(MAX_TRIES):
        present = store.present_facts(reseller, month, [f.key for f in facts])
        new = [f for f in facts if f.key not in present]
        if not new:
            return 0
        base = store.month_slice(reseller, month, customer_id)
        rows = dict(base.rows)
        last_month: dict[str, SubscriptionMonth] | None = None
        for fact in new:
            current = rows.get(fact.subscription_id)
            if current is None:
                if last_month is None:
                    last_month = _rows_before(store, reseller, month, customer_id)
                last = last_month.get(fact.subscription_id)
                opening = _live(last) if last is not None else None
                rows[fact.subscription_id] = SubscriptionMonth.started(fact, opening)
            else:
                rows[fact.subscription_id] = current.apply(fact)
        touched = sorted({f.subscription_id for f in new})
        put = [rows[s] for s in touched]
        was = [base.rows[s] for s in touched if s in base.rows]
        write = MonthWrite(base=base, facts=tuple(new), put=tuple(put), delta=_delta(was, put))
        try:
            store.write(write)
        except (ConcurrencyConflict, Conflict):
            log.info("ledger %s %s: lost a race; reading it again", month, customer_id)
            continue
        return len(new)
    raise ConcurrencyConflict(f"ledger {month} {customer_id}: lost the race {MAX_TRIES} times")


def _rows_before(
    store: LedgerStore, reseller: str, month: str, customer_id: str
) -> dict[str, SubscriptionMonth]:
    """The customer's subscription rows of the month before (their closing states open the
    month for subscriptions new to it, when live)."""
    before = previous_month(month)
    pages = every(
        lambda token: store.subscription_months(
            reseller,
            before,
            customer_id=customer_id,
            page_size=PAGE_SIZE,
            continuation_token=token,
        )
    )
    return {r.subscription_id: r for r in pages}


def _live(row: SubscriptionMonth) -> PricedState | None:
    """The row's closing state when it is carried into the next month (live), else None."""
    return row.closing if row.closing.live else None


def _delta(before: Iterable[SubscriptionMonth], after: Iterable[SubscriptionMonth]) -> Figures:
    """How the customer's figures move when rows `before` become rows `after`."""
    total = Figures()
    for row in after:
        total = total.plus(row.figures)
    for row in before:
        total = total.minus(row.figures)
    return total


def carry_on(
    store: LedgerStore,
    clock: Clock,
    month: str,
    customer_id: str,
    reseller: str,
    subscriptions: Collection[str] | None,
) -> int:
    """Bring the customer's rows of `month` in line with the month before, for the given
    subscriptions (None: every one the customer has in either month); then the months after,
    as far as their rows change (idempotent). How many rows were written."""
    written = 0
    changed: Collection[str] | None = subscriptions
    while (changed is None or changed) and month <= month_of(clock.now()):
        onward: set[str] = set()
        if changed is None:
            more, count = _carry_month(store, month, customer_id, reseller, None)
            onward |= more
            written += count
        else:
            ids = sorted(changed)
            for start in range(0, len(ids), _ROWS_PER_WRITE):
                part = set(ids[start : start + _ROWS_PER_WRITE])
                more, count = _carry_month(store, month, customer_id, reseller, part)
                onward |= more
                written += count
        changed, month = onward, next_month(month)
    return written


def _carry_month(
    store: LedgerStore,
    month: str,
    customer_id: str,
    reseller: str,
    subscriptions: set[str] | None,
) -> tuple[set[str], int]:
    """One transaction carrying the month before's rows into `month` (None: all of the
    customer's; more than `_ROWS_PER_WRITE` rows to change take more transactions); the
    subscriptions whose row changed state (their next month needs carrying too) and how many
    rows were written."""
    onward_all: set[str] = set()
    written = 0
    while True:
        onward, count, rest = _carry_part(store, month, customer_id, reseller, subscriptions)
        onward_all |= onward
        written += count
        if not rest:
            return onward_all, written


def _carry_part(
    store: LedgerStore,
    month: str,
    customer_id: str,
    reseller: str,
    subscriptions: set[str] | None,
) -> tuple[set[str], int, bool]:
    for _ in range(MAX_TRIES):
        base = store.month_slice(reseller, month, customer_id)
        before = _rows_before(store, reseller, month, customer_id)
        ids = (
            set(before) | {s for s, r in base.rows.items() if not r.facts}
            if subscriptions is None
            else subscriptions
        )
        put: list[SubscriptionMonth] = []
        remove: list[SubscriptionMonth] = []
        onward: set[str] = set()
        rest = False
        for sid in sorted(ids):
            if len(put) + len(remove) >= _ROWS_PER_WRITE:
                rest = True  # the next transaction (read again) takes the others
                break
            prev = before.get(sid)
            state = _live(prev) if prev is not None else None
            row = base.rows.get(sid)
            if row is None:
                carried = prev.carried() if prev is not None else None
                if base.carried_into and carried is not None:
                    put.append(carried)
                    onward.add(sid)
                continue
            if row.facts:
                fixed = row.model_copy(update={"opening": state})
            elif state is None:
                remove.append(row)
                onward.add(sid)
                continue
            else:
                fixed = row.model_copy(update={"opening": state, "closing": state})
                if state != row.closing:
                    onward.add(sid)
            if fixed != row:
                put.append(fixed)
        if not (put or remove or base.carried_into or ids & set(base.rows)):
            return onward, 0, rest  # nothing of theirs in a month not opening: nothing to race
        was = [base.rows[r.subscription_id] for r in put if r.subscription_id in base.rows]
        write = MonthWrite(
            base=base,
            put=tuple(put),
            remove=tuple(remove),
            delta=_delta([*was, *remove], put),
        )
        try:
            store.write(write)  # even when it changes nothing: see the module's docstring
        except (ConcurrencyConflict, Conflict):
            continue
        return onward, len(put) + len(remove), rest
    raise ConcurrencyConflict(f"ledger {month} {customer_id}: lost the race {MAX_TRIES} times")
