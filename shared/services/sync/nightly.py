"""The nightly timer: one run per reseller that has a Partner Center tenant id."""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.domain.identity import RESELLER_PARTITION
from shared.domain.sync import SyncRun, SyncTrigger
from shared.services.sync import runs
from shared.services.sync.book import SyncBook

log = logging.getLogger(__name__)


def start_nightly(book: SyncBook) -> list[SyncRun]:
    """Queue a run for every reseller with a Partner Center tenant id (one already active is
    left to finish); the runs started. One reseller's trouble does not stop the others."""
    started: list[SyncRun] = []
    for reseller in book.resellers.iterate(RESELLER_PARTITION):
        if not reseller.partner_center_tenant_id:
            continue
        try:
            run, new = runs.start(
                book.runs, book.clock, reseller.slug, SyncTrigger.NIGHTLY, cooldown=timedelta(0)
            )
        except Exception:
            log.exception("the nightly sync of %s could not start", reseller.slug)
            continue
        if new:
            started.append(run)
    return started
