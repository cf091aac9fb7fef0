"""The ledger: projecting facts into month aggregates, and what it adds to a subscription write."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.common import latency, table
from localdev import azurite
from shared.adapters.tables.ledger import LedgerTable
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.ledger import LedgerFact, LedgerMessage, MonthWrite, PricedState
from shared.domain.subscriptions import Subscription
from shared.services.ledger import project, rebuild
from tests.fakes import FakeClock
from tests.unit.test_codec import subscription_priced_without_retail_price

CUSTOMERS = 1_000
PER_CUSTOMER = 3
WORKERS = 8
MONTH = "2026-11"


def _container(storage: str, prefix: str, clock: FakeClock) -> Container:
    settings = Settings(APP_ENVIRONMENT="test", AzureWebJobsStorage=storage, TABLE_PREFIX=prefix)  # type: ignore[call-arg]
    return Container(settings, clock=clock)


def _messages(clock: FakeClock) -> list[LedgerMessage]:
    sub = subscription_priced_without_retail_price().model_copy(
        update={"billing_cycle": "monthly", "catalog_item_id": "CFQ7TTC0LH18:0001:X"}
    )
    out = []
    for c in range(CUSTOMERS):
        facts = [
            LedgerFact(
                reseller="bench",
                customer_id=f"cust{c:05d}",
                subscription_id=str(uuid.uuid4()),
                at=clock.now(),
                state=PricedState.of(sub.model_copy(update={"quantity": s + 1})),
            )
            for s in range(PER_CUSTOMER)
        ]
        out.append(LedgerMessage.of(facts))
    return out


def projection_rows(storage: str) -> list[tuple[str, ...]]:
    """Messages per second projected by WORKERS threads, then the same messages again."""
    clock = FakeClock(datetime(2026, 11, 10, tzinfo=UTC))
    c = _container(storage, "BenchLedger", clock)
    store = LedgerTable(c.store)
    writes = 0
    real_write = store.write

    def counted(write: MonthWrite) -> None:
        nonlocal writes
        writes += 1
        real_write(write)

    store.write = counted  # type: ignore[method-assign]
    messages = _messages(clock)
    store.totals("bench", MONTH)  # the table created, the client warm

    def run() -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda m: project(store, clock, m), messages))
        return len(messages) / (time.perf_counter() - start)

    first = run()
    lost = writes - len(messages)
    again = run()  # redelivered: every fact is already there
    start = time.perf_counter()
    differences = rebuild(store, "bench", [MONTH])
    rebuilt = time.perf_counter() - start
    assert differences == [], differences[:3]
    return [
        (
            f"ledger projection, {CUSTOMERS} customers × {PER_CUSTOMER} facts, "
            f"{WORKERS} threads (msg/s)",
            f"{first:.0f}",
            "—",
            "—",
        ),
        ("transactions redone after a lost race (first pass)", f"{lost}", "—", "—"),
        (
            "the same messages redelivered (msg/s)",
            f"{again:.0f}",
            f"{first:.0f}",
            f"{again / first:.2f}",
        ),
        (
            f"rebuild of the month ({CUSTOMERS * PER_CUSTOMER} facts) (s)",
            f"{rebuilt:.2f}",
            "—",
            "—",
        ),
    ]


def write_rows(storage: str, n: int = 100) -> list[tuple[str, ...]]:
    """p50 of a seat change through the ledgered repository vs the plain one."""
    clock = FakeClock(datetime(2026, 11, 10, tzinfo=UTC))
    c = _container(storage, "BenchLedgerWrite", clock)
    plain = c.table_repository(
        "PlainSubscriptions", Subscription, lambda s: (s.customer_id, s.id.lower())
    )
    ledgered = c.subscriptions

    def changing(repo: object) -> object:
        sub = repo.add(  # type: ignore[attr-defined]
            subscription_priced_without_retail_price().model_copy(
                update={"id": str(uuid.uuid4()), "billing_cycle": "monthly"}
            )
        )
        state = {"sub": sub}

        def write() -> None:
            s = state["sub"]
            s.quantity += 1
            state["sub"] = repo.update(s)  # type: ignore[attr-defined]

        return write

    def refreshing(repo: object) -> object:
        state = {
            "sub": repo.add(
                subscription_priced_without_retail_price().model_copy(
                    update={"id": str(uuid.uuid4())}
                )
            )
        }  # type: ignore[attr-defined]

        def write() -> None:
            s = state["sub"]
            s.refreshed_at = clock.now()
            state["sub"] = repo.update(s)  # type: ignore[attr-defined]

        return write

    p_plain, _ = latency(changing(plain), n, warmup=10)  # type: ignore[arg-type]
    p_ledger, _ = latency(changing(ledgered), n, warmup=10)  # type: ignore[arg-type]
    p_same, _ = latency(refreshing(ledgered), n, warmup=10)  # type: ignore[arg-type]
    return [
        (
            "subscription seat change p50 (ms): with its ledger fact vs plain",
            f"{p_ledger:.2f}",
            f"{p_plain:.2f}",
            f"{p_ledger / p_plain:.2f}",
        ),
        (
            "subscription write changing nothing priced p50 (ms) vs plain",
            f"{p_same:.2f}",
            f"{p_plain:.2f}",
            f"{p_same / p_plain:.2f}",
        ),
    ]


def main() -> None:
    """Print the ledger figures."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(
            Path(tmp) / "az", in_memory=os.environ.get("BENCH_AZURITE_DISK") != "1"
        )
        try:
            rows = projection_rows(storage.connection_string) + write_rows(
                storage.connection_string
            )
        finally:
            storage.stop()
    print(table("Ledger", rows), flush=True)


if __name__ == "__main__":
    main()
