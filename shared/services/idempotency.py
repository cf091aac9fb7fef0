"""Idempotent creation: the same key and request get the same answer, once.

Insert-if-absent is the lock: the first request with a key inserts an in-progress record
(a second one racing it gets a Conflict from storage), runs, and stores its answer; a repeat
with the same key and the same request replays the stored answer; the same key with a
different request is refused. A failed run deletes its record so that a retry runs again.

A first run that died after committing its work but before storing its answer leaves its
record in progress; once the lock lapses another run takes it over. That run gets the same
`resource_id` the first was given, so the action finds what the first one created and answers
with it rather than creating a second one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta

from shared.domain.errors import Conflict, DomainError, FieldError, ValidationFailed
from shared.domain.idempotency import IdempotencyRecord, IdempotencyStatus, StoredResponse
from shared.ports import Clock, Repository

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
# How long a crashed first request keeps the key locked before another may take it over.
IN_PROGRESS_LOCK = timedelta(minutes=5)


def _sha256(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def key_hash(raw_key: str, *, caller: str, operation: str) -> str:
    """The stored hash of a client's key, private to one caller and one operation."""
    if not 1 <= len(raw_key) <= 255 or not raw_key.isprintable() or not raw_key.isascii():
        raise ValidationFailed([FieldError(HEADER, "must be 1-255 printable ASCII characters")])
    return _sha256(caller, operation, raw_key)


def request_hash(method: str, path: str, body: bytes) -> str:
    """A fingerprint of the request, to tell a repeat from a different request."""
    return _sha256(method.upper(), path, hashlib.sha256(body).hexdigest())


def _claim(
    repo: Repository[IdempotencyRecord], record: IdempotencyRecord
) -> IdempotencyRecord | StoredResponse:
    """Take the lock (the claimed record), or the stored answer of an identical request."""
    for _ in range(3):
        try:
            return repo.add(record)
        except Conflict:
            pass
        existing = repo.find(record.scope, record.key_hash)
        if existing is None:
            continue  # deleted by a failed first run between our insert and read
        if existing.request_hash != record.request_hash:
            raise Conflict(f"this {HEADER} was already used for a different request")
        if existing.status is IdempotencyStatus.COMPLETED and existing.response is not None:
            if record.created_at < existing.expires_at:
                return existing.response
        elif record.created_at < existing.locked_until:
            raise Conflict(f"a request with this {HEADER} is still being processed; retry later")
        # Expired, or its owner died: take it over (the ETag makes only one taker win).
        record.etag = existing.etag
        if existing.status is IdempotencyStatus.IN_PROGRESS:
            # The dead owner may have created its resource under this id.
            record.resource_id = existing.resource_id
        try:
            return repo.update(record)
        except Conflict:
            continue
    raise Conflict(f"a request with this {HEADER} is still being processed; retry later")


def run_once(
    repo: Repository[IdempotencyRecord],
    clock: Clock,
    *,
    scope: str,
    key: str,
    request: str,
    ttl: timedelta,
    action: Callable[[str], StoredResponse],
) -> tuple[StoredResponse, bool]:
    """Run `action(resource_id)` once per (scope, key); returns the answer, whether replayed.

    The action must give a resource it creates the id it is passed, and answer with the
    existing one when that id is already taken (a takeover of a run that died).
    """
    now = clock.now()
    record = IdempotencyRecord(
        scope=scope,
        key_hash=key,
        request_hash=request,
        created_at=now,
        locked_until=now + IN_PROGRESS_LOCK,
        expires_at=now + ttl,
    )
    claimed = _claim(repo, record)
    if isinstance(claimed, StoredResponse):
        return claimed, True
    try:
        response = action(claimed.resource_id)
    except BaseException:
        _release(repo, claimed)
        raise
    if response.status >= 500:
        _release(repo, claimed)
        return response, False
    claimed.status = IdempotencyStatus.COMPLETED
    claimed.response = response
    try:
        repo.update(claimed)
    except DomainError:
        # The work is done; failing to remember it only means a repeat is not recognised.
        log.warning("could not store the idempotent answer", exc_info=True)
    return response, False


def _release(repo: Repository[IdempotencyRecord], record: IdempotencyRecord) -> None:
    try:
        repo.delete(record)
    except DomainError:
        log.warning("could not release an idempotency key", exc_info=True)
