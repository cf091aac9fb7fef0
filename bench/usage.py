"""The Azure usage report of a reseller with many rows (one month, grouped by meter category)."""

from __future__ import annotations

import random
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench.common import latency, table
from localdev import azurite
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.usage import BillingPeriod
from shared.domain.usage_report import UsageAggregate, UsageImport, rows_partition
from shared.services import usage_report
from shared.services.usage_report import UsageQuery
from tests.fakes import onboard

CUSTOMERS = 5_000
ROWS_PER_CUSTOMER = 6  # (subscription, meter category, resource group, unit) groups
SMALL = 100
MONTH = "2026-01"
TAG = "bench"
NOW = datetime(2026, 1, 20, 7, 0, tzinfo=UTC)
CATEGORIES = ("Virtual Machines", "Storage", "Bandwidth", "SQL Database", "Azure Monitor")
GROUPS = ("rg-web", "rg-data", "rg-shared", "rg-dev")
OWNER = Principal("b", "bench", None, Role.ACCOUNT_MANAGER, "o@bench.example", SignInKind.WORK)


class _Clock:
    def now(self) -> datetime:
        return NOW


def _container(storage: str, prefix: str) -> Container:
    settings = Settings(APP_ENVIRONMENT="test", AzureWebJobsStorage=storage, TABLE_PREFIX=prefix)  # type: ignore[call-arg]
    return Container(settings, clock=_Clock())


def _seed(c: Container, customers: int) -> None:
    """Reseller `bench`, a month's import of `customers` customers' usage rows."""
    onboard(c.resellers, c.clock, "bench", "EUR")
    c.usage_imports.add(
        UsageImport(
            month=MONTH,
            period=BillingPeriod.CURRENT,
            currency="EUR",
            active_tag=TAG,
            started_at=NOW,
            updated_at=NOW,
        )
    )
    rng = random.Random(customers)
    partition = rows_partition("bench", MONTH, TAG)

    def one(i: int) -> None:
        rows = []
        for k in range(ROWS_PER_CUSTOMER):
            row = UsageAggregate(
                reseller="bench",
                customer_id=f"01BENCH{i:019d}",
                customer_name=f"Customer {i}",
                subscription_id=f"{i:08d}-0000-4000-8000-{k % 2:012d}",
                meter_category=CATEGORIES[rng.randrange(len(CATEGORIES))],
                resource_group=GROUPS[k % len(GROUPS)],
                unit="1 Hour",
                quantity=Decimal(rng.randint(1, 10_000)) / 100,
                pre_tax=Decimal(rng.randint(1, 1_000_000)) / 10_000,
                currency="EUR",
                lines=rng.randint(1, 31),
            )
            rows.append((row.row_key(f"b{k}"), row))
        c.usage_rows.upsert(partition, rows)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(customers)))


def usage_rows(n: int = 10) -> list[tuple[str, ...]]:
    """p50 of the report (all customers, grouped by meter category), big vs small reseller."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(Path(tmp) / "az")
        try:
            big = _container(storage.connection_string, "BenchUsageBig")
            small = _container(storage.connection_string, "BenchUsageSmall")
            _seed(big, CUSTOMERS)
            _seed(small, SMALL)

            def query(c: Container) -> object:
                return usage_report.build(c.usage_book, OWNER, "bench", UsageQuery(), Decimal(0))

            b50, _ = latency(lambda: query(big), n, warmup=1)
            s50, _ = latency(lambda: query(small), n, warmup=1)
        finally:
            storage.stop()
    rows = CUSTOMERS * ROWS_PER_CUSTOMER
    return [
        (
            f"usage report p50 (ms), {CUSTOMERS} customers ({rows} stored rows) vs {SMALL} "
            "customers",
            f"{b50:.1f}",
            f"{s50:.1f}",
            f"{b50 / s50:.1f}",
        )
    ]


def main() -> None:
    """Print the usage report figures."""
    print(table("Azure usage report", usage_rows()), flush=True)


if __name__ == "__main__":
    main()
