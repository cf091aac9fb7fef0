"""Customers through the local host, Azurite, the local issuer and the Partner Center simulator.

Covers the issue's "Checked by": create → Active with one tenant and the e-mail in the drop
folder; a host killed mid-provisioning still ends Active with one tenant (the same MS-RequestId
reused); invalid input and a taken name store and queue nothing; isolation between resellers and
between customers; the first admin's password is in the e-mail and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient

from functions._http import decode_etag, encode_etag
from localdev.azurite import Azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.partner_center_sim import SimulatorHandle
from localdev.seed import seed, seed_customers
from localdev.tokens import issuers_json, serve_in_thread, token_for
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.customers import FAILED_FOR_CUSTOMER_USERS, CustomerStatus
from shared.domain.identity import SignInKind
from tests.customer_bodies import new_customer_body
from tests.integration.test_partner_center_contract import UNPACED, pc_settings
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 4


class Stack:
    """Azurite + simulator + issuer, and hosts started on demand (several, for the kill test)."""

    def __init__(self, env: dict[str, str], c: Container, sim: SimulatorHandle, tmp: Path):
        self.env, self.c, self.sim, self.tmp = env, c, sim, tmp
        self.hosts: list[HostProcess] = []
        self.issuer_dir = tmp / "issuer"
        self.mail = Path(env["MAIL_DROP_DIR"])

    def start_host(self, **extra_env: str) -> HostProcess:
        host = HostProcess(
            cwd=ROOT,
            env={**os.environ, **self.env, **extra_env},
            settings=self.tmp / "none.json",
            host_json=ROOT / "tests" / "apps" / "host.json",
            extra_args=["--queue-lease-seconds", str(LEASE_SECONDS)],
            log_path=self.tmp / f"host-{len(self.hosts)}.log",
        )
        self.hosts.append(host)
        return host.start(timeout=60)

    @property
    def host(self) -> HostProcess:
        return self.hosts[-1]

    def token(self, email: str) -> str:
        return token_for(
            email, SignInKind.PLATFORM, state_dir=self.issuer_dir, settings=self.c.settings
        )

    def call(
        self,
        method: str,
        path: str,
        email: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        all_headers = {"Authorization": f"Bearer {self.token(email)}", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        status, hdrs, raw = self.host.request(method, "/api/" + path, data, all_headers)
        return status, hdrs, json.loads(raw) if raw else None

    def demo_partner_id(self) -> str:
        return self.c.resellers.get("reseller", "demo").require_tenant_id()

    def emails(self) -> list[Message]:
        if not self.mail.exists():
            return []
        return [message_from_bytes(p.read_bytes()) for p in sorted(self.mail.glob("*.eml"))]

    def all_table_text(self) -> str:
        """Every entity of every table of this test, as text."""
        service = TableServiceClient.from_connection_string(self.env["AzureWebJobsStorage"])
        prefix = self.env["TABLE_PREFIX"]
        chunks = []
        for table in service.list_tables():
            if table.name.startswith(prefix):
                for entity in service.get_table_client(table.name).list_entities():
                    chunks.append(json.dumps(dict(entity), default=str, ensure_ascii=False))
        return "\n".join(chunks)

    def password_of(self, request_id: str) -> str:
        """The admin password the simulator answered: replay the create's MS-RequestId."""
        reply = self.sim_call("POST", "/v1/customers", request_id, {})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["userCredentials"]["password"])

    def sim_call(self, method: str, path: str, request_id: str, body: Any) -> httpx.Response:
        with self.sim.client() as client:
            return client.request(
                method,
                path,
                json=body,
                headers={
                    "Authorization": f"Bearer {self.sim.token(app_user=True)}",
                    "MS-RequestId": request_id,
                },
            )


@contextlib.contextmanager
def open_stack(
    azurite: Azurite, table_prefix: str, tmp_path: Path, sim: SimulatorHandle
) -> Iterator[Stack]:
    """Azurite tables under `table_prefix`, the seeded demo data, an issuer and the simulator;
    every host started on it is stopped at the end."""
    srv, base = serve_in_thread(0, tmp_path / "issuer")
    pc_values = pc_settings(sim).model_dump(by_alias=True, exclude_none=True)
    env = {
        k: v.get_secret_value() if hasattr(v, "get_secret_value") else str(v)
        for k, v in pc_values.items()
        if k.startswith("PARTNER_CENTER_")
    }
    env.update(
        {
            **quiet_timers(),
            "APP_ENVIRONMENT": "test",
            "AzureWebJobsStorage": azurite.connection_string,
            "TABLE_PREFIX": table_prefix,
            "AUTH_ISSUERS": issuers_json(base),
            "MAIL_DROP_DIR": str(tmp_path / "mail"),
            "PUBLIC_BASE_URL": "http://portal.test",
            "OUTBOX_SWEEP_SCHEDULE": "*/2 * * * * *",
            "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
            "REMINDER_SCHEDULE": "0 0 0 1 1 *",
            "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
            "SYNC_SCHEDULE": "0 0 0 1 1 *",
            "OUTBOX_MIN_AGE_SECONDS": "2",
            "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        }
    )
    # The test's own hand (seeding, set-up imports, reading records) is unpaced; hosts get `env`.
    c = Container(Settings.model_validate({**env, **UNPACED}))
    seed(c)
    s = Stack(env, c, sim, tmp_path)
    try:
        yield s
    finally:
        for host in s.hosts:
            host.stop()
        srv.shutdown()


@pytest.fixture
def stack(
    azurite: Azurite, table_prefix: str, tmp_path: Path, fresh_partner_center_sim: SimulatorHandle
) -> Iterator[Stack]:
    with open_stack(azurite, table_prefix, tmp_path, fresh_partner_center_sim) as s:
        yield s


def customer_status(stack: Stack, customer_id: str) -> CustomerStatus:
    return stack.c.customers.get("demo", customer_id).status


def test_create_is_active_within_seconds_with_one_tenant_and_the_email_to_the_contact(stack):
    stack.start_host()
    body = new_customer_body("alfanova")
    key = {"Idempotency-Key": "create-alfanova-1"}
    status, headers, created = stack.call(
        "POST", "resellers/demo/customers", "owner@demo.example", body, key
    )
    assert status == 202, created
    assert created["status"] == "Provisioning"
    assert headers["location"] == f"/api/resellers/demo/customers/{created['id']}"

    # The same key and body: the same answer, still one customer.
    status2, headers2, again = stack.call(
        "POST", "resellers/demo/customers", "owner@demo.example", body, key
    )
    assert (status2, again["id"]) == (202, created["id"])
    assert headers2.get("idempotent-replayed") == "true"

    started = time.monotonic()
    wait_until(
        lambda: customer_status(stack, created["id"]) is CustomerStatus.ACTIVE,
        what="the customer to be Active",
    )
    assert time.monotonic() - started < 20
    status, _, shown = stack.call(
        "GET", f"resellers/demo/customers/{created['id']}", "owner@demo.example"
    )
    assert status == 200 and shown["status"] == "Active"
    assert shown["domain"] == "alfanova.onmicrosoft.com" and shown["tenantId"]

    tenants = stack.sim.customers(reseller_id=stack.demo_partner_id())
    assert [t["domain"] for t in tenants] == ["alfanova.onmicrosoft.com"]
    assert tenants[0]["id"] == shown["tenantId"]
    [only] = [c for c in stack.c.customers.iterate("demo")]
    assert only.id == created["id"]

    [mail] = wait_until(stack.emails, what="the sign-in e-mail")
    assert mail["To"] == "jana@alfanova.example"
    assert "owner@demo.example" in mail["Cc"]
    text = mail.get_payload(decode=True).decode()
    password = stack.password_of(only.request_id)
    assert "admin@alfanova.onmicrosoft.com" in text and password in text

    # The password lives in the e-mail only: no table entity, no log line holds it.
    assert password not in stack.all_table_text()
    assert password not in stack.host.logs()


def test_host_killed_while_provisioning_still_ends_active_with_one_tenant(stack):
    # The first host: Partner Center creates the tenant, but the answer never arrives (the
    # connection drops after the work is done) and the client waits long before its retry;
    # the host is killed while it waits, with the customer still Provisioning.
    stack.sim.inject_faults(
        pathPrefix="/v1/customers", methods=["POST"], dropRate=1.0, dropPhase="after", count=1
    )
    stack.start_host(
        PARTNER_CENTER_BACKOFF_BASE_SECONDS="60",
        PARTNER_CENTER_BACKOFF_CAP_SECONDS="60",
        PARTNER_CENTER_MAX_RETRY_SECONDS="300",
    )
    status, _, created = stack.call(
        "POST", "resellers/demo/customers", "owner@demo.example", new_customer_body("killme")
    )
    assert status == 202, created

    def dropped_create() -> list[dict[str, Any]]:
        return [
            r
            for r in stack.sim.requests(path_prefix="/v1/customers")
            if r["method"] == "POST" and r["fault"] == "drop-after"
        ]

    wait_until(dropped_create, what="the first create call")
    wait_until(lambda: stack.sim.customers(reseller_id=stack.demo_partner_id()), what="a tenant")
    first = stack.host
    assert first.process is not None
    first.process.kill()
    first.process.wait()
    first.stop()
    record = stack.c.customers.get("demo", created["id"])
    assert record.status is CustomerStatus.PROVISIONING
    assert stack.emails() == []

    # A new host: the message comes back after its lease, the step repeats the create with the
    # stored MS-RequestId, and Partner Center answers with the first result.
    stack.start_host()
    wait_until(
        lambda: customer_status(stack, created["id"]) is CustomerStatus.ACTIVE,
        timeout=60,
        what="the customer to be Active after the restart",
    )
    tenants = stack.sim.customers(reseller_id=stack.demo_partner_id())
    assert [t["domain"] for t in tenants] == ["killme.onmicrosoft.com"]
    assert stack.c.customers.get("demo", created["id"]).tenant_id == tenants[0]["id"]
    creates = [r for r in stack.sim.requests(path_prefix="/v1/customers") if r["method"] == "POST"]
    assert len(creates) >= 2
    assert {r["requestId"] for r in creates} == {record.request_id}
    [mail] = wait_until(stack.emails, what="the sign-in e-mail")
    assert stack.password_of(record.request_id) in mail.get_payload(decode=True).decode()


def test_invalid_fields_and_a_taken_name_store_nothing_and_queue_nothing(stack):
    stack.start_host()
    bad = new_customer_body(
        "valid",
        companyId="12345678",
        address={"street": "Ulice 1", "city": "Praha", "postcode": "1100", "country": "CZ"},
        contact={
            "firstName": "Jana",
            "lastName": "Nová",
            "email": "jana@",
            "phone": "601123456",
        },
    )
    status, headers, problem = stack.call(
        "POST", "resellers/demo/customers", "owner@demo.example", bad
    )
    assert status == 400 and headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in problem["errors"]}
    assert {"companyId", "address.postcode", "contact.email", "contact.phone"} <= fields

    taken = stack.sim_call(
        "POST",
        "/v1/customers",
        "11111111-2222-3333-4444-555555555555",
        {
            "companyProfile": {"domain": "takenname.onmicrosoft.com"},
            "billingProfile": {
                "email": "x@y.example",
                "culture": "en-US",
                "language": "en",
                "companyName": "Someone Else",
                "defaultAddress": {
                    "country": "US",
                    "city": "Redmond",
                    "postalCode": "98052",
                    "addressLine1": "One Way",
                },
            },
        },
    )
    assert taken.status_code == 201, taken.text
    status, headers, problem = stack.call(
        "POST", "resellers/demo/customers", "owner@demo.example", new_customer_body("TakenName")
    )
    assert status == 409 and headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in problem["errors"]] == ["tenantName"]
    status, _, check = stack.call("GET", "resellers/demo/domains/takenname", "owner@demo.example")
    assert status == 200 and check["available"] is False

    # Nothing stored: the Customers table holds no entity at all (its outbox rows included), and
    # Partner Center was never asked to create anything for us.
    time.sleep(1)
    service = TableServiceClient.from_connection_string(stack.env["AzureWebJobsStorage"])
    table = f"{stack.env['TABLE_PREFIX']}Customers"
    names = {t.name for t in service.list_tables()}
    rows = list(service.get_table_client(table).list_entities()) if table in names else []
    assert rows == []
    creates = [r for r in stack.sim.requests(path_prefix="/v1/customers") if r["method"] == "POST"]
    assert [r["requestId"] for r in creates] == ["11111111-2222-3333-4444-555555555555"]


def test_other_reseller_and_other_customer_get_404(stack):
    first, second = seed_customers(stack.c)
    assert (first.segment, second.segment) == ("commercial", "education")
    assert [c.id for c in seed_customers(stack.c)] == [first.id, second.id]  # idempotent
    stack.start_host()
    for path in (
        "resellers/demo/customers",
        f"resellers/demo/customers/{first.id}",
        "resellers/demo/domains/anything",
        "resellers/demo/relationship-link",
    ):
        status, _, problem = stack.call("GET", path, "owner@other.example")
        assert status == 404, (path, problem)
    status, _, _ = stack.call(
        "PATCH",
        f"resellers/demo/customers/{first.id}",
        "owner@other.example",
        {"industry": "X"},
        {"If-Match": '"x"'},
    )
    assert status == 404
    status, _, _ = stack.call(
        "POST", "resellers/demo/customers", "owner@other.example", new_customer_body("sneaky")
    )
    assert status == 404

    # The customer user sees its own customer only.
    status, _, own = stack.call(
        "GET", f"resellers/demo/customers/{first.id}", "it@customer.example"
    )
    assert status == 200 and own["id"] == first.id
    status, _, _ = stack.call("GET", f"resellers/demo/customers/{second.id}", "it@customer.example")
    assert status == 404
    status, _, page = stack.call("GET", "resellers/demo/customers", "it@customer.example")
    assert status == 200 and [c["id"] for c in page["items"]] == [first.id]
    status, _, page = stack.call("GET", "resellers/demo/customers", "owner@demo.example")
    assert sorted(c["id"] for c in page["items"]) == sorted([first.id, second.id])
    status, _, link = stack.call("GET", "resellers/demo/relationship-link", "owner@demo.example")
    assert status == 200 and f"indirectCSPId={stack.demo_partner_id()}" in link["url"]


def test_a_failed_customer_retried_ends_active_with_its_one_tenant(stack):
    # Partner Center creates the tenant, but every answer is lost after the work is done and the
    # client does not retry by itself: the step fails five times and the customer shows Failed
    # while its tenant exists at Microsoft.
    stack.sim.inject_faults(
        pathPrefix="/v1/customers", methods=["POST"], dropRate=1.0, dropPhase="after"
    )
    stack.start_host(PARTNER_CENTER_MAX_ATTEMPTS="1")
    owner = "owner@demo.example"
    status, _, created = stack.call(
        "POST", "resellers/demo/customers", owner, new_customer_body("againco")
    )
    assert status == 202, created
    wait_until(
        lambda: customer_status(stack, created["id"]) is CustomerStatus.FAILED,
        timeout=90,
        what="the customer to be Failed",
    )
    failed = stack.c.customers.get("demo", created["id"])
    assert "gave up after 5 tries" in (failed.failure_reason or "")
    tenants = stack.sim.customers(reseller_id=stack.demo_partner_id())
    assert [t["domain"] for t in tenants] == ["againco.onmicrosoft.com"]
    assert stack.emails() == []

    # The retry answers 202 and provisions it again; once Active, a second retry is 409.
    status, headers, shown = stack.call("GET", f"resellers/demo/customers/{created['id']}", owner)
    assert status == 200 and shown["status"] == "Failed"
    stack.sim.clear_faults()
    path = f"resellers/demo/customers/{created['id']}/retry"
    status, headers, retried = stack.call(
        "POST", path, owner, headers={"If-Match": headers["etag"]}
    )
    assert status == 202, retried
    assert retried["status"] == "Provisioning" and retried["failureReason"] is None
    assert headers["location"] == f"/api/resellers/demo/customers/{created['id']}"
    wait_until(
        lambda: customer_status(stack, created["id"]) is CustomerStatus.ACTIVE,
        timeout=60,
        what="the retried customer to be Active",
    )
    status, _, again = stack.call("POST", path, owner)
    assert status == 409 and "only a Failed customer" in again["detail"]

    # Exactly one tenant, the one the first attempt made; every create used one MS-RequestId.
    tenants = stack.sim.customers(reseller_id=stack.demo_partner_id())
    assert [t["domain"] for t in tenants] == ["againco.onmicrosoft.com"]
    active = stack.c.customers.get("demo", created["id"])
    assert active.tenant_id == tenants[0]["id"] and active.request_id == failed.request_id
    creates = [r for r in stack.sim.requests(path_prefix="/v1/customers") if r["method"] == "POST"]
    assert len(creates) >= 6
    assert {r["requestId"] for r in creates} == {failed.request_id}
    [mail] = wait_until(stack.emails, what="the sign-in e-mail")
    assert stack.password_of(failed.request_id) in mail.get_payload(decode=True).decode()


def test_if_match_star_empty_and_foreign_tags_on_the_real_host(stack):
    first, _ = seed_customers(stack.c)
    stack.start_host()
    owner, path = "owner@demo.example", f"resellers/demo/customers/{first.id}"

    def patch(if_match: str, industry: str) -> tuple[int, dict[str, str], Any]:
        return stack.call("PATCH", path, owner, {"industry": industry}, {"If-Match": if_match})

    status, headers, shown = patch("*", "Retail")
    assert status == 200 and shown["industry"] == "Retail", shown
    assert (
        headers["etag"]
        and decode_etag(headers["etag"]) == stack.c.customers.get("demo", first.id).etag
    )
    for malformed in ('""', "W/" + headers["etag"], "abc", f'{headers["etag"]}, "x"'):
        status, _, problem = patch(malformed, "Bad")
        assert status == 400, (malformed, problem)
        assert [e["field"] for e in problem["errors"]] == ["If-Match"]
    # Well-formed tags this API never issued reach storage and match nothing there.
    old = "W/\"datetime'2020-01-01T00%3A00%3A00.0000000Z'\""
    for foreign in (encode_etag(old), encode_etag("not-ours"), '"x"'):
        status, _, problem = patch(foreign, "Bad")
        assert status == 412, (foreign, problem)
    assert stack.c.customers.get("demo", first.id).industry == "Retail"


def test_a_customer_user_sees_a_failure_in_words_and_staff_see_the_recorded_reason(stack):
    first, _ = seed_customers(stack.c)
    raw = "storage error 503: ServerBusy; Partner Center 400 (2001) Address is invalid"
    failed = stack.c.customers.get("demo", first.id)
    failed.status, failed.failure_reason = CustomerStatus.FAILED, raw
    stack.c.customers.update(failed)
    stack.start_host()
    for who, expected in (
        ("it@customer.example", FAILED_FOR_CUSTOMER_USERS),
        ("owner@demo.example", raw),
    ):
        status, _, shown = stack.call("GET", f"resellers/demo/customers/{first.id}", who)
        assert status == 200 and shown["failureReason"] == expected, (who, shown)
        status, _, page = stack.call("GET", "resellers/demo/customers", who)
        [listed] = [c for c in page["items"] if c["id"] == first.id]
        assert listed["failureReason"] == expected, who
