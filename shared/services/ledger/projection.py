"""The projector: a `ledger` message's facts appended once and moved into the month aggregates.

One customer's month changes in one partition transaction: the new facts inserted (a fact
already there was projected before: skipped), the subscription rows put (If-Match), and the
customer row and its totals shard moved by the change of figures (If-Match). A lost race (a
concurrent projection, a redelivery, the month's opening) fails the whole transaction, which is
read again and redone; nothing is ever counted twice, because the facts and the figures they
move commit together.

The opening state of a subscription new to a month is its closing state in the month before
when it was live there (the month before is opened by the daily timer before the month after
it starts, `open_months`). A fact that arrives late — for a month whose next month already has
the subscription's row, or is opened — changes what that next month opened with: `carry_on`
fixes the next month's row (its opening; its closing too when it has no facts of its own, and
then the month after it, and so on), inserts the row when the subscription is now live and the
month is opened, or removes a carried row when it no longer is. `replay` (the rebuild) gives
the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from shared.domain.errors import ConcurrencyConflict, Conflict
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

log = logging.getLogger(__name__)

# How often one customer's month is re-read and redone after a lost race before the message
# goes back to the queue (the host retries it; its facts already committed are skipped then).
MAX_TRIES = 10
# Subscriptions per transaction: a fact and a row each, plus the customer row and the shard.
_SUBSCRIPTIONS_PER_WRITE = 49
# Rows per transaction when carrying: a row each, plus the customer row and the shard.
_ROWS_PER_WRITE = 98


def project(store: LedgerStore, clock: Clock, message: LedgerMessage) -> int:
    """Project a message's facts (idempotent); how many were new."""
    by_month: dict[str, list[LedgerFact]] = {}
    for fact in message.ledger_facts():
        by_month.setdefault(fact.month, []).append(fact)
    new = 0
    for month in sorted(by_month):
        facts = sorted(by_month[month], key=lambda f: (f.at, f.key))
        subscriptions = sorted({f.subscription_id for f in facts})
        for start in range(0, len(subscriptions), _SUBSCRIPTIONS_PER_WRITE):
            part = set(subscriptions[start : start + _SUBSCRIPTIONS_PER_WRITE])
            new += _project(store, clock, month, [f for f in facts if f.subscription_id in part])
    return new


def _project(store: LedgerStore, clock: Clock, month: str, facts: list[LedgerFact]) -> int:
    """One transaction of one customer's month (retried on a lost race)."""
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
        changed: dict[str, SubscriptionMonth | None] = {
            s: rows[s]
            for s in touched
            if _live(rows[s]) != (_live(base.rows[s]) if s in base.rows else None)
        }
        carry_on(store, clock, next_month(month), customer_id, reseller, changed)
        return len(new)
    raise ConcurrencyConflict(f"ledger {month} {customer_id}: lost the race {MAX_TRIES} times")


def _rows_before(
    store: LedgerStore, reseller: str, month: str, customer_id: str
) -> dict[str, SubscriptionMonth]:
    """The customer's subscription rows of the month before (their closing states open the
    month for subscriptions new to it, when live)."""
    rows: dict[str, SubscriptionMonth] = {}
    token: str | None = None
    while True:
        page = store.subscription_months(
            reseller,
            previous_month(month),
            customer_id=customer_id,
            page_size=1000,
            continuation_token=token,
        )
        rows.update((r.subscription_id, r) for r in page.items)
        token = page.continuation_token
        if token is None:
            return rows


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
    changed: Mapping[str, SubscriptionMonth | None],
    *,
    opening: bool = False,
) -> int:
    """Bring `month` in line with its month before, whose rows of the subscriptions `changed`
    are now the given ones (None: not there); then the months after, as far as their
    rows change. With `opening` (the month's opening carries the month before in), only rows
    missing are added and the month counts as opened. How many rows were written."""
    written = 0
    while changed and month <= month_of(clock.now()):
        onward: dict[str, SubscriptionMonth | None] = {}
        items = sorted(changed.items())
        for start in range(0, len(items), _ROWS_PER_WRITE):
            part = dict(items[start : start + _ROWS_PER_WRITE])
            more, count = _carry_month(store, month, customer_id, reseller, part, opening)
            onward.update(more)
            written += count
        changed, month, opening = onward, next_month(month), False
    return written


def _carry_month(
    store: LedgerStore,
    month: str,
    customer_id: str,
    reseller: str,
    changed: Mapping[str, SubscriptionMonth | None],
    opening: bool,
) -> tuple[dict[str, SubscriptionMonth | None], int]:
    for _ in range(MAX_TRIES):
        base = store.month_slice(reseller, month, customer_id)
        opened = base.opened or opening
        put: list[SubscriptionMonth] = []
        remove: list[SubscriptionMonth] = []
        onward: dict[str, SubscriptionMonth | None] = {}
        for sid, prev in sorted(changed.items()):
            state = _live(prev) if prev is not None else None
            row = base.rows.get(sid)
            if row is None:
                carried = prev.carried() if prev is not None else None
                if opened and carried is not None:
                    put.append(carried)
                    onward[sid] = carried
                continue
            if opening:
                continue  # already in the month (a fact came first): it opened as it should
            if row.facts:
                fixed = row.model_copy(update={"opening": state})
            elif state is None:
                remove.append(row)
                onward[sid] = None
                continue
            else:
                fixed = row.model_copy(update={"opening": state, "closing": state})
                if state != row.closing:
                    onward[sid] = fixed
            if fixed != row:
                put.append(fixed)
        if not put and not remove:
            return {}, 0
        before = [base.rows[r.subscription_id] for r in put if r.subscription_id in base.rows]
        write = MonthWrite(
            base=base,
            put=tuple(put),
            remove=tuple(remove),
            delta=_delta([*before, *remove], put),
        )
        try:
            store.write(write)
        except (ConcurrencyConflict, Conflict):
            continue
        return onward, len(put) + len(remove)
    raise ConcurrencyConflict(f"ledger {month} {customer_id}: lost the race {MAX_TRIES} times")
