"""The usage report's rows in memory, a step scheduler that keeps its messages, and a driver
that runs an import's queue steps the way the host would (for unit and route tests)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.bootstrap import Container
from shared.domain.claims import Claim
from shared.domain.outbox import Queue
from shared.domain.usage_report import IMPORTS_PARTITION, UsageAggregate, UsageImport
from shared.ports import AzureUsageExports
from shared.services import usage_import
from shared.services.usage_import import UsageBook, UsagePolicy
from tests.fakes import InMemoryRepository


@dataclass
class InMemoryUsageRows:
    """The UsageRows port in memory: upsert replaces by (partition, row key), as storage does."""

    rows: dict[str, dict[str, UsageAggregate]] = field(default_factory=dict)
    writes: int = 0

    def upsert(self, partition: str, rows: Sequence[tuple[str, UsageAggregate]]) -> None:
        """Insert or replace each row."""
        for key, row in rows:
            self.writes += 1
            self.rows.setdefault(partition, {})[key] = row

    def read(self, partition: str, customer_id: str | None = None) -> Iterator[UsageAggregate]:
        """The partition's rows (one customer's: a RowKey prefix)."""
        for key, row in sorted(self.rows.get(partition, {}).items()):
            if customer_id is None or key.startswith(f"{customer_id}~"):
                yield row

    def drop(self, partition: str) -> int:
        """Delete the partition."""
        return len(self.rows.pop(partition, {}))


@dataclass
class KeptMessages:
    """A StepScheduler that keeps what it is given (queue, body, delay)."""

    sent: list[tuple[Queue, dict[str, Any], float]] = field(default_factory=list)

    def send_later(self, queue: Queue, body: Mapping[str, Any], delay_seconds: float) -> None:
        """Keep the message."""
        self.sent.append((queue, dict(body), delay_seconds))


def install_usage(c: Container, policy: UsagePolicy | None = None) -> UsageBook:
    """In-memory imports and rows in the container; the book built on them."""
    c.__dict__["usage_imports"] = InMemoryRepository[UsageImport](
        lambda i: (IMPORTS_PARTITION, i.month)
    )
    c.__dict__["usage_rows"] = InMemoryUsageRows()
    book = UsageBook(
        imports=c.usage_imports,
        rows=c.usage_rows,
        customers=c.customers,
        resellers=c.resellers,
        clock=c.clock,
        scheduler=KeptMessages(),
        policy=policy or UsagePolicy(currency="EUR", poll_seconds=5),
    )
    c.__dict__["usage_book"] = book
    return book


def pending(book: UsageBook) -> list[dict[str, Any]]:
    """Take every message waiting: the imports' outbox rows, then the scheduled ones."""
    imports: Any = book.imports
    scheduler: Any = book.scheduler
    bodies = [m.body for m in imports.sent] + [body for _, body, _ in scheduler.sent]
    imports.sent.clear()
    scheduler.sent.clear()
    return bodies


def drain(book: UsageBook, usage: AzureUsageExports, *, limit: int = 200) -> list[str]:
    """Run queued steps until none is left; the steps run, in order."""
    from shared.domain.usage_report import UsageImportMessage

    steps: list[str] = []
    queue = pending(book)
    while queue:
        body = queue.pop(0)
        msg = UsageImportMessage.model_validate(body)
        steps.append(msg.step.value if msg.blob is None else f"blob{msg.blob}")
        usage_import.handle(book, usage, msg)
        queue.extend(pending(book))
        assert len(steps) < limit, "the import never finished"
    return steps


def claim_tenant(c: Container, reseller: str, customer_id: str, tenant_id: str) -> None:
    """Give a stored customer a tenant id (and its claim row), as provisioning does."""
    customer = c.customers.get(reseller, customer_id)
    customer.tenant_id = tenant_id
    c.customers.update(customer, claims=[Claim("tenant", tenant_id)])
