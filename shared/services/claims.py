"""Claim rows for records written before claims existed (a one-off, idempotent backfill)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from shared.domain.claims import Claim
from shared.domain.errors import ClaimTaken, ConcurrencyConflict
from shared.ports import Repository

log = logging.getLogger(__name__)


class Claimant(Protocol):
    """A record that holds unique values."""

    def claims(self) -> set[Claim]:
        """The unique values it holds in its partition."""
        ...


def backfill(repo: Repository[Any], partition: str, records: Iterable[Any]) -> int:
    """Give each record the claim rows it lacks; returns how many records got some.

    A value two records hold (possible only in data from before claims) is logged as an error
    for a person to settle; the first record keeps it.
    """
    fixed = 0
    for record in records:
        missing = {c for c in record.claims() if repo.claim_owner(partition, c) is None}
        if not missing:
            continue
        try:
            repo.update(record, claims=missing)
            fixed += 1
        except ClaimTaken as exc:
            log.error("duplicate %s %s in %s: settle it by hand", exc.kind, exc.value, partition)
        except ConcurrencyConflict:
            pass  # changed meanwhile: the writer of the change took the claims it needed
    return fixed
