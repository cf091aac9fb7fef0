"""Recovery with fakes: failure kinds and retry, claim rows, the watchdog."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.claims import Claim
from shared.domain.customers import CustomerStatus, CustomerUpdate
from shared.domain.errors import (
    ClaimTaken,
    ConflictingFields,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.domain.failures import Failure, FailureKind, failure_kind
from shared.domain.outbox import Queue
from shared.services import customers, watchdog
from tests.unit.test_customers import OWNER, World


@pytest.fixture
def w() -> World:
    return World()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (UpstreamRejected("bad address", code="2000", status=400), FailureKind.REFUSED),
        (UpstreamRejected("domain taken", code="1001", status=409), FailureKind.REFUSED),
        (UpstreamRejected("token expired", status=401), FailureKind.TRANSIENT),
        (UpstreamRejected("not allowed", status=403), FailureKind.TRANSIENT),
        (UpstreamRejected("slow down", status=429), FailureKind.TRANSIENT),
        (UpstreamUnavailable("503"), FailureKind.TRANSIENT),
        (TimeoutError(), FailureKind.TRANSIENT),
    ],
)
def test_only_a_definite_refusal_of_the_request_is_a_refusal(error, kind):
    assert failure_kind(error) is kind


def _provision_and_give_up(w: World, customer: customers.Customer) -> customers.Customer:
    """Run the step as the queue edge does: a refusal is recorded with its kind."""
    try:
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    except UpstreamRejected as exc:
        customers.give_up(w.book, w.message(customer), Failure.of(exc))
    return w.repo.get("demo", customer.id)


def test_retry_after_a_refusal_and_a_fix_is_a_new_request_and_ends_active(w):
    customer = w.create()
    w.pc.fail_create_with = UpstreamRejected("Invalid address", code="2000", status=400)
    failed = _provision_and_give_up(w, customer)
    assert failed.status is CustomerStatus.FAILED
    assert failed.failure_kind is FailureKind.REFUSED
    w.pc.fail_create_with = None  # the reseller fixes the data (a PATCH), Partner Center agrees

    fixed = customers.update(
        w.book, OWNER, "demo", failed.id, failed.etag, CustomerUpdate(industry="Retail")
    )
    retried = customers.retry(w.book, OWNER, "demo", fixed.id, fixed.etag)
    assert retried.request_id != failed.request_id
    assert retried.failure_kind is None and retried.failure_reason is None

    active = _provision_and_give_up(w, retried)
    assert active.status is CustomerStatus.ACTIVE
    assert w.pc.create_calls == [failed.request_id, retried.request_id]


def test_retry_after_a_transient_failure_repeats_the_same_request(w):
    customer = w.create()
    w.pc.fail_create_with = UpstreamUnavailable("Partner Center is down")
    with pytest.raises(UpstreamUnavailable) as err:
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    customers.give_up(w.book, w.message(customer), Failure.of(err.value, prefix="gave up: "))
    failed = w.repo.get("demo", customer.id)
    assert failed.failure_kind is FailureKind.TRANSIENT
    retried = customers.retry(w.book, OWNER, "demo", failed.id)
    assert retried.request_id == failed.request_id


def test_a_refused_tenant_name_is_fixed_by_renaming_then_retrying(w):
    customer = w.create()
    w.pc.taken.add("alfanova.onmicrosoft.com")  # someone else's tenant meanwhile
    failed = _provision_and_give_up(w, customer)
    assert failed.failure_kind is FailureKind.REFUSED
    w.create("betanova")
    with pytest.raises(ConflictingFields):  # the renamed-to name is held by another of ours
        customers.update(
            w.book, OWNER, "demo", failed.id, failed.etag, CustomerUpdate(tenant_name="betanova")
        )
    renamed = customers.update(
        w.book, OWNER, "demo", failed.id, failed.etag, CustomerUpdate(tenant_name="gamanova")
    )
    assert w.repo.claim_owner("demo", Claim("domain", "gamanova.onmicrosoft.com")) == failed.id
    assert w.repo.claim_owner("demo", Claim("domain", "alfanova.onmicrosoft.com")) is None
    retried = customers.retry(w.book, OWNER, "demo", renamed.id, renamed.etag)
    active = _provision_and_give_up(w, retried)
    assert active.status is CustomerStatus.ACTIVE and active.domain == "gamanova.onmicrosoft.com"
    assert w.repo.claim_owner("demo", Claim("tenant", active.tenant_id or "")) == failed.id


def test_the_tenant_name_of_a_customer_not_failed_cannot_change(w):
    customer = w.create()
    with pytest.raises(Exception, match="only while the customer is Failed"):
        customers.update(
            w.book, OWNER, "demo", customer.id, customer.etag, CustomerUpdate(tenant_name="x1")
        )


# --- claim rows --------------------------------------------------------------------------------


def test_a_create_racing_past_the_check_loses_on_the_claim_and_stores_nothing(w):
    first = w.create()
    # The second writer checked before the first committed: only the claim row stops it.
    w.book.customers.claim_owner = lambda *a: None  # type: ignore[method-assign]
    with pytest.raises(ConflictingFields, match=first.id) as err:
        w.create()
    assert [e.field for e in err.value.errors] == ["tenantName"]
    assert list(w.repo.rows) == [("demo", first.id)] and len(w.repo.sent) == 1


def test_the_fake_refuses_a_claim_held_by_another_record_atomically(w):
    first = w.create()
    second = w.create("betanova")
    second.domain = "alfanova.onmicrosoft.com"
    with pytest.raises(ClaimTaken) as err:
        w.repo.update(second, claims={Claim("domain", second.domain)})
    assert err.value.owner == first.id
    assert w.repo.get("demo", second.id).domain == "betanova.onmicrosoft.com"


# --- the watchdog ------------------------------------------------------------------------------


def test_a_stale_provisioning_is_re_enqueued_once_then_failed_with_an_actionable_reason(w):
    customer = w.create()
    source = customers.ProvisioningCustomers(w.book)
    sent = len(w.repo.sent)

    w.clock.advance(minutes=10)
    report = watchdog.watch([source], w.clock.now())
    assert report.in_flight == {"customer": 1} and report.nudged == []

    w.clock.advance(minutes=25)  # 35 minutes: past the 30-minute deadline
    report = watchdog.watch([source], w.clock.now())
    assert [i.id for i in report.nudged] == [customer.id]
    [message] = w.repo.sent[sent:]
    assert message.queue is Queue.PROVISION_CUSTOMER
    nudged = w.repo.get("demo", customer.id)
    assert nudged.status is CustomerStatus.PROVISIONING
    assert nudged.request_id == customer.request_id  # the same request, repeated

    w.clock.advance(minutes=10)
    assert watchdog.watch([source], w.clock.now()).failed == []  # once, then a deadline
    assert len(w.repo.sent) == sent + 1

    w.clock.advance(minutes=25)
    report = watchdog.watch([source], w.clock.now())
    assert [i.id for i in report.failed] == [customer.id]
    failed = w.repo.get("demo", customer.id)
    assert failed.status is CustomerStatus.FAILED
    assert failed.failure_kind is FailureKind.TRANSIENT
    assert "retry" in (failed.failure_reason or "") and "30 minutes" in (
        failed.failure_reason or ""
    )
    assert customers.retry(w.book, OWNER, "demo", failed.id).request_id == customer.request_id


def test_a_give_up_that_failed_leaves_provisioning_which_the_watchdog_fails(w):
    customer = w.create()
    w.pc.fail_create_with = UpstreamRejected("Invalid address", status=400)
    w.repo.update = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("storage down"))  # type: ignore[method-assign]
    with pytest.raises(UpstreamRejected):
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    with pytest.raises(RuntimeError):
        customers.give_up(w.book, w.message(customer), Failure(FailureKind.REFUSED, "refused"))
    del w.repo.update
    source = customers.ProvisioningCustomers(w.book)
    for _ in range(2):
        w.clock.advance(minutes=31)
        watchdog.watch([source], w.clock.now())
    assert w.repo.get("demo", customer.id).status is CustomerStatus.FAILED


def test_retry_accepts_a_stale_provisioning_but_not_a_fresh_one(w):
    customer = w.create()
    with pytest.raises(Exception, match="longer than 30 minutes"):
        customers.retry(w.book, OWNER, "demo", customer.id)
    w.clock.advance(minutes=31)
    sent = len(w.repo.sent)
    retried = customers.retry(w.book, OWNER, "demo", customer.id)
    assert retried.status is CustomerStatus.PROVISIONING and len(w.repo.sent) == sent + 1
    assert retried.request_id == customer.request_id
    assert retried.status_since == w.clock.now()
    w.book.stuck_after = timedelta(minutes=5)
    assert customers.ProvisioningCustomers(w.book).deadline == timedelta(minutes=5)
