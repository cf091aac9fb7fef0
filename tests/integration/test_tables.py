"""The Table Storage layer against Azurite: ETags, paging, transactions, the outbox."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from shared.adapters.tables.repository import OUTBOX_PREFIX, OutboxSink, TableRepository
from shared.domain.errors import ConcurrencyConflict, Conflict, NotFound, ValidationFailed
from shared.domain.model import ANY_VERSION, Record
from shared.domain.outbox import OutboxMessage, Queue
from tests.fakes import InMemoryRepository

pytestmark = pytest.mark.integration


class Item(Record):
    owner: str
    id: str
    name: str
    price: Decimal = Decimal("0")
    status: str = "New"


def repo(container, outbox=True) -> TableRepository[Item]:
    if outbox:
        return container.table_repository("Items", Item, lambda i: (i.owner, i.id), outbox=True)
    # A writer that commits its outbox rows but never sends them (as if it died right after).
    return TableRepository(container.store, "Items", Item, lambda i: (i.owner, i.id), OutboxSink())


def queue(container, name: Queue) -> QueueClient:
    return container.queues.service.get_queue_client(
        name.value, message_decode_policy=TextBase64DecodePolicy()
    )


@pytest.fixture(autouse=True)
def empty_notifications_queue(container):
    container.queues.queue(Queue.NOTIFICATIONS.value).clear_messages()


def test_two_writers_racing_on_one_entity_one_wins_the_other_gets_a_conflict(container):
    items = repo(container)
    items.add(Item(owner="demo", id="1", name="first"))
    alice = items.get("demo", "1")
    bob = items.get("demo", "1")
    alice.name = "alice"
    saved = items.update(alice)
    bob.name = "bob"
    with pytest.raises(ConcurrencyConflict):
        items.update(bob)
    assert items.get("demo", "1").name == "alice"
    assert saved.etag != bob.etag


def test_adding_twice_is_a_conflict_and_money_survives_exactly(container):
    items = repo(container)
    items.add(Item(owner="demo", id="1", name="x", price=Decimal("1234.56")))
    with pytest.raises(Conflict):
        items.add(Item(owner="demo", id="1", name="y"))
    assert items.get("demo", "1").price == Decimal("1234.56")


def test_missing_record_is_not_found(container):
    with pytest.raises(NotFound):
        repo(container).get("demo", "nope")


def test_pages_follow_opaque_tokens_and_filters_are_parameterised(container):
    items = repo(container)
    for i in range(7):
        items.add(Item(owner="demo", id=f"{i:02}", name=f"n{i}", status="A" if i % 2 else "B"))
    items.add(Item(owner="other", id="99", name="theirs"))
    seen, token = [], None
    while True:
        page = items.list("demo", page_size=3, continuation_token=token)
        assert len(page.items) <= 3
        seen += [i.id for i in page.items]
        token = page.continuation_token
        if token is None:
            break
    assert seen == [f"{i:02}" for i in range(7)]
    odd = items.list("demo", equals={"status": "A"}).items
    assert [i.id for i in odd] == ["01", "03", "05"]
    hostile = items.list("demo", equals={"name": "x' or PartitionKey ne 'demo"}).items
    assert hostile == []


def test_a_garbage_continuation_token_is_a_validation_error(container):
    with pytest.raises(ValidationFailed):
        repo(container).list("demo", continuation_token="%%%not-a-token")


def test_record_and_outbox_row_commit_together_then_the_message_is_sent(container):
    items = repo(container)
    msg = OutboxMessage(queue=Queue.NOTIFICATIONS, body={"id": "1"})
    items.add(Item(owner="demo", id="1", name="x"), messages=[msg])
    sent = [json.loads(m.content) for m in queue(container, Queue.NOTIFICATIONS).peek_messages(32)]
    assert {"id": "1", "messageId": msg.id} in sent
    leftovers = list(items.table.query_entities("RowKey ge @p", parameters={"p": OUTBOX_PREFIX}))
    assert leftovers == []


def test_a_failed_transaction_writes_neither_record_nor_outbox_row(container):
    items = repo(container)
    items.add(Item(owner="demo", id="1", name="x"))
    stale = items.get("demo", "1")
    items.update(stale.model_copy(update={"name": "moved on"}))
    msg = OutboxMessage(queue=Queue.NOTIFICATIONS, body={"id": "2"})
    with pytest.raises(ConcurrencyConflict):
        items.save_all(
            "demo", adds=[Item(owner="demo", id="2", name="new")], updates=[stale], messages=[msg]
        )
    assert items.find("demo", "2") is None
    assert list(items.table.query_entities("RowKey ge @p", parameters={"p": OUTBOX_PREFIX})) == []


def test_outbox_rows_never_appear_in_lists_and_the_sweeper_sends_them(container):
    items = repo(container, outbox=False)  # a writer that commits but never sends
    msg = OutboxMessage(queue=Queue.NOTIFICATIONS, body={"id": "3"})
    items.add(Item(owner="demo", id="3", name="x"), messages=[msg])
    assert [i.id for i in items.list("demo").items] == ["3"]
    assert container.outbox.sweep(container.store, ["Items"], container.clock.now()) == 1
    sent = [json.loads(m.content) for m in queue(container, Queue.NOTIFICATIONS).peek_messages(32)]
    assert {"id": "3", "messageId": msg.id} in sent
    assert container.outbox.sweep(container.store, ["Items"], container.clock.now()) == 0


def test_keys_with_forbidden_characters_are_refused_before_storage(container):
    with pytest.raises(ValueError, match="invalid RowKey"):
        repo(container).add(Item(owner="demo", id="a/b", name="x"))


def test_a_table_without_an_outbox_refuses_messages_so_none_go_unswept(container):
    plain = container.table_repository("Items", Item, lambda i: (i.owner, i.id))
    msg = OutboxMessage(queue=Queue.NOTIFICATIONS, body={"id": "4"})
    with pytest.raises(ValueError, match="carries no outbox rows"):
        plain.add(Item(owner="demo", id="4", name="x"), messages=[msg])
    assert plain.find("demo", "4") is None


def test_only_tables_whose_repositories_carry_an_outbox_are_swept(container):
    assert sorted(container.outbox_tables()) == [
        "Customers",
        "Notifications",
        "Orders",
        "Subscriptions",  # ledger facts travel with the records
        "SyncRuns",
        "UsageImports",
    ]


# --- the sweeper reads the partitions its index names, never whole tables ---------------------


def _history(container, n: int) -> None:
    """`n` customers' worth of rows that never carried a pending message."""
    table = container.store.table("Items")
    for start in range(0, n, 100):
        batch = [
            ("create", {"PartitionKey": f"r{i % 7}", "RowKey": f"{i:05d}", "Name": "x"})
            for i in range(start, min(n, start + 100))
        ]
        for pk in {e[1]["PartitionKey"] for e in batch}:
            table.submit_transaction([op for op in batch if op[1]["PartitionKey"] == pk])


def _spy_queries(monkeypatch) -> list[str]:
    """The filter of every query the code under test sends."""
    from azure.data.tables import TableClient

    filters: list[str] = []
    original = TableClient.query_entities

    def spy(self, query_filter, **kw):
        filters.append(f"{self.table_name}: {query_filter}")
        return original(self, query_filter, **kw)

    monkeypatch.setattr(TableClient, "query_entities", spy)
    return filters


def test_sweeping_a_table_with_history_and_nothing_pending_scans_no_table(container, monkeypatch):
    _history(container, 300)
    items = repo(container, outbox=False)  # one writer died after its commit
    items.add(
        Item(owner="r3", id="new", name="x"),
        messages=[OutboxMessage(queue=Queue.NOTIFICATIONS, body={"id": "5"})],
    )
    filters = _spy_queries(monkeypatch)

    assert container.outbox.sweep(container.store, ["Items"], container.clock.now()) == 1

    assert filters and all("PartitionKey eq" in f for f in filters), filters
    data_reads = [f for f in filters if f.startswith(container.store.prefix + "Items")]
    assert len(data_reads) == 1  # the one partition the index names


def test_a_partition_left_without_outbox_rows_loses_its_marker_and_costs_nothing(container):
    from shared.adapters.tables.outbox_index import OutboxIndex

    container.outbox.marker_grace = timedelta(0)
    items = repo(container)  # sends at once: the rows are gone, the marker stays until swept
    items.add(
        Item(owner="demo", id="6", name="x"),
        messages=[OutboxMessage(queue=Queue.NOTIFICATIONS, body={"id": "6"})],
    )
    index = OutboxIndex(container.store)
    assert [m.partition for m in index.markers("Items")] == ["demo"]

    assert container.outbox.sweep(container.store, ["Items"], container.clock.now()) == 0

    assert list(index.markers("Items")) == []


def test_a_marker_written_again_while_the_sweeper_looks_is_kept(container):
    from shared.adapters.tables.outbox_index import OutboxIndex

    index = OutboxIndex(container.store)
    index.mark("Items", "demo")
    [seen] = index.markers("Items")
    index.mark("Items", "demo")  # a writer about to commit an outbox row here

    assert index.unmark(seen, grace=timedelta(0)) is False
    assert [m.partition for m in index.markers("Items")] == ["demo"]


def test_a_fresh_marker_is_kept_so_a_writer_between_marking_and_committing_is_not_lost(
    container,
):
    from shared.adapters.tables.outbox_index import OutboxIndex

    index = OutboxIndex(container.store)
    index.mark("Items", "demo")  # the writer has marked; its transaction has not landed yet
    assert container.outbox.sweep(container.store, ["Items"], container.clock.now()) == 0
    assert [m.partition for m in index.markers("Items")] == ["demo"]


@pytest.mark.parametrize("kind", ["table", "fake"])
def test_a_write_at_no_read_version_fails_alike_in_storage_and_in_the_fake(container, kind):
    items = repo(container) if kind == "table" else InMemoryRepository(lambda i: (i.owner, i.id))
    items.add(Item(owner="demo", id="1", name="first"))
    for bad in (None, "", ANY_VERSION):  # a bug: never sent, storage would overwrite on `*`
        stale = items.get("demo", "1")
        stale.etag, stale.name = bad, "overwritten"
        with pytest.raises(ValueError, match="ETag the record was read at"):
            items.update(stale)
        with pytest.raises(ValueError, match="ETag the record was read at"):
            items.delete(stale)
    # Tags that are no version of ours (a caller's If-Match we never issued) match nothing.
    for foreign in ("not-ours", '"x"', "W/\"datetime'2020-01-01T00%3A00%3A00.0Z'\""):
        stale = items.get("demo", "1")
        stale.etag, stale.name = foreign, "overwritten"
        with pytest.raises(ConcurrencyConflict):
            items.update(stale)
        with pytest.raises(ConcurrencyConflict):
            items.save_all("demo", updates=[stale])
    assert items.get("demo", "1").name == "first"


def test_a_row_key_range_reads_the_rows_from_low_to_high_alike_in_storage_and_in_the_fake(
    container,
):
    fake: InMemoryRepository[Item] = InMemoryRepository(lambda i: (i.owner, i.id))
    for items in (repo(container), fake):
        for key in ("a", "b", "c", "d"):
            items.add(Item(owner="range", id=key, name=key))
        items.add(Item(owner="other", id="b", name="elsewhere"))
        assert [i.id for i in items.iterate("range", rows=("b", "c"))] == ["b", "c"]


def test_one_column_of_a_row_key_range_reads_alike_in_storage_and_in_the_fake(container):
    fake: InMemoryRepository[Item] = InMemoryRepository(lambda i: (i.owner, i.id))
    for items in (repo(container), fake):
        for key in ("a", "b", "c", "d"):
            items.add(Item(owner="column", id=key, name=f"name {key}"))
        items.add(Item(owner="other", id="b", name="elsewhere"))
        assert items.column("column", "name", rows=("b", "c")) == {"b": "name b", "c": "name c"}
        with pytest.raises(ValueError):
            items.column("column", "nothing", rows=("a", "z"))
