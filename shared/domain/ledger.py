"""The ledger: priced facts about subscriptions, and the month aggregates the reports read.

Table Storage does not aggregate, so reports never scan history. Every write that changes a
subscription's priced state (seats, status, offer, term, billing cycle, unit prices, assigned
licences, renewal date) also writes, in the same partition transaction, an outbox message
carrying a `LedgerFact`: the state as it now is, and when. The ledger's projector appends each
fact once (its row key is the idempotency key) and, in the same transaction of the ledger's
month partition, moves three aggregates:

- `SubscriptionMonth`: the subscription's state when the month opened and as it stands now (at
  month end, once the month is over);
- `CustomerMonth`: the customer's `Figures` for the month (the sum of its subscriptions');
- the month's totals, kept in a few shards so concurrent projections rarely collide
  (`TOTAL_SHARDS`; a report adds them up).

A month is opened by carrying every live subscription of the month before into it
(`SubscriptionMonth.carried`), so a subscription nobody touched still shows. Rebuilding is
`replay`: the same `SubscriptionMonth.apply` over every fact, in order, gives the same numbers
as the stored aggregates (a test compares them).

Amounts: a `PricedState` keeps the unit amounts of its price snapshot (rounded, per billing
period, in the reseller's currency); figures are monthly-normalised recurring amounts (an
annual subscription's yearly price ÷ 12) held to `EXACT` (12 decimal places), so that sums
are exact in any order — the projector adds deltas as facts arrive, a rebuild adds rows, and the
two must agree to the last digit — and rounded only where shown.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from shared.domain.subscriptions import Subscription

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
TOTAL_SHARDS = 32
ZERO = Decimal(0)
# Monthly figures are held to this many places: fixed point, so addition is associative.
EXACT = Decimal("1e-12")

# Months in one billing period: the unit price is per period, the figures per month. A cycle
# not listed (one-time, "none") is not recurring revenue.
_MONTHS_PER_PERIOD = {"monthly": 1, "annual": 12, "triennial": 36}
# Statuses billed for the month, so counted in recurring revenue and carried into the next:
# Active, and Suspended — Microsoft bills a suspended NCE subscription until it is cancelled
# (shared/domain/nce.py SUSPEND_WARNING). Pending is not: Partner Center has not finished
# provisioning it and billing starts when it turns Active (a fact then brings it in). Cancelled,
# Expired, Deleted and Disabled are not billed.
_LIVE = frozenset({"active", "suspended"})


def month_of(at: datetime) -> str:
    """The calendar month (UTC) of a moment, `YYYY-MM`."""
    return at.astimezone(UTC).strftime("%Y-%m")


def month_start(month: str) -> datetime:
    """The first moment of a month (UTC)."""
    year, mon = (int(p) for p in month.split("-"))
    return datetime(year, mon, 1, tzinfo=UTC)


def next_month(month: str) -> str:
    """The month after `month`."""
    year, mon = (int(p) for p in month.split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def previous_month(month: str) -> str:
    """The month before `month`."""
    year, mon = (int(p) for p in month.split("-"))
    return f"{year - (mon == 1):04d}-{(mon - 2) % 12 + 1:02d}"


def months_ending(month: str, count: int) -> list[str]:
    """`count` months up to and including `month`, oldest first."""
    out = [month]
    for _ in range(count - 1):
        out.append(previous_month(out[-1]))
    return out[::-1]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PricedState(_Frozen):
    """What a subscription is and costs at one moment: the part of it reports are about."""

    product_id: str | None = None
    catalog_item_id: str | None = None
    name: str
    term_duration: str | None = None
    billing_cycle: str | None = None
    status: str
    seats: int
    assigned: int | None = None
    is_trial: bool = False
    renews_on: date | None = None
    # The unit amounts of the price snapshot, per billing period; None when the record has no
    # price (a subscription found by sync whose offer is not in the price sheet).
    currency: str | None = None
    unit_microsoft_cost: Decimal | None = None
    unit_reseller_cost: Decimal | None = None
    unit_customer_price: Decimal | None = None

    @classmethod
    def of(cls, sub: Subscription) -> PricedState:
        """The priced state of a subscription record."""
        priced = sub.priced
        return cls(
            product_id=sub.product_id,
            catalog_item_id=sub.catalog_item_id,
            name=sub.name,
            term_duration=sub.term_duration,
            billing_cycle=sub.billing_cycle,
            status=sub.status,
            seats=sub.quantity,
            assigned=sub.assigned_licences,
            is_trial=sub.is_trial,
            renews_on=sub.renews_on,
            currency=None if priced is None else priced.currency,
            unit_microsoft_cost=None if priced is None else priced.unit.microsoft_cost.amount,
            unit_reseller_cost=None if priced is None else priced.unit.reseller_cost.amount,
            unit_customer_price=None if priced is None else priced.unit.customer_price.amount,
        )

    @property
    def live(self) -> bool:
        """Billed and counted: Active or Suspended (see `_LIVE`)."""
        return self.status.lower() in _LIVE

    @property
    def priced(self) -> bool:
        """Whether the state carries a price."""
        return self.unit_customer_price is not None and self.unit_reseller_cost is not None

    def digest(self) -> str:
        """A short hash of the state: a write whose digest differs from the last one ledgered
        owes the ledger a fact."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def monthly(self) -> tuple[Decimal, Decimal]:
        """(customer price, reseller cost) per month for all seats: 0 when not live, not
        priced, a trial, or not a recurring billing cycle. To `EXACT` places (not rounded to
        the currency)."""
        months = _MONTHS_PER_PERIOD.get((self.billing_cycle or "").lower())
        if not self.live or self.is_trial or months is None or not self.priced:
            return ZERO, ZERO
        assert self.unit_customer_price is not None and self.unit_reseller_cost is not None
        return (
            (self.unit_customer_price * self.seats / months).quantize(EXACT),
            (self.unit_reseller_cost * self.seats / months).quantize(EXACT),
        )


class Figures(_Frozen):
    """Recurring revenue for a month, of one subscription or summed (reseller's currency,
    exact: round where shown). `mrr` is the customer price per month at month end (or now, for
    the current month); the movements explain it from `opening_mrr`:
    opening + new + expansion − contraction − churn = mrr."""

    opening_mrr: Decimal = ZERO
    mrr: Decimal = ZERO
    mrr_cost: Decimal = ZERO  # the reseller's cost of `mrr`
    new: Decimal = ZERO
    expansion: Decimal = ZERO
    contraction: Decimal = ZERO
    churn: Decimal = ZERO
    seats: int = 0  # live seats at month end
    subscriptions: int = 0  # live subscriptions at month end

    @property
    def margin(self) -> Decimal:
        """Customer price − reseller cost, per month."""
        return self.mrr - self.mrr_cost

    def plus(self, other: Figures) -> Figures:
        """The sum of two."""
        return Figures(**{k: getattr(self, k) + getattr(other, k) for k in Figures.model_fields})

    def minus(self, other: Figures) -> Figures:
        """The difference of two (a projection's delta)."""
        return Figures(**{k: getattr(self, k) - getattr(other, k) for k in Figures.model_fields})


def figures(opening: PricedState | None, closing: PricedState) -> Figures:
    """A subscription's figures for a month that opened at `opening` (None: it is new this
    month) and stands at `closing`."""
    before = ZERO if opening is None else opening.monthly()[0]
    after, cost = closing.monthly()
    new = expansion = contraction = churn = ZERO
    if before == ZERO:
        new = after
    elif after == ZERO:
        churn = before
    elif after > before:
        expansion = after - before
    else:
        contraction = before - after
    live = closing.live
    return Figures(
        opening_mrr=before,
        mrr=after,
        mrr_cost=cost,
        new=new,
        expansion=expansion,
        contraction=contraction,
        churn=churn,
        seats=closing.seats if live else 0,
        subscriptions=1 if live else 0,
    )


class LedgerFact(_Frozen):
    """A subscription's priced state from a moment on: one append-only ledger row."""

    reseller: str
    customer_id: str
    subscription_id: str
    at: AwareDatetime
    state: PricedState

    @property
    def month(self) -> str:
        """The ledger month the fact belongs to."""
        return month_of(self.at)

    @property
    def key(self) -> str:
        """Its row key in the month's partition, and its idempotency key: the same fact sent
        twice is one row."""
        stamp = self.at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
        return f"f~{self.customer_id}~{self.subscription_id}~{stamp}~{self.state.digest()}"


class SubscriptionMonth(_Frozen):
    """One subscription in one month: its state at opening and as it stands."""

    reseller: str
    month: str = Field(pattern=MONTH_PATTERN)
    customer_id: str
    subscription_id: str
    opening: PricedState | None = None  # None: new this month
    closing: PricedState
    facts: int = 0  # facts applied this month
    last_fact_at: AwareDatetime | None = None  # the latest fact's moment (closing's)
    etag: str | None = None

    @property
    def figures(self) -> Figures:
        """Its figures for the month."""
        return figures(self.opening, self.closing)

    @classmethod
    def started(cls, fact: LedgerFact, opening: PricedState | None) -> SubscriptionMonth:
        """The first fact of the month about a subscription; `opening` is its state at the end
        of the month before, if it was live then."""
        return cls(
            reseller=fact.reseller,
            month=fact.month,
            customer_id=fact.customer_id,
            subscription_id=fact.subscription_id,
            opening=opening,
            closing=fact.state,
            facts=1,
            last_fact_at=fact.at,
        )

    def apply(self, fact: LedgerFact) -> SubscriptionMonth:
        """This month with one more fact: the later state wins, whatever order facts arrive in
        (two at the same moment: the greater key, so every replay agrees)."""
        later = self.last_fact_at is None or fact.at > self.last_fact_at
        if not later and fact.at == self.last_fact_at:
            later = fact.state.digest() > self.closing.digest()
        return self.model_copy(
            update={
                "facts": self.facts + 1,
                "closing": fact.state if later else self.closing,
                "last_fact_at": fact.at if later else self.last_fact_at,
            }
        )

    def carried(self) -> SubscriptionMonth | None:
        """Its row in the next month, opened from this month's closing state; None when it
        ended (it is not in the next month unless a fact brings it back)."""
        if not self.closing.live:
            return None
        return SubscriptionMonth(
            reseller=self.reseller,
            month=next_month(self.month),
            customer_id=self.customer_id,
            subscription_id=self.subscription_id,
            opening=self.closing,
            closing=self.closing,
        )


class CustomerMonth(_Frozen):
    """A customer's figures for a month (the sum of its subscriptions')."""

    reseller: str
    month: str = Field(pattern=MONTH_PATTERN)
    customer_id: str
    figures: Figures = Field(default_factory=Figures)
    etag: str | None = None


class MonthTotals(_Frozen):
    """A reseller's figures for a month (its shards added up)."""

    reseller: str
    month: str = Field(pattern=MONTH_PATTERN)
    figures: Figures = Field(default_factory=Figures)
    opened: bool = False  # every live subscription of the month before is carried in


def total_shard(customer_id: str) -> int:
    """Which totals shard a customer's deltas go to (stable across processes)."""
    return int(hashlib.sha256(customer_id.encode()).hexdigest()[:8], 16) % TOTAL_SHARDS


def replay(
    facts: Iterable[LedgerFact], months: list[str]
) -> dict[str, dict[tuple[str, str], SubscriptionMonth]]:
    """Every month's subscription rows rebuilt from the facts alone (the aggregates the
    projector keeps must equal these): facts applied in `at` order, each month opened by
    carrying the month before's live subscriptions. `months` are consecutive, oldest first;
    facts outside them are ignored."""
    by_month: dict[str, list[LedgerFact]] = {m: [] for m in months}
    for fact in facts:
        if fact.month in by_month:
            by_month[fact.month].append(fact)
    out: dict[str, dict[tuple[str, str], SubscriptionMonth]] = {}
    before: dict[tuple[str, str], SubscriptionMonth] = {}
    for month in months:
        before = out[month] = replay_month(before, by_month[month])
    return out


def replay_month(
    before: Mapping[tuple[str, str], SubscriptionMonth], facts: Iterable[LedgerFact]
) -> dict[tuple[str, str], SubscriptionMonth]:
    """One month's subscription rows from the month before's (`before`, by (customer,
    subscription)) and the month's own facts: the live rows carried in, then the facts applied
    in `at` order."""
    rows: dict[tuple[str, str], SubscriptionMonth] = {}
    for key, row in before.items():
        carried = row.carried()
        if carried is not None:
            rows[key] = carried
    for fact in sorted(facts, key=lambda f: (f.at, f.key)):
        key = (fact.customer_id, fact.subscription_id)
        current = rows.get(key)
        rows[key] = (
            SubscriptionMonth.started(fact, None) if current is None else current.apply(fact)
        )
    return rows


def totals_of(rows: Iterable[SubscriptionMonth]) -> Figures:
    """The sum of the rows' figures."""
    total = Figures()
    for row in rows:
        total = total.plus(row.figures)
    return total


class TotalShard(_Frozen):
    """One of a month's `TOTAL_SHARDS` partial totals (the customers of `total_shard`)."""

    reseller: str
    month: str = Field(pattern=MONTH_PATTERN)
    shard: int
    figures: Figures = Field(default_factory=Figures)
    etag: str | None = None


class MonthSlice(_Frozen):
    """What the projector reads of one customer's month before writing it: the rows of some of
    its subscriptions (absent: not in the month), its customer row and its totals shard, each
    with the ETag it was read at, whether the month is opened, and whether its opening has
    begun (`opening`: from then on a carry into it inserts the rows missing, see
    services/ledger/opening.py)."""

    reseller: str
    month: str = Field(pattern=MONTH_PATTERN)
    customer_id: str
    rows: dict[str, SubscriptionMonth] = Field(default_factory=dict)  # by subscription id
    customer: CustomerMonth | None = None
    shard: TotalShard | None = None
    opened: bool = False
    opening: bool = False

    @property
    def carried_into(self) -> bool:
        """Whether the live rows of the month before belong in it (its opening began)."""
        return self.opened or self.opening


class MonthWrite(_Frozen):
    """One partition transaction of a customer's month: facts inserted, subscription rows put
    (inserted when they carry no ETag, replaced If-Match otherwise) or removed (If-Match), and
    the customer row and its shard moved by `delta` (If-Match what the slice read). A lost race
    on any of it fails all of it."""

    base: MonthSlice
    facts: tuple[LedgerFact, ...] = ()
    put: tuple[SubscriptionMonth, ...] = ()
    remove: tuple[SubscriptionMonth, ...] = ()
    delta: Figures = Field(default_factory=Figures)

    @property
    def operations(self) -> int:
        """How many table operations it takes (at most 100 in one transaction)."""
        return len(self.facts) + len(self.put) + len(self.remove) + 2

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not (self.facts or self.put or self.remove)


class LedgerEntry(_Frozen):
    """One fact as a `ledger` message carries it (the reseller and customer are the
    message's: a subscription write is one customer's partition)."""

    s: str  # subscription id
    at: AwareDatetime
    state: PricedState


class LedgerMessage(_Frozen):
    """A `ledger` queue message: the facts of one subscription transaction."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    reseller: str
    customer_id: str = Field(alias="customerId")
    facts: tuple[LedgerEntry, ...]
    message_id: str | None = Field(default=None, alias="messageId")

    @classmethod
    def of(cls, facts: Iterable[LedgerFact]) -> LedgerMessage:
        """The message for facts of one reseller's customer."""
        listed = list(facts)
        first = listed[0]
        if any(f.customer_id != first.customer_id or f.reseller != first.reseller for f in listed):
            raise ValueError("a ledger message carries one customer's facts")
        return cls(
            reseller=first.reseller,
            customer_id=first.customer_id,
            facts=tuple(LedgerEntry(s=f.subscription_id, at=f.at, state=f.state) for f in listed),
        )

    def body(self) -> dict[str, object]:
        """The queue body: compact (no None, no defaults), Decimals as strings."""
        out: dict[str, object] = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"message_id"}
        )
        for entry in out["facts"]:  # type: ignore[attr-defined]
            entry["state"] = {
                k: v
                for k, v in entry["state"].items()
                if v is not None and not (k == "is_trial" and v is False)
            }
        return out

    def ledger_facts(self) -> list[LedgerFact]:
        """The facts it carries."""
        return [
            LedgerFact(
                reseller=self.reseller,
                customer_id=self.customer_id,
                subscription_id=e.s,
                at=e.at,
                state=e.state,
            )
            for e in self.facts
        ]
