"""Queue sending (base64, as the Functions host expects) and the outbox dispatcher."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.adapters.tables.outbox_index import (
    DEFAULT_GRACE,
    OUTBOX_END,
    OUTBOX_PREFIX,
    OutboxIndex,
)
from shared.adapters.tables.repository import OutboxSink
from shared.adapters.tables.store import TableStore, account_url, storage_credential
from shared.config import Settings
from shared.domain.model import new_id
from shared.domain.outbox import Queue

log = logging.getLogger(__name__)


class QueueSender:
    """Sends text messages base64-encoded; each queue is created once per process."""

    def __init__(self, service: QueueServiceClient) -> None:
        self.service = service
        self._clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueSender:
        """A sender for the configured account (connection string locally, identity in Azure)."""
        conn = settings.storage_connection()
        if conn is not None:
            service = QueueServiceClient.from_connection_string(conn)
        else:
            service = QueueServiceClient(
                account_url(settings, "queue"), credential=storage_credential(settings)
            )
        return cls(service)

    def queue(self, name: str) -> QueueClient:
        """The client for queue `name`, created if this process has not yet."""
        client = self._clients.get(name)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self.service.get_queue_client(
                    name,
                    message_encode_policy=TextBase64EncodePolicy(),
                    message_decode_policy=TextBase64DecodePolicy(),
                )
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
                self._clients[name] = client
        return client

    def ping(self) -> None:
        """Raise if the queue service cannot be reached (one cheap call)."""
        next(iter(self.service.list_queues(results_per_page=1).by_page()), None)

    def depth(self, name: str) -> int:
        """Approximate number of messages in queue `name` (0 if it does not exist)."""
        try:
            props = self.service.get_queue_client(name).get_queue_properties()
        except ResourceNotFoundError:
            return 0
        return int(props.approximate_message_count or 0)

    def poison_depths(self) -> dict[str, int]:
        """Depth of each app queue's `<name>-poison` twin (made by the host on first poison)."""
        return {f"{q.value}-poison": self.depth(f"{q.value}-poison") for q in Queue}

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        """Put one message on `queue` (invisible for `delay_seconds`, if given)."""
        if delay_seconds > 0:
            self.queue(queue).send_message(text, visibility_timeout=max(1, round(delay_seconds)))
        else:
            self.queue(queue).send_message(text)

    def send_later(self, queue: Queue, body: Mapping[str, Any], delay_seconds: float) -> None:
        """Send a JSON message that becomes visible after `delay_seconds` (the StepScheduler)."""
        payload = {**body, "messageId": new_id()}
        self.send(
            queue.value, json.dumps(payload, separators=(",", ":")), delay_seconds=delay_seconds
        )


class OutboxDispatcher(OutboxSink):
    """Sends committed outbox rows to their queues and deletes the rows."""

    def __init__(self, sender: QueueSender, *, marker_grace: timedelta = DEFAULT_GRACE) -> None:
        self.sender = sender
        # How long an emptied partition keeps its index marker (see tables/outbox_index.py).
        self.marker_grace = marker_grace

    def dispatch(self, table: TableClient, partition: str, rows: Sequence[dict[str, Any]]) -> None:
        """Send each row's message, then delete the row; a failure leaves it to the sweeper."""
        for row in rows:
            try:
                self.sender.send(row["Queue"], row["Body"])
            except Exception:
                log.warning("outbox send failed; the sweeper will retry", exc_info=True)
                continue
            try:
                table.delete_entity(partition, row["RowKey"])
            except ResourceNotFoundError:
                pass  # another dispatcher got there first
            except Exception:
                # Sent but not deleted: the sweeper sends it again; handlers are idempotent.
                log.warning("outbox row not deleted after send", exc_info=True)

    def sweep(self, store: TableStore, tables: Iterable[str], older_than: datetime) -> int:
        """Re-send outbox rows created before `older_than`; returns how many were sent.

        Reads only the partitions the outbox index names (one range query each), never whole
        tables, and drops the markers of partitions left without outbox rows.
        """
        index = OutboxIndex(store)
        sent = 0
        for name in tables:
            table = store.table(name)
            for marker in index.markers(name):
                rows = list(
                    table.query_entities(
                        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                        parameters={"pk": marker.partition, "lo": OUTBOX_PREFIX, "hi": OUTBOX_END},
                    )
                )
                if not rows:
                    index.unmark(marker, grace=self.marker_grace)
                    continue
                due = [r for r in rows if r["CreatedAt"] <= older_than]
                self.dispatch(table, marker.partition, due)
                sent += len(due)
        return sent


def sweep_cutoff(now: datetime, min_age_seconds: int) -> datetime:
    """Rows older than this are taken as abandoned by the process that wrote them."""
    return now - timedelta(seconds=min_age_seconds)
