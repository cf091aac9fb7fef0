"""An in-memory ledger for unit tests: the reports' `LedgerReader` and the projector's
`LedgerStore`, with the Table adapter's ETag semantics (a write whose base is stale, or that
inserts a row already there, is a ConcurrencyConflict and writes nothing).

`InMemoryLedger.load(facts, months)` fills the aggregates the way a rebuild does
(`shared.domain.ledger.replay`), so a unit test states what happened (facts) and reads what a
report shows. Paging follows the Table adapter: key order, an opaque token, `page_size` ≥ 1.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TypeVar

from shared.domain.errors import ConcurrencyConflict, FieldError, ValidationFailed
from shared.domain.ledger import (
    CustomerMonth,
    Figures,
    LedgerFact,
    MonthSlice,
    MonthTotals,
    MonthWrite,
    SubscriptionMonth,
    TotalShard,
    replay,
    total_shard,
)
from shared.domain.model import Page

T = TypeVar("T")
_etags = itertools.count(1)


def _etag() -> str:
    return f'W/"ledger-{next(_etags)}"'


def _page(items: list[T], page_size: int, token: str | None) -> Page[T]:
    if page_size < 1:
        raise ValidationFailed([FieldError("pageSize", "must be at least 1")])
    try:
        start = int(token) if token else 0
    except ValueError as exc:
        raise ValidationFailed(
            [FieldError("continuationToken", "is not a token this list gave")]
        ) from exc
    end = start + page_size
    return Page(items=items[start:end], continuation_token=str(end) if end < len(items) else None)


Month = tuple[str, str]  # (reseller, month)


class InMemoryLedger:
    """Facts and month aggregates per (reseller, month), in memory."""

    def __init__(self) -> None:
        self.rows: dict[Month, dict[tuple[str, str], SubscriptionMonth]] = {}
        self.customers: dict[Month, dict[str, CustomerMonth]] = {}
        self.totals_shards: dict[Month, dict[int, TotalShard]] = {}
        self.fact_rows: dict[Month, dict[str, LedgerFact]] = {}
        self.opened_months: set[Month] = set()
        self.opening_months: set[Month] = set()
        self.loaded: list[LedgerFact] = []
        self.writes = 0
        # Tests: called at the start of each `write`, before it checks its base (to let a
        # concurrent writer in between a read and a write).
        self.before_write: Callable[[MonthWrite], None] | None = None
        self._lock = threading.Lock()

    def load(self, facts: Iterable[LedgerFact], months: list[str]) -> None:
        """Rebuild every reseller's months from `facts` (added to those already loaded)."""
        self.loaded.extend(facts)
        for reseller in {f.reseller for f in self.loaded}:
            mine = [f for f in self.loaded if f.reseller == reseller]
            for month, rows in replay(mine, months).items():
                key = (reseller, month)
                self.rows[key] = {
                    k: r.model_copy(update={"etag": _etag()}) for k, r in rows.items()
                }
                self.fact_rows[key] = {f.key: f for f in mine if f.month == month}
                sums: dict[str, Figures] = {}
                shards: dict[int, Figures] = {}
                for row in rows.values():
                    sums[row.customer_id] = sums.get(row.customer_id, Figures()).plus(row.figures)
                    s = total_shard(row.customer_id)
                    shards[s] = shards.get(s, Figures()).plus(row.figures)
                self.customers[key] = {
                    c: CustomerMonth(
                        reseller=reseller, month=month, customer_id=c, figures=f, etag=_etag()
                    )
                    for c, f in sums.items()
                }
                self.totals_shards[key] = {
                    s: TotalShard(reseller=reseller, month=month, shard=s, figures=f, etag=_etag())
                    for s, f in shards.items()
                }
                self.opened_months.add(key)

    # --- the reader --------------------------------------------------------------------

    def _month(self, reseller: str, month: str) -> list[SubscriptionMonth]:
        rows = self.rows.get((reseller, month), {})
        return [rows[k] for k in sorted(rows)]

    def subscription_months(
        self,
        reseller: str,
        month: str,
        *,
        customer_id: str | None = None,
        product_id: str | None = None,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> Page[SubscriptionMonth]:
        rows = [
            r
            for r in self._month(reseller, month)
            if (customer_id is None or r.customer_id == customer_id)
            and (product_id is None or r.closing.product_id == product_id)
        ]
        return _page(rows, page_size, continuation_token)

    def _customers(self, reseller: str, month: str) -> list[CustomerMonth]:
        rows = self.customers.get((reseller, month), {})
        return [rows[c] for c in sorted(rows)]

    def customer_months(
        self,
        reseller: str,
        month: str,
        *,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> Page[CustomerMonth]:
        return _page(self._customers(reseller, month), page_size, continuation_token)

    def customer_month(self, reseller: str, month: str, customer_id: str) -> CustomerMonth | None:
        return self.customers.get((reseller, month), {}).get(customer_id)

    def totals(self, reseller: str, month: str) -> MonthTotals:
        total = Figures()
        for shard in self.shards(reseller, month):
            total = total.plus(shard.figures)
        return MonthTotals(
            reseller=reseller, month=month, figures=total, opened=self.opened(reseller, month)
        )

    # --- the store -----------------------------------------------------------------------

    def shards(self, reseller: str, month: str) -> list[TotalShard]:
        shards = self.totals_shards.get((reseller, month), {})
        return [shards[s] for s in sorted(shards)]

    def opened(self, reseller: str, month: str) -> bool:
        return (reseller, month) in self.opened_months

    def mark_opened(self, reseller: str, month: str) -> None:
        self.opened_months.add((reseller, month))

    def mark_opening(self, reseller: str, month: str) -> None:
        self.opening_months.add((reseller, month))

    def present_facts(self, reseller: str, month: str, keys: Collection[str]) -> set[str]:
        return set(keys) & set(self.fact_rows.get((reseller, month), {}))

    def facts(self, reseller: str, month: str) -> Iterator[LedgerFact]:
        rows = self.fact_rows.get((reseller, month), {})
        return iter([rows[k] for k in sorted(rows)])

    def month_slice(self, reseller: str, month: str, customer_id: str) -> MonthSlice:
        key = (reseller, month)
        return MonthSlice(
            reseller=reseller,
            month=month,
            customer_id=customer_id,
            rows={s: r for (c, s), r in self.rows.get(key, {}).items() if c == customer_id},
            customer=self.customers.get(key, {}).get(customer_id),
            shard=self.totals_shards.get(key, {}).get(total_shard(customer_id)),
            opened=key in self.opened_months,
            opening=key in self.opening_months,
        )

    def write(self, write: MonthWrite) -> None:
        if self.before_write is not None:
            self.before_write(write)
        if write.operations > 100:
            raise ValueError("a transaction holds at most 100 operations")
        base = write.base
        key = (base.reseller, base.month)
        with self._lock:
            rows = self.rows.setdefault(key, {})
            facts = self.fact_rows.setdefault(key, {})
            customers = self.customers.setdefault(key, {})
            shards = self.totals_shards.setdefault(key, {})
            shard = total_shard(base.customer_id)

            def same(current: object, read: object) -> bool:
                return getattr(current, "etag", None) == getattr(read, "etag", None)

            stale = (
                any(f.key in facts for f in write.facts)
                or any(
                    not same(rows.get((r.customer_id, r.subscription_id)), r)
                    or (r.etag is not None and (r.customer_id, r.subscription_id) not in rows)
                    for r in write.put
                )
                or any(
                    rows.get((r.customer_id, r.subscription_id)) is None
                    or not same(rows[(r.customer_id, r.subscription_id)], r)
                    for r in write.remove
                )
                or not same(customers.get(base.customer_id), base.customer)
                or not same(shards.get(shard), base.shard)
            )
            if stale:
                raise ConcurrencyConflict("the ledger month changed meanwhile")
            for f in write.facts:
                facts[f.key] = f
            for r in write.put:
                rows[(r.customer_id, r.subscription_id)] = r.model_copy(update={"etag": _etag()})
            for r in write.remove:
                del rows[(r.customer_id, r.subscription_id)]
            figures = base.customer.figures if base.customer else Figures()
            customers[base.customer_id] = CustomerMonth(
                reseller=base.reseller,
                month=base.month,
                customer_id=base.customer_id,
                figures=figures.plus(write.delta),
                etag=_etag(),
            )
            total = base.shard.figures if base.shard else Figures()
            shards[shard] = TotalShard(
                reseller=base.reseller,
                month=base.month,
                shard=shard,
                figures=total.plus(write.delta),
                etag=_etag(),
            )
            self.writes += 1

    def tamper(self, reseller: str, month: str, customer_id: str, figures: Figures) -> None:
        """Tests: overwrite a customer row's figures (as a faulty writer would)."""
        row = self.customers[(reseller, month)][customer_id]
        self.customers[(reseller, month)][customer_id] = row.model_copy(
            update={"figures": figures, "etag": _etag()}
        )
