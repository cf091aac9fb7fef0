"""Facts written with the records: the Subscriptions repository that owes the ledger a fact.

Every write of a subscription record goes through `LedgeredSubscriptions`, so no caller has to
remember the ledger. A record whose priced state (`PricedState.of(sub).digest()`) differs from
the one last sent (`sub.ledgered`) gets the new digest, and the transaction that writes it also
writes ONE outbox message to the `ledger` queue carrying the facts of every such record in it.
A write that changes nothing priced (`refreshed_at`, a sync mark, the change in flight) sends
nothing.

A transaction holds at most 100 operations and an outbox row's body at most 32 K characters
(a Table string property; a queue message, base64-encoded, allows 48 KB of text). A caller's
write that leaves no room for the message is split into several transactions, each with the
facts of its own records: a fact is never committed without its record nor a record without
its fact, though the caller's rows then commit in more than one step (the callers that save
100 rows — order completion, the sync's chunks — re-read and redo what is missing).
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from shared.domain.claims import Claim
from shared.domain.errors import ConcurrencyConflict
from shared.domain.ledger import LedgerFact, LedgerMessage, PricedState, month_of, month_start
from shared.domain.model import Page
from shared.domain.outbox import OutboxMessage, Queue
from shared.domain.subscriptions import Subscription
from shared.ports import Clock, Repository

log = logging.getLogger(__name__)

MAX_OPERATIONS = 100
# An outbox row's Body, with room for the message id and the envelope.
MAX_MESSAGE_CHARS = 30_000


class LedgeredSubscriptions:
    """A Subscriptions repository whose writes carry the ledger's facts (everything else is
    the inner repository's)."""

    def __init__(self, inner: Repository[Subscription], clock: Clock) -> None:
        self.inner = inner
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        # The adapter's own attributes (table_name, outbox: the sweeper finds this table's
        # outbox rows through them).
        return getattr(self.inner, name)

    def get(self, partition: str, row: str) -> Subscription:
        """The record, or NotFound."""
        return self.inner.get(partition, row)

    def find(self, partition: str, row: str) -> Subscription | None:
        """The record, or None."""
        return self.inner.find(partition, row)

    def claim_owner(self, partition: str, claim: Claim) -> str | None:
        """The id of the record holding `claim`, or None."""
        return self.inner.claim_owner(partition, claim)

    def delete(self, item: Subscription) -> None:
        """Delete the record if unchanged since read (the ledger keeps its last state: a
        record is deleted only when Partner Center has ended it, which was ledgered)."""
        self.inner.delete(item)

    def claims(self, partition: str, kind: str) -> Iterator[tuple[Claim, str]]:
        """Every claim of `kind` in `partition` with its holder."""
        return self.inner.claims(partition, kind)

    def drop_claims(self, partition: str, claims: Collection[Claim]) -> int:
        """Delete claim rows nothing needs any more."""
        return self.inner.drop_claims(partition, claims)

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
    ) -> Page[Subscription]:
        """One page of records (see Repository.list)."""
        return self.inner.list(
            partition,
            equals=equals,
            page_size=page_size,
            continuation_token=continuation_token,
            before=before,
            since=since,
            rows=rows,
        )

    def iterate(self, partition: str | None = None, **query: Any) -> Iterator[Subscription]:
        """Every record of a partition or the table."""
        return self.inner.iterate(partition, **query)

    def add(
        self,
        item: Subscription,
        *,
        messages: Sequence[OutboxMessage] = (),
        claims: Collection[Claim] = (),
    ) -> Subscription:
        """Insert a new record (Conflict if it exists), with its fact when it owes one."""
        owed, fact = self._owed(item)
        if fact is None:
            return self.inner.add(item, messages=messages, claims=claims)
        return self.inner.add(owed, messages=[*messages, ledger_message([fact])], claims=claims)

    def update(
        self,
        item: Subscription,
        *,
        messages: Sequence[OutboxMessage] = (),
        claims: Collection[Claim] = (),
        releases: Collection[Claim] = (),
    ) -> Subscription:
        """Replace the record if unchanged since read, with its fact when it owes one."""
        owed, fact = self._owed(item)
        if fact is None:
            return self.inner.update(item, messages=messages, claims=claims, releases=releases)
        return self.inner.update(
            owed,
            messages=[*messages, ledger_message([fact])],
            claims=claims,
            releases=releases,
        )

    def save_all(
        self,
        partition: str,
        *,
        adds: Sequence[Subscription] = (),
        updates: Sequence[Subscription] = (),
        messages: Sequence[OutboxMessage] = (),
        claims: Sequence[tuple[Claim, str]] = (),
        releases: Sequence[tuple[Claim, str]] = (),
    ) -> builtins.list[Subscription]:
        """Insert and replace records of one partition with the facts they owe (in one
        transaction when the message fits in it; see the module's docstring)."""
        return self._save_all(
            partition,
            adds=adds,
            updates=updates,
            messages=messages,
            claims=claims,
            releases=releases,
            at=self.clock.now(),
        )

    def _save_all(
        self,
        partition: str,
        *,
        adds: Sequence[Subscription] = (),
        updates: Sequence[Subscription] = (),
        messages: Sequence[OutboxMessage] = (),
        claims: Sequence[tuple[Claim, str]] = (),
        releases: Sequence[tuple[Claim, str]] = (),
        at: datetime,
        force: bool = False,
    ) -> builtins.list[Subscription]:
        writes: builtins.list[tuple[bool, Subscription, LedgerFact | None]] = []
        for is_add, item in [*((True, a) for a in adds), *((False, u) for u in updates)]:
            owed, fact = self._owed(item, at, force=force)
            writes.append((is_add, owed, fact))
        extra = len(messages) + len(claims) + len(releases)
        saved: builtins.list[Subscription] = []
        first = True
        for chunk in _transactions(writes, extra):
            facts = [f for _, _, f in chunk if f is not None]
            mine = [*messages] if first else []
            if facts:
                mine.append(ledger_message(facts))
            saved += self.inner.save_all(
                partition,
                adds=[s for is_add, s, _ in chunk if is_add],
                updates=[s for is_add, s, _ in chunk if not is_add],
                messages=mine,
                claims=claims if first else (),
                releases=releases if first else (),
            )
            first = False
        return saved

    def resend(
        self, partition: str, records: Sequence[Subscription], *, at: datetime | None = None
    ) -> int:
        """Rewrite records of one partition unchanged (If-Match) with a fact of each, dated
        `at` (default now) even when their digest says they were ledgered (the reconciliation,
        the backfill); how many were sent. A record changed since it was read is skipped: the
        write that changed it sent its fact."""
        when = at or self.clock.now()
        done = 0
        for start in range(0, len(records), MAX_OPERATIONS - 1):
            chunk = records[start : start + MAX_OPERATIONS - 1]
            try:
                done += len(self._save_all(partition, updates=chunk, at=when, force=True))
            except ConcurrencyConflict:
                for sub in chunk:  # one changed meanwhile: the others one by one
                    try:
                        self._save_all(partition, updates=[sub], at=when, force=True)
                        done += 1
                    except ConcurrencyConflict:
                        log.info(
                            "subscription %s changed meanwhile: ledgered by that write", sub.id
                        )
        return done

    def _owed(
        self, item: Subscription, now: datetime | None = None, *, force: bool = False
    ) -> tuple[Subscription, LedgerFact | None]:
        """The record as it is written (the digest set) and the fact it owes, if any (with
        `force`, a fact whatever the digest says)."""
        state = PricedState.of(item)
        digest = state.digest()
        if digest == item.ledgered and not force:
            return item, None
        owed = item.model_copy()
        owed.ledgered = digest
        fact = LedgerFact(
            reseller=item.reseller,
            customer_id=item.customer_id,
            subscription_id=item.id,
            at=now or self.clock.now(),
            state=state,
        )
        return owed, fact


def ledger_message(facts: Iterable[LedgerFact]) -> OutboxMessage:
    """The outbox message carrying facts of one customer."""
    return OutboxMessage(queue=Queue.LEDGER, body=LedgerMessage.of(facts).body())


def _fact_chars(fact: LedgerFact) -> int:
    body = LedgerMessage.of([fact]).body()
    return len(json.dumps(body["facts"], separators=(",", ":")))


def _transactions(
    writes: list[tuple[bool, Subscription, LedgerFact | None]], extra: int
) -> Iterator[list[tuple[bool, Subscription, LedgerFact | None]]]:
    """The writes in transactions of at most 100 operations (the first also holds `extra`:
    the caller's messages and claims), each with one message that fits in a row."""
    if not writes:
        if extra:
            yield []
        return
    owes = any(f is not None for _, _, f in writes)
    if len(writes) + extra + (1 if owes else 0) <= MAX_OPERATIONS:
        size = sum(_fact_chars(f) for _, _, f in writes if f is not None)
        if size <= MAX_MESSAGE_CHARS:
            yield writes
            return
    chunk: list[tuple[bool, Subscription, LedgerFact | None]] = []
    room, chars = MAX_OPERATIONS - extra - 1, 0
    for write in writes:
        fact = write[2]
        size = _fact_chars(fact) if fact is not None else 0
        if chunk and (len(chunk) + 1 > room or chars + size > MAX_MESSAGE_CHARS):
            yield chunk
            chunk, room, chars = [], MAX_OPERATIONS - 1, 0
        chunk.append(write)
        chars += size
    yield chunk


def backfill(subscriptions: LedgeredSubscriptions) -> int:
    """Send the facts of every record never ledgered (`ledgered` None: written before the
    ledger existed); how many. One scan of the table, run once (a migration); a record
    changed meanwhile was ledgered by that write.

    The facts are dated the last moment of the month before the migration's: these
    subscriptions existed before the ledger, so the migration's month opens with them
    (opening = closing, no "new" revenue); the month before shows them as its new revenue,
    being the ledger's first."""
    at = month_start(month_of(subscriptions.clock.now())) - timedelta(microseconds=1)
    pending: dict[str, list[Subscription]] = {}
    for sub in subscriptions.iterate():
        if sub.ledgered is None:
            pending.setdefault(sub.customer_id, []).append(sub)
    return sum(subscriptions.resend(c, subs, at=at) for c, subs in pending.items())
