"""Renewals within 30 days across a reseller's 10,000 customers, and the reminders' pass."""

from __future__ import annotations

import random
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import latency, table
from localdev import azurite
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.subscriptions import Subscription
from shared.services import reminders, renewals

CUSTOMERS = 10_000
PER_CUSTOMER = 3
SMALL = 100  # the floor: a reseller with 100 customers
NOW = datetime(2026, 1, 15, 7, 0, tzinfo=UTC)


class _Clock:
    def now(self) -> datetime:
        return NOW


def _container(storage: str, prefix: str) -> Container:
    settings = Settings(APP_ENVIRONMENT="test", AzureWebJobsStorage=storage, TABLE_PREFIX=prefix)  # type: ignore[call-arg]
    return Container(settings, clock=_Clock())


def _seed(c: Container, customers: int) -> None:
    """`customers` customers of reseller `bench`, each with 3 subscriptions whose commitment
    ends on a random day of the coming year (so about 1 in 12 renews within 30 days)."""
    rng = random.Random(customers)

    def one(i: int) -> None:
        cid = f"01BENCH{i:019d}"
        subs = [
            Subscription(
                reseller="bench",
                customer_id=cid,
                id=f"{i:08d}-0000-4000-8000-{k:012d}",
                catalog_item_id="CFQ7TTC0LFLX:0001:0002",
                name="Microsoft 365 E3",
                quantity=rng.randint(1, 300),
                term_duration="P1Y",
                billing_cycle="monthly",
                status="active",
                commitment_end_date=NOW + timedelta(days=rng.randint(0, 364)),
                auto_renew=rng.random() < 0.9,
            )
            for k in range(PER_CUSTOMER)
        ]
        c.subscriptions.save_all(cid, adds=subs)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(customers)))


def renewal_rows(n: int = 15) -> list[tuple[str, ...]]:
    """p50 of the renewals query (30 days) and of the reminders' pass, big vs small reseller."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(Path(tmp) / "az")
        try:
            big = _container(storage.connection_string, "BenchBig")
            small = _container(storage.connection_string, "BenchSmall")
            _seed(big, CUSTOMERS)
            _seed(small, SMALL)
            today = NOW.date()
            found = len(renewals.renewing(big.order_book, "bench", today, 30))

            def query(c: Container) -> object:
                return renewals.renewing(c.order_book, "bench", today, 30)

            def due(c: Container) -> object:
                return reminders.due_now(c.order_book, NOW)

            b50, _ = latency(lambda: query(big), n, warmup=2)
            s50, _ = latency(lambda: query(small), n, warmup=2)
            d50, _ = latency(lambda: due(big), n, warmup=2)
            ds50, _ = latency(lambda: due(small), n, warmup=2)
        finally:
            storage.stop()
    rows = CUSTOMERS * PER_CUSTOMER
    return [
        (
            f"renewals within 30 days p50 (ms), {CUSTOMERS} customers × {PER_CUSTOMER} "
            f"({found} of {rows} found) vs {SMALL} customers",
            f"{b50:.1f}",
            f"{s50:.1f}",
            f"{b50 / s50:.1f}",
        ),
        (
            f"reminders' pass p50 (ms), {rows} subscriptions vs {SMALL * PER_CUSTOMER}",
            f"{d50:.1f}",
            f"{ds50:.1f}",
            f"{d50 / ds50:.1f}",
        ),
    ]


def main() -> None:
    """Print the renewal figures."""
    print(table("Renewals and reminders", renewal_rows()), flush=True)


if __name__ == "__main__":
    main()
