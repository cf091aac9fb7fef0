"""The access decision, and idempotent runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.domain.idempotency import IdempotencyRecord, StoredResponse
from shared.domain.identity import DISTRIBUTOR, Principal, Role, SignInKind
from shared.services import access, idempotency
from shared.services.access import Action, Scope
from tests.fakes import FakeClock, InMemoryRepository

A, B = "01JCXSTA00000000000000000A", "01JCXSTB00000000000000000B"


def principal(role: Role, reseller: str = "demo", customer: str | None = None) -> Principal:
    return Principal("u1", reseller, customer, role, "x@y.example", SignInKind.PLATFORM)


@pytest.mark.parametrize(
    ("who", "scope", "action", "outcome"),
    [
        (principal(Role.ACCOUNT_MANAGER), Scope("demo"), Action.MANAGE_USERS, None),
        (principal(Role.ACCOUNT_MANAGER), Scope("other"), Action.READ_RESELLER, NotFound),
        (principal(Role.SALES), Scope("demo"), Action.MANAGE_USERS, Forbidden),
        (principal(Role.SALES), Scope("other"), Action.MANAGE_USERS, NotFound),  # 404 before 403
        (principal(Role.CUSTOMER_ADMIN, customer=A), Scope("demo", A), Action.MANAGE_USERS, None),
        (
            principal(Role.CUSTOMER_ADMIN, customer=A),
            Scope("demo", B),
            Action.READ_RESELLER,
            NotFound,
        ),
        (principal(Role.CUSTOMER_READER, customer=A), Scope("demo"), Action.READ_USERS, Forbidden),
        (
            principal(Role.DISTRIBUTOR_ADMIN, DISTRIBUTOR),
            Scope("any", B),
            Action.MANAGE_USERS,
            None,
        ),
        (principal(Role.ACCOUNT_MANAGER), Scope(), Action.LIST_RESELLERS, Forbidden),
    ],
)
def test_decide(who, scope, action, outcome):
    if outcome is None:
        access.decide(who, scope, action)
    else:
        with pytest.raises(outcome):
            access.decide(who, scope, action)


def test_a_customer_user_never_sees_the_resellers_own_records():
    with pytest.raises(NotFound):
        access.ensure_visible(principal(Role.CUSTOMER_ADMIN, customer=A), "demo", None)
    access.ensure_visible(principal(Role.ACCOUNT_MANAGER), "demo", None)


def test_only_reseller_and_distributor_staff_see_cost():
    assert access.sees_cost(principal(Role.READ_ONLY))
    assert not access.sees_cost(principal(Role.CUSTOMER_ADMIN, customer=A))
    assert not access.sees_cost(None)


@pytest.fixture
def repo():
    return InMemoryRepository[IdempotencyRecord](lambda r: (r.scope, r.key_hash))


def run(repo, clock, request="r1", action=None):
    return idempotency.run_once(
        repo,
        clock,
        scope="demo",
        key="k",
        request=request,
        ttl=timedelta(hours=24),
        action=action or (lambda _id: StoredResponse(status=201, body='{"id": 1}')),
    )


def test_same_key_same_request_runs_once_and_replays():
    repo, clock, calls = InMemoryRepository(lambda r: (r.scope, r.key_hash)), FakeClock(), []

    def action(_id):
        calls.append(1)
        return StoredResponse(status=201, body=f'{{"n": {len(calls)}}}')

    first = run(repo, clock, action=action)
    second = run(repo, clock, action=action)
    assert calls == [1] and first == (second[0], False) and second[1] is True


def test_same_key_different_request_is_a_conflict(repo):
    run(repo, FakeClock())
    with pytest.raises(Conflict, match="different request"):
        run(repo, FakeClock(), request="r2")


def test_in_progress_key_is_a_conflict_until_its_lock_lapses(repo):
    clock = FakeClock()

    def reentrant(_id):
        with pytest.raises(Conflict, match="still being processed"):
            run(repo, clock)
        return StoredResponse(status=201)

    run(repo, clock, action=reentrant)


def test_failure_releases_the_key_and_expiry_allows_a_rerun(repo):
    clock = FakeClock()

    def boom(_id):
        raise ValidationFailed([])

    with pytest.raises(ValidationFailed):
        run(repo, clock, action=boom)
    assert repo.rows == {}
    run(repo, clock)
    clock.advance(hours=25)
    assert run(repo, clock)[1] is False


def test_a_takeover_of_a_dead_run_gets_the_resource_id_the_dead_run_was_given(repo):
    clock, given = FakeClock(), []

    def dies_after_committing(resource_id):
        given.append(resource_id)
        raise KeyboardInterrupt  # stands for the process dying; the record stays in progress

    original_delete, repo.delete = repo.delete, lambda item: None  # a dead run releases nothing
    with pytest.raises(KeyboardInterrupt):
        run(repo, clock, action=dies_after_committing)
    repo.delete = original_delete
    clock.advance(minutes=6)
    run(
        repo,
        clock,
        action=lambda resource_id: given.append(resource_id) or StoredResponse(status=201),
    )
    clock.advance(hours=25)  # a new run after expiry is a new request: a new resource
    run(
        repo,
        clock,
        action=lambda resource_id: given.append(resource_id) or StoredResponse(status=201),
    )
    assert given[0] == given[1] != given[2]


def test_key_must_be_printable_ascii():
    with pytest.raises(ValidationFailed):
        idempotency.key_hash("é" * 3, caller="u", operation="op")
    assert idempotency.key_hash("a", caller="u", operation="op") != idempotency.key_hash(
        "a", caller="v", operation="op"
    )
