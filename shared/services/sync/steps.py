"""The `sync-reseller` queue step: the run's customer phase, or one of its chunks."""

from __future__ import annotations

from shared.domain.sync import SyncMessage
from shared.ports import PartnerCenter
from shared.services.sync.book import SyncBook
from shared.services.sync.chunks import run_chunk
from shared.services.sync.phase import customer_phase


def handle(book: SyncBook, partner_center: PartnerCenter, message: SyncMessage) -> None:
    """Run one `sync-reseller` message (idempotent: a redelivery resumes or does nothing)."""
    if message.chunk is None:
        customer_phase(book, partner_center, message)
    else:
        run_chunk(book, partner_center, message)
