"""The lean transaction writer against Azurite: what it commits and how it refuses is what the
SDK's `submit_transaction` commits and refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableTransactionError, UpdateMode

from shared.adapters.tables import batch

pytestmark = pytest.mark.integration

ODD_KEY = "o'brien ~ž:1"  # a quote, a space, a tilde and a non-ASCII letter in a key


@pytest.fixture
def table(container):
    return container.store.table("BatchRows")


def _row(pk: str, rk: str, **props):
    return {"PartitionKey": pk, "RowKey": rk, **props}


def test_a_transaction_commits_every_row_with_its_types_and_answers_the_etags_a_read_sees(table):
    when = datetime(2026, 11, 30, 4, 5, 6, tzinfo=UTC)
    rows = [
        _row("p1", ODD_KEY, Name="Jan", Count=(2**40, "Edm.Int64"), Flag=True, At=when),
        _row("p1", "b"),
    ]
    metas = batch.submit(table, [("create", r) for r in rows])
    stored = [table.get_entity("p1", r["RowKey"]) for r in rows]
    assert [m["etag"] for m in metas] == [s.metadata["etag"] for s in stored]
    first = stored[0]
    assert (first["Name"], first["Count"].value, first["Flag"]) == ("Jan", 2**40, True)
    assert first["At"] == when


def test_a_conditional_replace_at_an_old_etag_is_refused_like_the_sdk_and_writes_nothing(table):
    (meta,) = batch.submit(table, [("create", _row("p2", ODD_KEY, Name="a"))])
    batch.submit(
        table,
        [
            (
                "update",
                _row("p2", ODD_KEY, Name="b"),
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": meta["etag"],
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        ],
    )
    stale = [
        ("create", _row("p2", "new")),
        (
            "update",
            _row("p2", ODD_KEY, Name="c"),
            {
                "mode": UpdateMode.REPLACE,
                "etag": meta["etag"],
                "match_condition": MatchConditions.IfNotModified,
            },
        ),
    ]
    with pytest.raises(TableTransactionError) as ours:
        batch.submit(table, stale)
    with pytest.raises(TableTransactionError) as sdks:
        table.submit_transaction(stale)
    assert ours.value.error_code == sdks.value.error_code
    assert "ConditionNotSatisfied" in str(ours.value.error_code)
    assert table.get_entity("p2", ODD_KEY)["Name"] == "b"
    assert list(table.query_entities("RowKey eq 'new'")) == []


def test_inserting_a_row_that_exists_is_refused_with_already_exists(table):
    batch.submit(table, [("create", _row("p3", "claim", Owner="x"))])
    ops = [("create", _row("p3", "record")), ("create", _row("p3", "claim", Owner="y"))]
    with pytest.raises(TableTransactionError) as ours:
        batch.submit(table, ops)
    assert "AlreadyExists" in str(ours.value.error_code)
    assert table.get_entity("p3", "claim")["Owner"] == "x"
    assert list(table.query_entities("RowKey eq 'record'")) == []


def test_deletes_go_with_the_etag_or_unconditionally(table):
    metas = batch.submit(table, [("create", _row("p4", k, V="1.5")) for k in "ab"])
    batch.submit(
        table,
        [
            (
                "delete",
                _row("p4", "a"),
                {"etag": metas[0]["etag"], "match_condition": MatchConditions.IfNotModified},
            ),
            ("delete", _row("p4", "b")),
        ],
    )
    assert list(table.query_entities("PartitionKey eq 'p4'")) == []
