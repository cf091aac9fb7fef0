"""Which partitions may hold outbox rows, so the sweeper reads those and not whole tables.

A table transaction covers one partition of one table, so the index row cannot commit with the
outbox rows it announces. It is written *before* the transaction instead (an idempotent upsert):
every committed outbox row therefore has its marker, and a marker without rows (the transaction
failed, or the rows were sent) only costs the sweeper one small range query until it removes it.

The sweeper removes a marker only when its partition holds no outbox row and the marker was last
written more than `grace` ago, with the marker's ETag: a writer that marks the partition again
meanwhile changes the ETag, so the delete fails and the marker stays. What remains assumed is that
no writer takes longer than `grace` between marking and committing (the storage SDK's timeouts
bound one transaction to a small fraction of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.tables.store import TableStore

INDEX_TABLE = "OutboxPartitions"
DEFAULT_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class Marker:
    """One partition of `table` that may hold outbox rows, as last written."""

    table: str
    partition: str
    etag: str
    written_at: datetime


class OutboxIndex:
    """Markers keyed (table name, partition) in their own table."""

    def __init__(self, store: TableStore) -> None:
        self.store = store

    def mark(self, table: str, partition: str) -> None:
        """Record that `partition` of `table` may hold outbox rows (call before committing)."""
        self.store.table(INDEX_TABLE).upsert_entity(
            {"PartitionKey": table, "RowKey": partition}, mode=UpdateMode.REPLACE
        )

    def markers(self, table: str) -> Iterator[Marker]:
        """The marked partitions of `table` (one single-partition query)."""
        rows = self.store.table(INDEX_TABLE).query_entities(
            "PartitionKey eq @t", parameters={"t": table}
        )
        for row in rows:
            meta = row.metadata
            written = meta.get("timestamp") or datetime.now(UTC)
            yield Marker(table, row["RowKey"], str(meta.get("etag")), written)

    def unmark(self, marker: Marker, *, grace: timedelta = DEFAULT_GRACE) -> bool:
        """Remove an idle marker unless it was written again since read; True if removed."""
        if marker.written_at > datetime.now(UTC) - grace:
            return False
        try:
            self.store.table(INDEX_TABLE).delete_entity(
                marker.table,
                marker.partition,
                etag=marker.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True
