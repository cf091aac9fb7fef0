"""Sync run records in memory, for route and service tests of starting and reading runs."""

from __future__ import annotations

from datetime import timedelta

from shared.bootstrap import Container
from shared.domain.sync import SyncChunk, SyncRun, SyncStatus, chunk_row_key, sync_row_key
from shared.services.sync import runs
from tests.fakes import InMemoryRepository


def install_sync_runs(c: Container) -> InMemoryRepository[SyncRun]:
    """Put in-memory SyncRuns and SyncChunks repositories into the container."""
    repo = InMemoryRepository[SyncRun](lambda r: (r.reseller, sync_row_key(r.id)))
    c.__dict__["sync_runs"] = repo
    c.__dict__["sync_chunks"] = InMemoryRepository[SyncChunk](
        lambda k: (k.run_id, chunk_row_key(k.number))
    )
    return repo


def finish(
    repo: InMemoryRepository[SyncRun],
    run: SyncRun,
    status: SyncStatus = SyncStatus.SUCCEEDED,
    *,
    after: timedelta = timedelta(minutes=2),
) -> SyncRun:
    """End a run as the engine does (`runs.release`), `after` its queueing."""
    current = repo.get(run.reseller, sync_row_key(run.id))
    current.status = status
    current.started_at = current.queued_at
    current.finished_at = current.queued_at + after
    return runs.release(repo, current)
