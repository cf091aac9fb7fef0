"""Customer routes and the provisioning queue trigger, called directly with fakes behind them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from functions._http import encode_etag
from shared import bootstrap
from shared.domain.customers import CustomerStatus
from shared.domain.errors import UpstreamRejected, UpstreamUnavailable
from tests.app_index import functions
from tests.customer_bodies import new_customer_body
from tests.fakes import Crash, FakeCustomerPartnerCenter, reseller_ids
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, CUST_B, CUST_OTHER, World, add_customers, build_world


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    add_customers(w)
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def pc_of(world: World) -> FakeCustomerPartnerCenter:
    fake: FakeCustomerPartnerCenter = world.container.partner_center
    return fake


def create(world: World, body: Any, role: str = "Sales", **headers: str) -> func.HttpResponse:
    return call(
        "http_create_customer",
        "POST",
        "resellers/demo/customers",
        route={"r": "demo"},
        token=world.token(role),
        body=body,
        headers=headers,
    )


def queue_trigger(name: str) -> Any:
    for f in functions():
        if f.get_function_name() == name:
            return f.get_user_function()
    raise KeyError(name)


def deliver(world: World, dequeue_count: int = 1) -> None:
    """Run the provisioning trigger on every message the create wrote to the outbox."""
    repo = world.container.customers
    for message in list(repo.sent):
        msg = QueueMessage(
            id=message.id, body=json.dumps(message.payload()).encode(), dequeue_count=dequeue_count
        )
        queue_trigger("queue_provision_customer")(msg)


def test_create_answers_202_with_location_and_the_same_key_replays_one_customer(world):
    body = new_customer_body("newfirm")
    first = create(world, body, **{"Idempotency-Key": "k1"})
    assert first.status_code == 202, first.get_body()
    created = json_of(first)
    assert created["status"] == "Provisioning"
    assert first.headers["Location"] == f"/api/resellers/demo/customers/{created['id']}"
    again = create(world, body, **{"Idempotency-Key": "k1"})
    assert again.status_code == 202 and json_of(again)["id"] == created["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other_body = create(world, new_customer_body("another"), **{"Idempotency-Key": "k1"})
    assert other_body.status_code == 409
    repo = world.container.customers
    assert [c.id for c in repo.rows.values() if c.domain == "newfirm.onmicrosoft.com"] == [
        created["id"]
    ]
    assert len(repo.sent) == 1


def _post_customer(world: World, route: str, body: Any, **headers: str) -> func.HttpResponse:
    name = "http_import_customer" if route.endswith("import") else "http_create_customer"
    return call(
        name,
        "POST",
        f"resellers/demo/{route}",
        route={"r": "demo"},
        token=world.token("Sales"),
        body=body,
        headers=headers,
    )


def _existing_tenant(world: World) -> dict[str, str]:
    tenant = pc_of(world).add_tenant(reseller_ids("demo")[0], "existing.onmicrosoft.com")
    return {"tenantId": tenant.id}


@pytest.mark.parametrize(("route", "status"), [("customers", 202), ("customers/import", 201)])
def test_a_key_whose_first_run_died_after_committing_answers_with_the_one_customer_it_made(
    world, route, status
):
    body = _existing_tenant(world) if route.endswith("import") else new_customer_body("takeover")
    customers = world.container.customers
    before = set(customers.rows)
    keys = world.container.idempotency

    def killed(item: Any, **kw: Any) -> Any:
        raise Crash("the process died before the key's answer was stored")

    keys.update = killed  # the first run commits its customer, then dies
    with pytest.raises(Crash):
        _post_customer(world, route, body, **{"Idempotency-Key": "k-dead"})
    del keys.update
    [made] = [customers.rows[k] for k in set(customers.rows) - before]
    world.clock.advance(minutes=6)  # the dead run's lock lapses; the repeat takes the key over

    again = _post_customer(world, route, body, **{"Idempotency-Key": "k-dead"})

    assert again.status_code == status, again.get_body()
    assert json_of(again)["id"] == made.id
    assert set(customers.rows) - before == {(made.reseller, made.id)}


def test_invalid_fields_are_all_named_and_nothing_is_stored(world):
    repo = world.container.customers
    before = dict(repo.rows)
    bad = new_customer_body(
        "ok",
        companyId="25596642",
        address={"street": "U 1", "city": "Praha", "postcode": "99", "country": "CZ"},
        contact={"firstName": "A", "lastName": "B", "email": "a@", "phone": "+1"},
    )
    resp = create(world, bad)
    assert resp.status_code == 400 and resp.mimetype == "application/problem+json"
    fields = sorted(e["field"] for e in json_of(resp)["errors"])
    assert fields == ["address.postcode", "companyId", "contact.email", "contact.phone"]
    assert repo.rows == before and repo.sent == []
    assert pc_of(world).create_calls == []


def test_a_taken_tenant_name_is_409_naming_the_field(world):
    pc_of(world).taken.add("busy.onmicrosoft.com")
    resp = create(world, new_customer_body("Busy"))
    assert resp.status_code == 409 and resp.mimetype == "application/problem+json"
    assert json_of(resp)["errors"] == [
        {
            "field": "tenantName",
            "message": "busy.onmicrosoft.com is already taken; choose another name",
        }
    ]
    assert world.container.customers.sent == []


def test_partner_center_down_is_503_with_retry_after(world):
    pc_of(world).fail_domain_check_with = UpstreamUnavailable("down", retry_after=7)
    resp = create(world, new_customer_body("later"))
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"


@pytest.mark.parametrize(
    ("name", "method", "path", "route", "params", "status"),
    [
        ("http_get_customer", "GET", "x", {"r": "demo", "c": "../etc"}, {}, 404),
        (
            "http_get_customer",
            "GET",
            "x",
            {"r": "demo", "c": "01JCXSTA0000000000000000A%"},
            {},
            404,
        ),
        ("http_get_customer", "GET", "x", {"r": "DEMO!", "c": CUST_A}, {}, 404),
        ("http_check_domain", "GET", "x", {"r": "demo", "name": "a.b"}, {}, 400),
        ("http_check_domain", "GET", "x", {"r": "demo", "name": "x" * 300}, {}, 400),
        ("http_list_customers", "GET", "x", {"r": "demo"}, {"status": "Bogus"}, 400),
        ("http_list_customers", "GET", "x", {"r": "demo"}, {"pageSize": "0"}, 400),
    ],
)
def test_odd_route_and_query_values_are_problems_never_500(
    world, name, method, path, route, params, status
):
    resp = call(name, method, path, route=route, params=params, token=world.token("Sales"))
    assert resp.status_code == status, resp.get_body()
    assert resp.mimetype == "application/problem+json"


def test_list_filters_and_the_customer_user_sees_only_its_own(world):
    resp = call(
        "http_list_customers",
        "GET",
        "resellers/demo/customers",
        route={"r": "demo"},
        params={"name": "beta"},
        token=world.token("Sales"),
    )
    assert [c["id"] for c in json_of(resp)["items"]] == [CUST_B]
    resp = call(
        "http_list_customers",
        "GET",
        "resellers/demo/customers",
        route={"r": "demo"},
        token=world.token("CustomerAdmin"),
    )
    assert [c["id"] for c in json_of(resp)["items"]] == [CUST_A]


def test_patch_needs_if_match_and_refuses_a_stale_one(world):
    route = {"r": "demo", "c": CUST_A}
    path = f"resellers/demo/customers/{CUST_A}"
    token = world.token("Sales")
    resp = call(
        "http_update_customer", "PATCH", path, route=route, token=token, body={"industry": "X"}
    )
    assert resp.status_code == 428
    got = call("http_get_customer", "GET", path, route=route, token=token)
    etag = got.headers["ETag"]
    ok = call(
        "http_update_customer",
        "PATCH",
        path,
        route=route,
        token=token,
        body={"industry": "Retail", "segment": "education"},
        headers={"If-Match": etag},
    )
    assert ok.status_code == 200 and json_of(ok)["industry"] == "Retail"
    assert world.container.customer_book.customers.get("demo", CUST_A).segment == "education"
    stale = call(
        "http_update_customer",
        "PATCH",
        path,
        route=route,
        token=token,
        body={"industry": "Other"},
        headers={"If-Match": etag},
    )
    assert stale.status_code == 412
    bad = call(
        "http_update_customer",
        "PATCH",
        path,
        route=route,
        token=token,
        body={"address": {"street": "S", "city": "C", "postcode": "1", "country": "CZ"}},
        headers={"If-Match": ok.headers["ETag"]},
    )
    assert bad.status_code == 400
    assert [e["field"] for e in json_of(bad)["errors"]] == ["address.postcode"]


def test_the_queue_trigger_activates_and_a_redelivery_does_nothing(world):
    created = json_of(create(world, new_customer_body("queued")))
    deliver(world)
    deliver(world)
    stored = world.container.customers.get("demo", created["id"])
    assert stored.status is CustomerStatus.ACTIVE
    assert len(pc_of(world).create_calls) == 1
    assert len(world.container.mailer.sent) == 1


def test_a_refusal_marks_failed_at_once(world):
    created = json_of(create(world, new_customer_body("refused")))
    pc_of(world).fail_create_with = UpstreamRejected("Address is invalid", code="2001", status=400)
    deliver(world)  # a permanent refusal is recorded, not retried
    stored = world.container.customers.get("demo", created["id"])
    assert stored.status is CustomerStatus.FAILED
    assert "Address is invalid" in (stored.failure_reason or "")


def test_transient_errors_retry_and_the_last_try_marks_failed(world):
    created = json_of(create(world, new_customer_body("flaky")))
    pc_of(world).fail_create_with = UpstreamUnavailable("Partner Center is down")
    with pytest.raises(UpstreamUnavailable):
        deliver(world, dequeue_count=1)
    assert (
        world.container.customers.get("demo", created["id"]).status is CustomerStatus.PROVISIONING
    )
    with pytest.raises(UpstreamUnavailable):
        deliver(world, dequeue_count=5)
    stored = world.container.customers.get("demo", created["id"])
    assert stored.status is CustomerStatus.FAILED
    assert stored.failure_reason == "gave up after 5 tries: Partner Center is down"


def retry(world: World, customer_id: str, role: str = "Sales", **headers: str) -> func.HttpResponse:
    return call(
        "http_retry_customer",
        "POST",
        f"resellers/demo/customers/{customer_id}/retry",
        route={"r": "demo", "c": customer_id},
        token=world.token(role),
        headers=headers,
    )


def test_retry_of_a_failed_customer_answers_202_and_it_ends_active(world):
    created = json_of(create(world, new_customer_body("retryme")))
    pc_of(world).fail_create_with = UpstreamRejected("Address is invalid", code="2001", status=400)
    deliver(world)
    failed = world.container.customers.get("demo", created["id"])
    assert failed.status is CustomerStatus.FAILED
    pc_of(world).fail_create_with = None
    world.container.customers.sent.clear()

    resp = retry(world, created["id"], **{"If-Match": encode_etag(failed.etag)})
    assert resp.status_code == 202, resp.get_body()
    shown = json_of(resp)
    assert shown["status"] == "Provisioning" and shown["failureReason"] is None
    assert resp.headers["Location"] == f"/api/resellers/demo/customers/{created['id']}"
    assert resp.headers["ETag"] == encode_etag(
        world.container.customers.get("demo", created["id"]).etag
    )
    [message] = world.container.customers.sent
    assert message.body == {"reseller": "demo", "customerId": created["id"]}

    deliver(world)
    stored = world.container.customers.get("demo", created["id"])
    # Refused for good (400): the retry is a new request, not a replay of the refusal.
    assert stored.status is CustomerStatus.ACTIVE and stored.request_id != failed.request_id
    assert pc_of(world).create_calls == [failed.request_id, stored.request_id]
    assert len(pc_of(world).tenants) == 1


def test_retry_of_a_customer_that_is_not_failed_is_409_problem(world):
    resp = retry(world, CUST_A)  # Active
    assert resp.status_code == 409
    assert resp.mimetype == "application/problem+json"
    assert "only a Failed customer" in json_of(resp)["detail"]
    provisioning = json_of(create(world, new_customer_body("stillgoing")))
    resp = retry(world, provisioning["id"])
    assert resp.status_code == 409 and "Provisioning" in json_of(resp)["detail"]


def test_retry_with_a_stale_if_match_is_412(world):
    created = json_of(create(world, new_customer_body("stale")))
    pc_of(world).fail_create_with = UpstreamRejected("no", code="2001", status=400)
    deliver(world)
    resp = retry(world, created["id"], **{"If-Match": encode_etag("etag-0")})
    assert resp.status_code == 412
    stored = world.container.customers.get("demo", created["id"])
    assert stored.status is CustomerStatus.FAILED


def test_retry_outside_the_callers_world_is_404(world):
    repo = world.container.customers
    for reseller, customer_id in (("other", CUST_OTHER), ("demo", CUST_B)):
        failed = repo.get(reseller, customer_id)
        failed.status = CustomerStatus.FAILED
        repo.update(failed)
    sent_before = len(repo.sent)
    # Another reseller's Failed customer, for a caller of demo.
    resp = call(
        "http_retry_customer",
        "POST",
        f"resellers/other/customers/{CUST_OTHER}/retry",
        route={"r": "other", "c": CUST_OTHER},
        token=world.token("Sales"),
    )
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    # Another customer's Failed record, for a customer user of CUST_A.
    resp = retry(world, CUST_B, role="CustomerAdmin")
    assert resp.status_code == 404
    for odd in ("01JCXSTC0000000000000000ZZ", "not-an-id"):
        resp = retry(world, odd)
        assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    assert repo.get("other", CUST_OTHER).status is CustomerStatus.FAILED
    assert repo.get("demo", CUST_B).status is CustomerStatus.FAILED
    assert len(repo.sent) == sent_before


def test_a_customer_user_of_one_customer_gets_404_for_the_other(world):
    token = world.token("CustomerReader")
    own = call(
        "http_get_customer",
        "GET",
        "x",
        route={"r": "demo", "c": CUST_A},
        token=token,
    )
    assert own.status_code == 200
    other = call("http_get_customer", "GET", "x", route={"r": "demo", "c": CUST_B}, token=token)
    assert other.status_code == 404
    # Invite a new customer user for customer B: it sees B, and A is not found for it.
    invited = call(
        "http_invite_user",
        "POST",
        "resellers/demo/users",
        route={"r": "demo"},
        token=world.token("AccountManager"),
        body={"email": "it@b.example", "role": "CustomerAdmin", "customerId": CUST_B},
    )
    assert invited.status_code == 201
    from shared.services import users

    user = world.container.users.get("demo", json_of(invited)["user"]["id"])
    users.accept_invitation(
        world.container.directory,
        _token_from_mail(world),
        world.issuer.sign_in("it@b.example"),
    )
    token_b = world.issuer.token("it@b.example")
    assert user.customer_id == CUST_B
    assert (
        call(
            "http_get_customer", "GET", "x", route={"r": "demo", "c": CUST_B}, token=token_b
        ).status_code
        == 200
    )
    assert (
        call(
            "http_get_customer", "GET", "x", route={"r": "demo", "c": CUST_A}, token=token_b
        ).status_code
        == 404
    )


def _token_from_mail(world: World) -> str:
    [note] = [
        n for n in world.container.notifications.rows.values() if "it@b.example" in n.email.to
    ]
    return note.render().text.split("/invitations/")[1].split()[0]


def test_etag_of_get_is_usable_for_patch(world):
    got = call(
        "http_get_customer",
        "GET",
        "x",
        route={"r": "demo", "c": CUST_A},
        token=world.token("Sales"),
    )
    stored = world.container.customers.get("demo", CUST_A)
    assert got.headers["ETag"] == encode_etag(stored.etag)
