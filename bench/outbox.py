"""The outbox sweep: its cost follows pending messages, not how many records a table holds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from azure.data.tables import TableClient

from bench.common import latency, table
from localdev import azurite
from shared.adapters.tables.repository import OUTBOX_END, OUTBOX_PREFIX
from shared.bootstrap import Container
from shared.config import Settings

CUSTOMERS = 10_000
RESELLERS = 20


def _container(storage: str, prefix: str) -> Container:
    return Container(
        Settings(APP_ENVIRONMENT="test", AzureWebJobsStorage=storage, TABLE_PREFIX=prefix)  # type: ignore[call-arg]
    )


def _seed_customers(client: TableClient, n: int) -> None:
    """`n` customer rows over RESELLERS partitions, none with a pending message."""
    for r in range(RESELLERS):
        rows = [i for i in range(n) if i % RESELLERS == r]
        for start in range(0, len(rows), 100):
            client.submit_transaction(
                [
                    (
                        "create",
                        {
                            "PartitionKey": f"reseller{r:02d}",
                            "RowKey": f"{i:026d}",
                            "Name": f"Customer {i}",
                            "Status": "Active",
                        },
                    )
                    for i in rows[start : start + 100]
                ]
            )


def _whole_table_query(client: TableClient) -> float:
    """p50 (ms) of the former sweep's query: outbox rows of every partition (a table scan)."""
    query = "RowKey ge @lo and RowKey lt @hi"
    params = {"lo": OUTBOX_PREFIX, "hi": OUTBOX_END}
    p50, _ = latency(lambda: list(client.query_entities(query, parameters=params)), 20, warmup=2)
    return p50


def sweep_rows(n: int = 50) -> list[tuple[str, ...]]:
    """Sweep p50 with CUSTOMERS customers and nothing pending vs. empty tables."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(Path(tmp) / "az")
        try:
            empty, full = (
                _container(storage.connection_string, "BenchEmpty"),
                _container(storage.connection_string, "BenchFull"),
            )
            _seed_customers(full.store.table("Customers"), CUSTOMERS)
            for c in (empty, full):
                c.sweep_outbox()  # tables created, clients warm
            e50, _ = latency(empty.sweep_outbox, n, warmup=3)
            f50, _ = latency(full.sweep_outbox, n, warmup=3)
            # What the sweep cost before the index: one query over every row of each table.
            o50 = _whole_table_query(full.store.table("Customers"))
            oe50 = _whole_table_query(empty.store.table("Customers"))
        finally:
            storage.stop()
    return [
        (
            f"outbox sweep p50 (ms), {CUSTOMERS} customers nothing pending vs empty tables",
            f"{f50:.2f}",
            f"{e50:.2f}",
            f"{f50 / e50:.2f}",
        ),
        (
            f"former whole-table sweep query (ms), {CUSTOMERS} customers vs empty table",
            f"{o50:.2f}",
            f"{oe50:.2f}",
            f"{o50 / oe50:.2f}",
        ),
    ]


def main() -> None:
    """Print the outbox figures."""
    print(table("Outbox", sweep_rows()), flush=True)


if __name__ == "__main__":
    main()
