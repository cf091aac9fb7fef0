"""One-off upgrades of stored data, each run once (and safe to run again) by housekeeping.

A step that a new version of the code relies on — claim rows for records written before claims
existed, outbox markers for outbox rows committed before the sweeper followed markers — is a
`Migration`. `timer_housekeeping` runs the pending ones at the start of every pass (`make run`'s
seed too), so a deployment upgrades its data within one pass; a finished one is remembered in
the Migrations table and costs one point read afterwards. Steps are idempotent: two instances
running one at once do the same work twice, never different work.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import AwareDatetime

from shared.domain.errors import Conflict
from shared.domain.model import Record
from shared.ports import Clock, Repository

log = logging.getLogger(__name__)

PARTITION = "platform"


@dataclass(frozen=True)
class Migration:
    """A named, idempotent upgrade; `run` returns how many records it changed."""

    name: str
    run: Callable[[], int]


class MigrationRecord(Record):
    """A migration that has finished."""

    name: str
    done_at: AwareDatetime
    changed: int


def key(record: MigrationRecord) -> tuple[str, str]:
    """Where a finished migration is remembered."""
    return PARTITION, record.name


def run_pending(
    done: Repository[MigrationRecord], migrations: Sequence[Migration], clock: Clock
) -> list[str]:
    """Run every migration not yet remembered as done, in order; the names of those run."""
    ran: list[str] = []
    for migration in migrations:
        if done.find(PARTITION, migration.name) is not None:
            continue
        changed = migration.run()
        log.info("migration %s finished: %d record(s) changed", migration.name, changed)
        # Conflict: another instance finished it at the same time (the steps are idempotent).
        with contextlib.suppress(Conflict):
            done.add(MigrationRecord(name=migration.name, done_at=clock.now(), changed=changed))
        ran.append(migration.name)
    return ran
