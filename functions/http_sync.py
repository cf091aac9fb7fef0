"""Sync with Partner Center: Sync now, and the runs of a reseller."""

from __future__ import annotations

from datetime import timedelta

import azure.functions as func
from pydantic import ConfigDict

from functions._http import Call, PageQuery, Reply, http, problem
from shared.bootstrap import container
from shared.domain.identity import RESELLER_PARTITION
from shared.domain.model import Page
from shared.domain.sync import SyncRun, SyncTrigger
from shared.services.access import Action, allow
from shared.services.sync import runs
from shared.services.sync.runs import SyncCoolingDown, SyncRunPublic

bp = func.Blueprint()
TAGS = ("sync",)


class SyncRunQuery(PageQuery):
    """Paging of the runs (an unknown parameter is a 400, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


def _location(run: SyncRun) -> dict[str, str]:
    return {"Location": f"/api/resellers/{run.reseller}/sync/runs/{run.id}"}


@http(
    bp,
    "resellers/{r}/sync",
    ["POST"],
    name="http_start_sync",
    summary="Sync now: start a full sync of the reseller with Partner Center (202 with the "
    "run's Location), or answer the run already going; refused (409) for "
    "SYNC_NOW_COOLDOWN_MINUTES after the last run finished.",
    response=SyncRunPublic,
    status=202,
    tags=TAGS,
    errors=(409,),
    access=allow(Action.SYNC),
    idempotent=True,
)
def start_sync(call: Call) -> Reply | func.HttpResponse:
    """Start a Manual run, or answer the active one."""
    c = container()
    reseller = c.resellers.get(RESELLER_PARTITION, call.route["r"])
    reseller.require_tenant_id()
    try:
        run, _ = runs.start(
            c.sync_runs,
            c.clock,
            reseller.slug,
            SyncTrigger.MANUAL,
            call.principal.email,
            cooldown=timedelta(minutes=c.settings.sync_now_cooldown_minutes),
            run_id=call.new_id(),
        )
    except SyncCoolingDown as exc:
        wait = (exc.possible_at - c.clock.now()).total_seconds()
        return problem(
            409,
            "sync-cooling-down",
            exc.detail,
            instance=f"/api/resellers/{reseller.slug}/sync",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    return Reply(runs.present(run), status=202, headers=_location(run), etag=run.etag)


@http(
    bp,
    "resellers/{r}/sync/runs",
    ["GET"],
    name="http_list_sync_runs",
    summary="The reseller's sync runs, newest first.",
    query=SyncRunQuery,
    response=Page[SyncRunPublic],
    tags=TAGS,
    errors=(400,),
    access=allow(Action.SYNC),
)
def list_sync_runs(call: Call) -> Page[SyncRunPublic]:
    """A page of runs."""
    q = call.query(SyncRunQuery)
    c = container()
    reseller = c.resellers.get(RESELLER_PARTITION, call.route["r"])
    page = runs.list_runs(c.sync_runs, reseller.slug, q.page_size, q.continuation_token)
    return runs.present_page(page)


@http(
    bp,
    "resellers/{r}/sync/runs/{run}",
    ["GET"],
    name="http_get_sync_run",
    summary="One sync run: status, counts, Partner Center calls, errors with their customer.",
    response=SyncRunPublic,
    tags=TAGS,
    access=allow(Action.SYNC),
)
def get_sync_run(call: Call) -> Reply:
    """One run, with its ETag."""
    run = runs.get(container().sync_runs, call.route["r"], call.route["run"])
    return Reply(runs.present(run), etag=run.etag)
