"""An in-memory ledger for unit tests: the reports' `LedgerReader`, seeded from facts.

`InMemoryLedger.load(facts, months)` fills the aggregates the way a rebuild does
(`shared.domain.ledger.replay`), so a unit test states what happened (facts) and reads what a
report shows. Paging follows the Table adapter: key order, an opaque token, `page_size` ≥ 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.ledger import (
    CustomerMonth,
    Figures,
    LedgerFact,
    MonthTotals,
    SubscriptionMonth,
    replay,
)
from shared.domain.model import Page

T = TypeVar("T")


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


class InMemoryLedger:
    """Month aggregates per (reseller, month), in memory."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[tuple[str, str], SubscriptionMonth]] = {}
        self.facts: list[LedgerFact] = []

    def load(self, facts: Iterable[LedgerFact], months: list[str]) -> None:
        """Rebuild every reseller's months from `facts` (added to those already loaded)."""
        self.facts.extend(facts)
        for reseller in {f.reseller for f in self.facts}:
            mine = [f for f in self.facts if f.reseller == reseller]
            for month, rows in replay(mine, months).items():
                self.rows[(reseller, month)] = dict(rows)

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
        sums: dict[str, Figures] = {}
        for row in self._month(reseller, month):
            sums[row.customer_id] = sums.get(row.customer_id, Figures()).plus(row.figures)
        return [
            CustomerMonth(reseller=reseller, month=month, customer_id=c, figures=f)
            for c, f in sorted(sums.items())
        ]

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
        return next(
            (c for c in self._customers(reseller, month) if c.customer_id == customer_id), None
        )

    def totals(self, reseller: str, month: str) -> MonthTotals:
        total = Figures()
        for c in self._customers(reseller, month):
            total = total.plus(c.figures)
        return MonthTotals(
            reseller=reseller, month=month, figures=total, opened=(reseller, month) in self.rows
        )
