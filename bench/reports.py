"""The licence report of a reseller with 10,000 customers × 3 subscriptions, 14 months.

Targets (issue 15): one month's page of JSON ≤ 1 s and the 14-month series ≤ 2 s through the
local host. The ledger's Table adapter is not there yet, so this measures the report services
in process: customers and their names in Azurite (the real range query), the ledger's month
aggregates from `seed_ledger`, today the in-memory ledger with its aggregates kept as the Table
adapter keeps them (read, not summed per request). When the adapter lands, `seed_ledger`
writes the facts through it and the rows time the routes through `bench.common.running_app`.
"""

from __future__ import annotations

import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path

from bench.common import latency, table
from localdev import azurite
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.customers import Customer
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.ledger import (
    CustomerMonth,
    LedgerFact,
    MonthTotals,
    PricedState,
    month_start,
    months_ending,
)
from shared.ports import LedgerReader
from shared.services.reports import licences
from tests.fakes import onboard
from tests.ledger_fakes import InMemoryLedger

CUSTOMERS = 10_000
PER_CUSTOMER = 3
LAST = "2026-11"
MONTHS = months_ending(LAST, 14)
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
STAFF = Principal("bench", "bench", None, Role.ACCOUNT_MANAGER, "b@x.example", SignInKind.PLATFORM)


class _Clock:
    def now(self) -> datetime:
        return NOW


class _StoredAggregates(InMemoryLedger):
    """The in-memory ledger with its customer months and totals computed once, as the Table
    adapter stores them (the fake sums every row on each read)."""

    @cache  # noqa: B019 - one instance per bench run
    def _customers(self, reseller: str, month: str) -> list[CustomerMonth]:
        return super()._customers(reseller, month)

    @cache  # noqa: B019
    def totals(self, reseller: str, month: str) -> MonthTotals:
        return super().totals(reseller, month)


def facts(customers: int) -> list[LedgerFact]:
    """Each subscription bought in the first month; a third change seats in some later month."""
    rng = random.Random(customers)
    out = []
    for i in range(customers):
        for k in range(PER_CUSTOMER):
            seats = rng.randint(1, 300)
            state = PricedState(
                product_id=f"CFQ7TTC0LH1{k}",
                catalog_item_id=f"CFQ7TTC0LH1{k}:0001:0001",
                name=f"Microsoft 365 plan {k}",
                term_duration="P1Y",
                billing_cycle="annual" if k == 2 else "monthly",
                status="active",
                seats=seats,
                assigned=seats,
                currency="CZK",
                unit_microsoft_cost=Decimal("100.00"),
                unit_reseller_cost=Decimal("110.00"),
                unit_customer_price=Decimal("121.00"),
            )
            cid, sid = f"01BENCH{i:019d}", f"{i:08d}-0000-4000-8000-{k:012d}"
            bought = month_start(MONTHS[0]) + timedelta(days=2)
            out.append(
                LedgerFact(
                    reseller="bench", customer_id=cid, subscription_id=sid, at=bought, state=state
                )
            )
            if rng.random() < 1 / 3:
                month = rng.choice(MONTHS[1:])
                later = month_start(month) + timedelta(days=rng.randint(0, 20))
                grown = state.model_copy(update={"seats": seats + rng.randint(-seats + 1, 20)})
                out.append(
                    LedgerFact(
                        reseller="bench",
                        customer_id=cid,
                        subscription_id=sid,
                        at=later,
                        state=grown,
                    )
                )
    return out


def seed_ledger(c: Container, customers: int) -> LedgerReader:
    """The ledger of `customers` customers over MONTHS (to be: written through the Table adapter
    behind `c`)."""
    ledger = _StoredAggregates()
    ledger.load(facts(customers), MONTHS)
    return ledger


def seed_customers(c: Container, customers: int) -> None:
    """The reseller `bench` and its customers in the Customers table."""
    onboard(c.resellers, c.clock, "bench", "CZK")

    def one(i: int) -> None:
        c.customers.add(
            Customer(
                reseller="bench",
                id=f"01BENCH{i:019d}",
                name=f"Zákazník {i} s.r.o.",
                domain=f"bench{i}.onmicrosoft.com",
            )
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(customers)))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def report_rows(n: int = 10) -> list[tuple[str, ...]]:
    """p50 of a month's page (JSON), the 14-month series, and walking all 30,000 rows."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(Path(tmp) / "az", in_memory=True)
        try:
            settings = Settings(
                APP_ENVIRONMENT="test",
                AzureWebJobsStorage=storage.connection_string,
                TABLE_PREFIX="BenchReports",
            )
            c = Container(settings, clock=_Clock())
            seed_customers(c, CUSTOMERS)
            c.__dict__["ledger_reader"] = seed_ledger(c, CUSTOMERS)
            book = c.reports_book
            middle = str(CUSTOMERS * PER_CUSTOMER // 2)  # the in-memory ledger's token

            def page(size: int, token: str | None = None) -> object:
                report = licences.licence_report(
                    book, STAFF, "bench", page_size=size, continuation_token=token
                )
                return report.model_dump_json(by_alias=True)

            def series() -> object:
                report = licences.licence_series(book, STAFF, "bench", months=14)
                return report.model_dump_json(by_alias=True)

            p100, _ = latency(lambda: page(100, middle), n, warmup=2)
            p1000, _ = latency(lambda: page(1000, middle), n, warmup=1)
            s14, _ = latency(series, n, warmup=1)

            def walk() -> int:
                return sum(1 for _ in licences.licence_rows(book, STAFF, "bench").rows)

            walked = _timed(walk)
            # Apart: tracemalloc slows Python down many times over.
            tracemalloc.start()
            walk()
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
        finally:
            storage.stop()
    rows = CUSTOMERS * PER_CUSTOMER
    return [
        (
            f"licence report, one month, page of 100 (ms p50, {rows} rows)",
            f"{p100:.0f}",
            "1000",
            f"{p100 / 1000:.2f}",
        ),
        (
            "licence report, one month, page of 1000 (ms p50)",
            f"{p1000:.0f}",
            "1000",
            f"{p1000 / 1000:.2f}",
        ),
        ("licence series, 14 months (ms p50)", f"{s14:.0f}", "2000", f"{s14 / 2000:.2f}"),
        (
            f"every row of the month ({rows}, for exports; ms, once)",
            f"{walked:.0f}",
            "3000",
            f"{walked / 3000:.2f}",
        ),
        ("…its peak Python memory (MB, tracemalloc)", f"{peak:.1f}", "100", f"{peak / 100:.2f}"),
    ]


def main() -> None:
    """Print the report figures."""
    print(
        table(
            "Reports (in process; ledger in memory until its Table adapter lands)", report_rows()
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
