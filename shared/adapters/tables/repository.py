"""A generic Table Storage repository with ETags, paging, batches and the outbox."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters.tables import batch
from shared.adapters.tables.codec import EntityCodec, decode_scalar
from shared.adapters.tables.outbox_index import OUTBOX_PREFIX, OutboxIndex
from shared.adapters.tables.paging import decode_token, encode_token
from shared.adapters.tables.store import TableStore
from shared.domain.claims import CLAIM_PREFIX, Claim
from shared.domain.errors import (
    ClaimTaken,
    ConcurrencyConflict,
    Conflict,
    NotFound,
    UpstreamUnavailable,
)
from shared.domain.model import ANY_VERSION, Page, Record
from shared.domain.outbox import OutboxMessage

M = TypeVar("M", bound=Record)
log = logging.getLogger(__name__)

DATA_END = "~"
MAX_PAGE_SIZE = 1000
_STORAGE_ETAG = re.compile(r'W/"[^"]+"')
_BAD_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def claim_entity(partition: str, claim: Claim, owner: str) -> dict[str, Any]:
    """The claim row of `claim` in `partition`, held by the record `owner` (its RowKey)."""
    return {
        "PartitionKey": partition,
        "RowKey": check_key(claim.row_key, "RowKey"),
        "Kind": claim.kind,
        "Value": claim.value,
        "Owner": owner,
    }


def check_key(key: str, what: str) -> str:
    """Refuse keys Table Storage does not allow (`/ \\ # ?`, control characters, empty)."""
    if not key or len(key) > 512 or _BAD_KEY.search(key):
        raise ValueError(f"invalid {what} {key!r}")
    return key


def read_version(etag: str | None) -> str:
    """The ETag a conditional write sends: the one the record was read at, never empty or `*`.

    Storage would take `*` as "overwrite whatever is there"; `If-Match: *` from a caller is
    resolved by the service to the version it read (shared.domain.model.expected_version).
    A value in another form than storage's own (`W/"..."`), such as an If-Match tag this API
    never issued, matches no version: a lost race, as storage's mismatch is (storage itself
    would answer 400 InvalidInput).
    """
    if not etag or etag == ANY_VERSION:
        raise ValueError(f"a conditional write needs the ETag the record was read at, not {etag!r}")
    if _STORAGE_ETAG.fullmatch(etag) is None:
        raise ConcurrencyConflict("that ETag is no version of this record; read it again")
    return etag


def outbox_entity(partition: str, message: OutboxMessage) -> dict[str, Any]:
    """The outbox row for `message` in `partition`."""
    return {
        "PartitionKey": partition,
        "RowKey": OUTBOX_PREFIX + message.id,
        "Queue": message.queue.value,
        "Body": json.dumps(message.payload(), separators=(",", ":")),
        "CreatedAt": message.created_at,
    }


class OutboxSink:
    """Where committed outbox rows go right after the commit (see adapters/queues.py)."""

    def dispatch(self, table: TableClient, partition: str, rows: Sequence[dict[str, Any]]) -> None:
        """Send the rows' messages and delete the rows; failures are left to the sweeper."""


def storage_errors(error: Exception) -> Exception:
    """Storage transport failures become UpstreamUnavailable; others pass through."""
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return UpstreamUnavailable(f"storage unreachable: {type(error).__name__}")
    if isinstance(error, HttpResponseError) and (error.status_code or 0) >= 500:
        return UpstreamUnavailable(f"storage error {error.status_code}")
    return error


class TableRepository(Generic[M]):
    """Stores one record type in one table; keys come from the record."""

    def __init__(
        self,
        store: TableStore,
        table_name: str,
        model: type[M],
        keys: Callable[[M], tuple[str, str]],
        outbox: OutboxSink | None = None,
    ) -> None:
        self.store = store
        self.table_name = table_name
        self.codec = EntityCodec(model)
        self.keys = keys
        # None: this table carries no outbox rows, so the sweeper need not scan it.
        self.outbox = outbox
        self._props = {f.name: f.prop for f in self.codec.fields}

    @property
    def table(self) -> TableClient:
        """The table client (created on first use in this process)."""
        return self.store.table(self.table_name)

    def entity(self, item: M) -> dict[str, Any]:
        """The entity for `item`, keys included."""
        pk, rk = self.keys(item)
        return {
            "PartitionKey": check_key(pk, "PartitionKey"),
            "RowKey": check_key(rk, "RowKey"),
            **self.codec.to_properties(item),
        }

    def find(self, partition: str, row: str) -> M | None:
        """The record, or None."""
        try:
            entity = self.table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise storage_errors(exc) from exc
        return self.codec.from_entity(entity)

    def get(self, partition: str, row: str) -> M:
        """The record, or NotFound."""
        item = self.find(partition, row)
        if item is None:
            raise NotFound(f"{self.codec.model.__name__} not found")
        return item

    def add(
        self, item: M, *, messages: Sequence[OutboxMessage] = (), claims: Collection[Claim] = ()
    ) -> M:
        """Insert a new record (Conflict if it exists), with its outbox messages and claims."""
        if messages or claims:
            pk, rk = self.keys(item)
            owned = [(c, rk) for c in claims]
            return self.save_all(pk, adds=[item], messages=messages, claims=owned)[0]
        try:
            meta = self.table.create_entity(self.entity(item))
        except ResourceExistsError as exc:
            raise Conflict(f"{self.codec.model.__name__} already exists") from exc
        except Exception as exc:
            raise storage_errors(exc) from exc
        return self._with_etag(item, meta)

    def update(
        self,
        item: M,
        *,
        messages: Sequence[OutboxMessage] = (),
        claims: Collection[Claim] = (),
        releases: Collection[Claim] = (),
    ) -> M:
        """Replace the record if unchanged since read (ConcurrencyConflict otherwise).

        `claims` are taken and `releases` given up in the same transaction (ClaimTaken when
        another record holds a claim).
        """
        if messages or claims or releases:
            pk, rk = self.keys(item)
            return self.save_all(
                pk,
                updates=[item],
                messages=messages,
                claims=[(c, rk) for c in claims],
                releases=[(c, rk) for c in releases],
            )[0]
        self._require_etag(item)
        try:
            meta = self.table.update_entity(
                self.entity(item),
                mode=UpdateMode.REPLACE,
                etag=item.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrencyConflict(self._lost_race()) from exc
        except Exception as exc:
            raise storage_errors(exc) from exc
        return self._with_etag(item, meta)

    def delete(self, item: M) -> None:
        """Delete the record if unchanged since read (ConcurrencyConflict otherwise)."""
        self._require_etag(item)
        pk, rk = self.keys(item)
        try:
            self.table.delete_entity(
                pk, rk, etag=item.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrencyConflict(self._lost_race()) from exc
        except Exception as exc:
            raise storage_errors(exc) from exc

    def claims(self, partition: str, kind: str) -> Iterator[tuple[Claim, str]]:
        """Every claim of `kind` in `partition` with its holder (a RowKey range query)."""
        low = f"{CLAIM_PREFIX}{kind}~"
        try:
            rows = self.table.query_entities(
                "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                parameters={"pk": partition, "low": low, "high": low + "\uffff"},
                select=["Value", "Owner"],
                results_per_page=MAX_PAGE_SIZE,
            )
            for row in rows:
                yield Claim(kind, str(row["Value"])), str(row["Owner"])
        except Exception as exc:
            raise storage_errors(exc) from exc

    def drop_claims(self, partition: str, claims: Collection[Claim]) -> int:
        """Delete claim rows, 100 to a transaction (a batch meeting one already gone is
        deleted row by row); how many were deleted."""
        keys = sorted({check_key(c.row_key, "RowKey") for c in claims})
        dropped = 0
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            ops: list[tuple[str, dict[str, Any]]] = [
                ("delete", {"PartitionKey": partition, "RowKey": key}) for key in chunk
            ]
            try:
                batch.submit(self.table, ops)
                dropped += len(chunk)
                continue
            except TableTransactionError:
                pass  # one of them is gone already: each on its own
            except Exception as exc:
                raise storage_errors(exc) from exc
            for key in chunk:
                try:
                    self.table.delete_entity(partition, key)
                    dropped += 1
                except ResourceNotFoundError:
                    continue
                except Exception as exc:
                    raise storage_errors(exc) from exc
        return dropped

    def save_all(
        self,
        partition: str,
        *,
        adds: Sequence[M] = (),
        updates: Sequence[M] = (),
        messages: Sequence[OutboxMessage] = (),
        claims: Sequence[tuple[Claim, str]] = (),
        releases: Sequence[tuple[Claim, str]] = (),
    ) -> list[M]:
        """Insert and replace records of one partition atomically, with outbox messages.

        `claims` (claim, owner row) are inserted and `releases` (claim, owner row) deleted in
        the same transaction; a release of a claim its owner does not hold is left out.
        """
        try:
            return self._save_all(partition, adds, updates, messages, claims, releases)
        except Conflict as exc:
            if not claims or isinstance(exc, ConcurrencyConflict):
                raise
            # Which insert failed: a claim another record holds, or one this record already
            # holds (saved before, or backfilled), which is no conflict at all.
            held = []
            for claim, owner in claims:
                current = self.claim_owner(partition, claim)
                if current is not None and current != owner:
                    raise ClaimTaken(claim.kind, claim.value, current) from exc
                if current == owner:
                    held.append((claim, owner))
            if not held:
                raise
            rest = [c for c in claims if c not in held]
            return self._save_all(partition, adds, updates, messages, rest, releases)

    def claim_owner(self, partition: str, claim: Claim) -> str | None:
        """The RowKey of the record holding `claim` in `partition`, or None."""
        row = self._claim_row(partition, claim)
        return str(row["Owner"]) if row is not None else None

    def _claim_row(self, partition: str, claim: Claim) -> Any:
        try:
            return self.table.get_entity(partition, claim.row_key)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise storage_errors(exc) from exc

    def _save_all(
        self,
        partition: str,
        adds: Sequence[M],
        updates: Sequence[M],
        messages: Sequence[OutboxMessage],
        claims: Sequence[tuple[Claim, str]],
        releases: Sequence[tuple[Claim, str]],
    ) -> list[M]:
        ops: list[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], dict[str, Any]]] = []
        for item in adds:
            ops.append(("create", self._in_partition(item, partition)))
        for item in updates:
            self._require_etag(item)
            ops.append(
                (
                    "update",
                    self._in_partition(item, partition),
                    {
                        "mode": UpdateMode.REPLACE,
                        "etag": item.etag,
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            )
        if messages and self.outbox is None:
            raise ValueError(
                f"table {self.table_name} carries no outbox rows: build its repository with one"
            )
        for claim, owner in claims:
            ops.append(("create", claim_entity(partition, claim, owner)))
        for claim, owner in releases:
            row = self._claim_row(partition, claim)
            if row is None or row.get("Owner") != owner:
                continue  # not held by this record (data from before claims): nothing to give up
            ops.append(
                (
                    "delete",
                    {"PartitionKey": partition, "RowKey": claim.row_key},
                    {
                        "etag": row.metadata["etag"],
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            )
        rows = [outbox_entity(partition, m) for m in messages]
        ops.extend(("create", row) for row in rows)
        if len(ops) > 100:
            raise ValueError("a transaction holds at most 100 operations")
        if not ops:
            return []
        try:
            if rows:
                # Before the commit: a committed outbox row is never without its marker.
                OutboxIndex(self.store).mark(self.table_name, partition)
            results = batch.submit(self.table, ops)
        except TableTransactionError as exc:
            code = str(getattr(exc, "error_code", "") or "")
            if "AlreadyExists" in code:
                raise Conflict(f"{self.codec.model.__name__} already exists") from exc
            if "ConditionNotSatisfied" in code or "ResourceNotFound" in code:
                raise ConcurrencyConflict(self._lost_race()) from exc
            raise storage_errors(exc) from exc
        except Exception as exc:
            raise storage_errors(exc) from exc
        saved = [
            self._with_etag(item, meta)
            for item, meta in zip([*adds, *updates], results, strict=False)
        ]
        if rows and self.outbox is not None:
            self.outbox.dispatch(self.table, partition, rows)
        return saved

    def list(
        self,
        partition: str | None = None,
        *,
        equals: Mapping[str, Any] | None = None,
        page_size: int = 50,
        continuation_token: str | None = None,
        before: Mapping[str, datetime] | None = None,
        since: Mapping[str, datetime] | None = None,
        rows: tuple[str, str] | None = None,
    ) -> Page[M]:
        """One page of records, optionally of one partition, with fields equal to values,
        (`before`) datetime fields earlier than the given moments and (`since`) datetime fields
        at or after them, (`rows`) row keys from low to high included (server-side filters:
        only matching rows travel)."""
        clauses = ["RowKey lt @dataEnd"]
        params: dict[str, Any] = {"dataEnd": DATA_END}
        if rows is not None:
            clauses += ["RowKey ge @rowLow", "RowKey le @rowHigh"]
            params["rowLow"], params["rowHigh"] = rows
        if partition is not None:
            clauses.append("PartitionKey eq @pk")
            params["pk"] = partition
        for i, (name, value) in enumerate((equals or {}).items()):
            prop = self._props.get(name)
            if prop is None:
                raise ValueError(f"{self.codec.model.__name__} has no field {name}")
            clauses.append(f"{prop} eq @v{i}")
            params[f"v{i}"] = value.value if hasattr(value, "value") else value
        for op, bounds in (("lt", before), ("ge", since)):
            for i, (name, moment) in enumerate((bounds or {}).items()):
                prop = self._props.get(name)
                if prop is None:
                    raise ValueError(f"{self.codec.model.__name__} has no field {name}")
                clauses.append(f"{prop} {op} @{op}{i}")
                params[f"{op}{i}"] = moment
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        try:
            pager = self.table.query_entities(
                " and ".join(clauses), parameters=params, results_per_page=size
            ).by_page(continuation_token=decode_token(continuation_token))  # type: ignore[arg-type]
            entities = list(next(pager, []))
            token = pager.continuation_token  # type: ignore[attr-defined]
        except Exception as exc:
            raise storage_errors(exc) from exc
        return Page(
            items=[self.codec.from_entity(e) for e in entities],
            continuation_token=encode_token(token),
        )

    def iterate(self, partition: str | None = None, **kw: Any) -> Iterator[M]:
        """Every record (all pages) of a partition or the table."""
        token: str | None = None
        while True:
            page = self.list(partition, page_size=MAX_PAGE_SIZE, continuation_token=token, **kw)
            yield from page.items
            token = page.continuation_token
            if token is None:
                return

    def column(self, partition: str, field: str, *, rows: tuple[str, str]) -> dict[str, Any]:
        """One scalar field of the partition's records with row keys from low to high, by row
        key (a projection: only RowKey and that property travel)."""
        prop = self.codec.scalar_prop(field)
        try:
            entities = self.table.query_entities(
                "PartitionKey eq @pk and RowKey ge @rowLow and RowKey le @rowHigh"
                " and RowKey lt @dataEnd",
                parameters={
                    "pk": partition,
                    "rowLow": rows[0],
                    "rowHigh": rows[1],
                    "dataEnd": DATA_END,
                },
                select=["RowKey", prop],
                results_per_page=MAX_PAGE_SIZE,
            )
            return {
                str(e["RowKey"]): decode_scalar(e[prop])
                for e in entities
                if e.get(prop) is not None
            }
        except Exception as exc:
            raise storage_errors(exc) from exc

    def _in_partition(self, item: M, partition: str) -> dict[str, Any]:
        entity = self.entity(item)
        if entity["PartitionKey"] != partition:
            raise ValueError("every record of a transaction must share its partition")
        return entity

    def _require_etag(self, item: M) -> None:
        read_version(item.etag)

    def _lost_race(self) -> str:
        return f"{self.codec.model.__name__} was changed by someone else; read it again"

    @staticmethod
    def _with_etag(item: M, meta: Mapping[str, Any]) -> M:
        saved = item.model_copy()
        saved.etag = meta.get("etag")
        return saved
