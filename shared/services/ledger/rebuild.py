"""The rebuild: every fact of a reseller's months replayed, compared with the stored aggregates.

`replay` (shared/domain/ledger.py) is the single definition of what the aggregates must hold;
the projector moves them fact by fact with the same `SubscriptionMonth` steps. A difference is
a defect (or a tampered row): the report names the month, the row and both values.

`months` must start at the ledger's first month (nothing carried into it) and be consecutive;
the current month compares equal once it is opened (until then its carried rows are missing).
It goes month by month (`replay_month`): one month's facts and rows are held at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.domain.ledger import (
    CustomerMonth,
    Figures,
    SubscriptionMonth,
    replay_month,
    totals_of,
)
from shared.ports import LedgerStore
from shared.services.ledger.paging import PAGE_SIZE, every


@dataclass(frozen=True)
class Difference:
    """A stored aggregate that is not what the facts say."""

    month: str
    row: str  # "subscription c~s", "customer c" or "totals"
    expected: str
    stored: str


def rebuild(store: LedgerStore, reseller: str, months: list[str]) -> list[Difference]:
    """Replay every fact of `months` and list where the stored aggregates differ."""
    out: list[Difference] = []
    want: dict[tuple[str, str], SubscriptionMonth] = {}
    for month in months:
        want = replay_month(want, store.facts(reseller, month))
        have = {
            (r.customer_id, r.subscription_id): r
            for r in _subscription_rows(store, reseller, month)
        }
        for key in sorted(set(want) | set(have)):
            w, h = want.get(key), have.get(key)
            if _row(w) != _row(h):
                out.append(Difference(month, f"subscription {key[0]}~{key[1]}", _show(w), _show(h)))
        sums: dict[str, Figures] = {}
        for row in want.values():
            sums[row.customer_id] = sums.get(row.customer_id, Figures()).plus(row.figures)
        stored = {c.customer_id: c.figures for c in _customer_rows(store, reseller, month)}
        for customer in sorted(set(sums) | set(stored)):
            w_f, h_f = sums.get(customer, Figures()), stored.get(customer, Figures())
            if w_f != h_f:
                out.append(Difference(month, f"customer {customer}", _figs(w_f), _figs(h_f)))
        total = totals_of(want.values())
        stored_total = store.totals(reseller, month).figures
        if total != stored_total:
            out.append(Difference(month, "totals", _figs(total), _figs(stored_total)))
    return out


def _row(row: SubscriptionMonth | None) -> Any:
    return None if row is None else row.model_dump(exclude={"etag"})


def _show(row: SubscriptionMonth | None) -> str:
    return "absent" if row is None else row.model_dump_json(exclude={"etag", "reseller"})


def _figs(figures: Figures) -> str:
    return figures.model_dump_json()


def _subscription_rows(
    store: LedgerStore, reseller: str, month: str
) -> Iterator[SubscriptionMonth]:
    return every(
        lambda token: store.subscription_months(
            reseller, month, page_size=PAGE_SIZE, continuation_token=token
        )
    )


def _customer_rows(store: LedgerStore, reseller: str, month: str) -> Iterator[CustomerMonth]:
    return every(
        lambda token: store.customer_months(
            reseller, month, page_size=PAGE_SIZE, continuation_token=token
        )
    )
