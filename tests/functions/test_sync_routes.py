"""Sync now and the runs API, called directly with in-memory records behind them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest

from functions._http import encode_etag
from shared import bootstrap
from shared.domain.errors import ConcurrencyConflict
from shared.domain.outbox import Queue
from shared.domain.sync import (
    SyncCounts,
    SyncError,
    SyncKind,
    SyncStatus,
    SyncTrigger,
    sync_row_key,
)
from shared.services.sync import runs
from tests.fakes import InMemoryRepository
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, World, build_world
from tests.sync_run_fakes import finish, install_sync_runs


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    install_sync_runs(w.container)
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def repo_of(world: World) -> InMemoryRepository[Any]:
    repo: InMemoryRepository[Any] = world.container.sync_runs
    return repo


def sync_now(
    world: World, role: str = "AccountManager", reseller: str = "demo", **headers: str
) -> func.HttpResponse:
    return call(
        "http_start_sync",
        "POST",
        f"resellers/{reseller}/sync",
        route={"r": reseller},
        token=world.token(role),
        headers=headers,
    )


def list_runs(
    world: World, reseller: str = "demo", role: str = "AccountManager", **params: str
) -> func.HttpResponse:
    return call(
        "http_list_sync_runs",
        "GET",
        f"resellers/{reseller}/sync/runs",
        route={"r": reseller},
        token=world.token(role),
        params=params,
    )


def get_run(
    world: World, run_id: str, reseller: str = "demo", role: str = "AccountManager"
) -> func.HttpResponse:
    return call(
        "http_get_sync_run",
        "GET",
        f"resellers/{reseller}/sync/runs/{run_id}",
        route={"r": reseller, "run": run_id},
        token=world.token(role),
    )


def start_nightly(world: World, reseller: str = "demo") -> Any:
    c = world.container
    run, _ = runs.start(c.sync_runs, c.clock, reseller, SyncTrigger.NIGHTLY, cooldown=timedelta(0))
    return run


# --- Sync now ---------------------------------------------------------------------------------


def test_sync_now_starts_a_full_manual_run_with_its_location_and_queues_its_customer_phase(
    world: World,
):
    resp = sync_now(world)

    assert resp.status_code == 202, resp.get_body()
    body = json_of(resp)
    assert resp.headers["Location"] == f"/api/resellers/demo/sync/runs/{body['id']}"
    assert resp.headers["ETag"]
    assert body["status"] == "Queued"
    assert (body["kind"], body["trigger"]) == ("Full", "Manual")
    assert body["requestedBy"] == "owner@demo.example"
    assert body["queuedAt"] and body["startedAt"] is None and body["finishedAt"] is None
    sent = repo_of(world).sent
    assert [(m.queue, m.body) for m in sent] == [
        (Queue.SYNC_RESELLER, {"reseller": "demo", "runId": body["id"]})
    ]
    assert repo_of(world).claim_owner("demo", runs.ACTIVE) == sync_row_key(body["id"])


def test_sync_now_twice_while_the_run_is_active_answers_the_same_run_and_queues_nothing_more(
    world: World,
):
    first = json_of(sync_now(world))
    world.clock.advance(seconds=5)

    again = sync_now(world, role="DistributorAdmin")

    assert again.status_code == 202
    assert json_of(again)["id"] == first["id"]
    assert again.headers["Location"].endswith(f"/sync/runs/{first['id']}")
    assert len(repo_of(world).sent) == 1
    assert len(repo_of(world).list("demo").items) == 1


def test_sync_now_while_the_nightly_run_is_going_answers_the_nightly_run(world: World):
    nightly = start_nightly(world)

    resp = sync_now(world)

    assert resp.status_code == 202
    assert json_of(resp)["id"] == nightly.id
    assert json_of(resp)["trigger"] == "Nightly"


def test_sync_now_soon_after_the_last_run_finished_is_a_409_saying_when_it_is_possible_again(
    world: World,
):
    run = json_of(sync_now(world))
    finish(repo_of(world), runs.get(repo_of(world), "demo", run["id"]), after=timedelta(minutes=3))
    finished_at = world.clock.now() + timedelta(minutes=3)  # 09:03
    world.clock.advance(minutes=10)  # 09:10: five minutes of the fifteen are left

    refused = sync_now(world)

    assert refused.status_code == 409, refused.get_body()
    assert refused.mimetype == "application/problem+json"
    problem = json_of(refused)
    assert problem["type"] == "/problems/sync-cooling-down"
    possible = (finished_at + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert possible == "2026-01-15T09:18:00Z"
    assert f"possible again at {possible}" in problem["detail"]
    assert "15 minutes" in problem["detail"]
    assert refused.headers["Retry-After"] == str(8 * 60)
    assert len(repo_of(world).sent) == 1  # nothing queued

    world.clock.advance(minutes=8)
    allowed = sync_now(world)
    assert allowed.status_code == 202
    assert json_of(allowed)["id"] != run["id"]


def test_the_cooldown_counts_from_a_failed_run_too_and_a_setting_of_zero_turns_it_off(
    world: World,
):
    finish(repo_of(world), start_nightly(world), SyncStatus.FAILED, after=timedelta(0))
    assert sync_now(world).status_code == 409

    world.container.settings.sync_now_cooldown_minutes = 0
    assert sync_now(world).status_code == 202


def test_the_nightly_start_is_not_subject_to_the_cooldown(world: World):
    finish(repo_of(world), json_run(world, sync_now(world)), after=timedelta(0))

    nightly = start_nightly(world)

    assert nightly.trigger is SyncTrigger.NIGHTLY
    assert repo_of(world).claim_owner("demo", runs.ACTIVE) == sync_row_key(nightly.id)


def json_run(world: World, resp: func.HttpResponse) -> Any:
    return runs.get(repo_of(world), "demo", json_of(resp)["id"])


def test_a_nightly_run_is_full_until_one_succeeded_then_delta_and_sync_now_is_always_full(
    world: World,
):
    first = start_nightly(world)
    assert first.kind is SyncKind.FULL
    finish(repo_of(world), first, SyncStatus.FAILED)
    second = start_nightly(world)
    assert second.kind is SyncKind.FULL  # a failed run is no watermark
    finish(repo_of(world), second)
    third = start_nightly(world)
    assert third.kind is SyncKind.DELTA
    finish(repo_of(world), third)

    world.clock.advance(hours=1)
    assert json_of(sync_now(world))["kind"] == "Full"


def test_sync_now_for_a_reseller_without_a_partner_center_tenant_id_is_a_409_naming_it(
    world: World,
):
    c = world.container
    demo = c.resellers.get("reseller", "demo")
    demo.partner_center_tenant_id = None
    c.resellers.update(demo)

    resp = sync_now(world)

    assert resp.status_code == 409
    assert "partnerCenterTenantId" in json_of(resp)["detail"]
    assert repo_of(world).sent == []


def test_sync_now_for_an_unknown_reseller_is_a_404_even_to_a_distributor_admin(world: World):
    resp = sync_now(world, role="DistributorAdmin", reseller="nobody")
    assert resp.status_code == 404
    assert repo_of(world).sent == []


def test_sync_now_repeated_with_its_idempotency_key_answers_the_same_run_after_it_finished(
    world: World,
):
    first = sync_now(world, **{"Idempotency-Key": "k-1"})
    finish(repo_of(world), json_run(world, first), after=timedelta(0))

    again = sync_now(world, **{"Idempotency-Key": "k-1"})

    assert again.status_code == 202  # not the cooldown's 409: the same request, answered again
    assert json_of(again)["id"] == json_of(first)["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


# --- The runs ---------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_page_by_page_and_only_the_resellers_own(world: World):
    ids = []
    for _ in range(3):
        run = start_nightly(world)
        ids.append(run.id)
        finish(repo_of(world), run)
        world.clock.advance(minutes=1)
    theirs = start_nightly(world, "other")

    first = list_runs(world, pageSize="2")
    assert first.status_code == 200, first.get_body()
    page = json_of(first)
    assert [r["id"] for r in page["items"]] == [ids[2], ids[1]]
    rest = json_of(list_runs(world, pageSize="2", continuationToken=page["continuationToken"]))
    assert [r["id"] for r in rest["items"]] == [ids[0]]
    assert rest["continuationToken"] is None

    as_admin = json_of(list_runs(world, role="DistributorAdmin", reseller="other"))
    assert [r["id"] for r in as_admin["items"]] == [theirs.id]
    assert {r["reseller"] for r in json_of(list_runs(world))["items"]} == {"demo"}


def test_an_unknown_list_parameter_is_a_400_naming_it(world: World):
    resp = list_runs(world, status="Failed")
    assert resp.status_code == 400
    assert [e["field"] for e in json_of(resp)["errors"]] == ["status"]


def test_a_run_is_read_with_its_etag_counts_errors_and_chunks(world: World):
    repo = repo_of(world)
    run = start_nightly(world)
    run.status = SyncStatus.RUNNING
    run.started_at = world.clock.now()
    run.chunks_total, run.chunks_done, run.chunks_failed = 4, 2, 1
    run.counts = SyncCounts(customers_added=2, partner_center_calls=37, throttled_seconds=1.5)
    run.add_error(
        SyncError(
            customer_id=CUST_A,
            customer_name="Alfa s.r.o.",
            tenant_id="11111111-1111-1111-1111-111111111111",
            message="Partner Center answered 500 for its subscriptions",
            at=world.clock.now(),
        )
    )
    saved = repo.update(run)

    resp = get_run(world, run.id)

    assert resp.status_code == 200, resp.get_body()
    assert resp.headers["ETag"] == encode_etag(saved.etag or "")
    body = json_of(resp)
    assert body["status"] == "Running"
    assert (body["chunksTotal"], body["chunksDone"], body["chunksFailed"]) == (4, 2, 1)
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), f) for f in SyncCounts.model_fields}
    assert set(body["counts"]) == camel
    assert body["counts"]["customersAdded"] == 2
    assert body["counts"]["partnerCenterCalls"] == 37
    assert body["counts"]["throttledSeconds"] == 1.5
    assert body["errors"] == [
        {
            "customerId": CUST_A,
            "customerName": "Alfa s.r.o.",
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "message": "Partner Center answered 500 for its subscriptions",
            "at": "2026-01-15T09:00:00Z",
        }
    ]
    assert body["errorsTotal"] == 1
    assert body["failureReason"] is None


@pytest.mark.parametrize("run_id", ["01JCXSTA00000000000000000A", "not-a-run", "a/b"])
def test_a_run_that_is_not_the_resellers_is_a_404(world: World, run_id: str):
    theirs = start_nightly(world, "other")
    assert get_run(world, theirs.id).status_code == 404  # another reseller's run, asked as demo
    assert get_run(world, run_id).status_code == 404


def test_another_resellers_account_manager_cannot_see_or_start_a_sync(world: World):
    theirs = start_nightly(world, "other")
    assert sync_now(world, reseller="other").status_code == 404
    assert list_runs(world, reseller="other").status_code == 404
    assert get_run(world, theirs.id, reseller="other").status_code == 404
    assert len(repo_of(world).list("other").items) == 1


# --- Starting and releasing, as the engine and the timer use them ---------------------------


def test_a_run_that_finished_without_giving_up_its_claim_does_not_block_the_next_start(
    world: World,
):
    repo = repo_of(world)
    stuck = start_nightly(world)
    stuck.status, stuck.finished_at = SyncStatus.FAILED, world.clock.now()
    repo.update(stuck)  # finished, but not through runs.release: the claim stays

    world.clock.advance(hours=1)
    nxt = start_nightly(world)

    assert nxt.id != stuck.id
    assert repo.claim_owner("demo", runs.ACTIVE) == sync_row_key(nxt.id)


def test_release_refuses_a_run_that_has_not_finished(world: World):
    with pytest.raises(ValueError, match="not finished"):
        runs.release(repo_of(world), start_nightly(world))


def test_release_of_a_stale_copy_is_a_conflict_and_keeps_the_claim(world: World):
    repo = repo_of(world)
    run = start_nightly(world)
    stale = run.model_copy()
    run.status = SyncStatus.RUNNING
    repo.update(run)
    stale.status, stale.finished_at = SyncStatus.SUCCEEDED, world.clock.now()

    with pytest.raises(ConcurrencyConflict):
        runs.release(repo, stale)
    assert repo.claim_owner("demo", runs.ACTIVE) == sync_row_key(run.id)


def test_last_complete_is_the_newest_succeeded_run(world: World):
    repo = repo_of(world)
    assert runs.last_complete(repo, "demo") is None
    ok = start_nightly(world)
    finish(repo, ok)
    world.clock.advance(minutes=5)
    finish(repo, start_nightly(world), SyncStatus.FAILED)
    world.clock.advance(minutes=5)
    start_nightly(world)  # active

    found = runs.last_complete(repo, "demo")

    assert found is not None and found.id == ok.id
    assert runs.last_complete(repo, "other") is None
