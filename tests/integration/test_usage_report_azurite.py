"""The Azure usage import and report with real parts: the production Partner Center client
against the simulator's Graph usage export over HTTPS, records and rows in Azurite, the report
through its HTTP trigger. Its totals are checked against what the simulator says it exported
(`/_sim/usage`, summed from its generator, not from the import)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from localdev.azurite import Azurite
from localdev.partner_center_sim import SimulatorHandle
from localdev.seed import seed, seed_azure_plan, seed_catalog, seed_customers
from localdev.tokens import issuers_json
from shared import bootstrap
from shared.adapters.partner_center.simulated_clock import SimulatedPartnerCenterClock
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.customers import Customer, CustomerStatus
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.outbox import Queue
from shared.domain.usage import AZURE_PLAN_PRODUCT_ID, BillingPeriod
from shared.domain.usage_report import (
    IMPORTS_PARTITION,
    UsageImportMessage,
    UsageImportStatus,
)
from shared.services import usage_import, usage_report, users
from shared.services.usage_report import UsageQuery
from tests.fakes import TestIssuer, onboard, reseller_ids
from tests.functions.helpers import call, json_of
from tests.integration.test_partner_center_contract import pc_settings

pytestmark = pytest.mark.integration

AZURE_PLAN = f"{AZURE_PLAN_PRODUCT_ID}:0001:CFQ7TTC0PB6M"
CENT = Decimal("0.01")


class RecordingQueues:
    """The queue sender in memory (outbox sends and delayed steps): the test delivers them."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        assert queue == Queue.USAGE_IMPORT.value
        with self._lock:
            self.sent.append(text)

    def send_later(self, queue: Queue, body: Mapping[str, Any], delay_seconds: float) -> None:
        self.send(queue.value, json.dumps(dict(body)), delay_seconds=delay_seconds)

    def take(self) -> list[str]:
        with self._lock:
            taken, self.sent = self.sent, []
        return taken


@dataclass
class Stack:
    c: Container
    sim: SimulatorHandle
    queues: RecordingQueues
    issuer: TestIssuer
    subscriptions: dict[str, list[str]]  # reseller slug (or "stranger") → Azure plan ids
    customers: dict[str, list[str]]  # reseller slug → customer ids
    month: str = ""  # the month the report is asked for


@pytest.fixture
def stack(
    azurite: Azurite,
    table_prefix: str,
    tmp_path: Path,
    fresh_partner_center_sim: SimulatorHandle,
) -> Iterator[Stack]:
    sim = fresh_partner_center_sim
    issuer = TestIssuer()
    settings = pc_settings(sim, PARTNER_CENTER_GRAPH_URL=sim.connection["graphBaseUrl"])
    values: dict[str, Any] = {
        **settings.model_dump(by_alias=True, exclude_none=True),
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": table_prefix,
        "MAIL_DROP_DIR": str(tmp_path / "mail"),
        "AUTH_ISSUERS": [i.model_dump() for i in issuer.trusted()],
        "DISTRIBUTOR_MARKUP_PERCENT": "3",
    }
    values = {
        k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v)
        for k, v in values.items()
    }
    c = Container(Settings(**values))
    # The simulator's clock, read afresh each time (the test moves it 40 days).
    c.__dict__["clock"] = SimulatedPartnerCenterClock(
        settings.partner_center_api_base_url,
        ca_cert_path=settings.partner_center_ca_cert_path,
        ttl_seconds=0,
    )
    queues = RecordingQueues()
    c.__dict__["queues"] = queues
    c.__dict__["token_verifier"] = issuer.verifier()
    sim.configure(usageExportPolls=2, usageLinesPerBlob=25)
    subscriptions: dict[str, list[str]] = {}
    customers: dict[str, list[str]] = {}
    for slug, count in (("demo", 2), ("other", 1), ("stranger", 1)):
        tenant_id, mpn_id = reseller_ids(slug)
        sim.add_reseller(tenant_id, mpn_id, slug)
        seeded = sim.seed(count, reseller_id=tenant_id, subscriptions_per_customer=1, seed=5)
        if slug != "stranger":
            reseller = onboard(c.resellers, c.clock, slug, "EUR", margin="20")
        for tenant in seeded["customerIds"]:
            order = sim.place_order(
                tenant, AZURE_PLAN, 1, term_duration="", billing_cycle="monthly"
            )
            subscriptions.setdefault(slug, []).extend(
                line["subscriptionId"] for line in order["lineItems"]
            )
            if slug == "stranger":
                continue  # a tenant no customer on record claims: its lines are skipped
            customer = Customer(
                reseller=reseller.slug,
                name=f"Customer {tenant[:8]}",
                domain=f"c{tenant[:8]}.onmicrosoft.com",
                tenant_id=tenant,
                status=CustomerStatus.ACTIVE,
            )
            c.customers.add(customer, claims=customer.claims())
            customers.setdefault(slug, []).append(customer.id)
    demo = c.resellers.get("reseller", "demo")
    demo.distributor_markup_percent = Decimal(5)
    demo.settings.usage_markup_percent = Decimal("12.5")
    c.resellers.update(demo)
    # A whole last month of usage, and some of this one.
    sim.advance_clock(days=40)
    bootstrap.use(c)
    yield Stack(c, sim, queues, issuer, subscriptions, customers)
    bootstrap.use(None)
    c.partner_center.close()


def run_import(stack: Stack, *, crash_at: str | None = None) -> list[str]:
    """Queue the last month's import and deliver its messages until none is left; with
    `crash_at`, the step dies once right after that write and its message comes again."""
    book = stack.c.usage_book
    crashes = {crash_at} if crash_at else set()

    def crash(step: str) -> None:
        if step in crashes:
            crashes.discard(step)
            raise RuntimeError(f"killed after {step}")

    book.after_step = crash
    usage_import.begin(book, [BillingPeriod.LAST])
    steps: list[str] = []
    queue = stack.queues.take()
    while queue:
        text = queue.pop(0)
        msg = UsageImportMessage.model_validate_json(text)
        steps.append(msg.step.value)
        try:
            usage_import.handle(book, stack.c.partner_center, msg)
        except RuntimeError:
            queue.insert(0, text)  # the host delivers it again
        queue.extend(stack.queues.take())
        assert len(steps) < 500
    book.after_step = None
    return steps


def report(stack: Stack, email: str, reseller: str = "demo", **params: str) -> Any:
    return call(
        "http_usage_report",
        "GET",
        f"resellers/{reseller}/reports/usage",
        route={"r": reseller},
        token=stack.issuer.token(email),
        params={"month": stack.month, **params},
    )


def user(stack: Stack, reseller: str, email: str, role: Role, customer: str | None = None) -> str:
    users.ensure_user(
        stack.c.directory,
        reseller,
        email,
        role,
        customer_id=customer,
        sign_ins=[stack.issuer.sign_in(email)],
    )
    return email


def expected(stack: Stack, slug: str) -> Decimal:
    """The reseller's pre-tax usage of the last month, as the simulator sums its generator."""
    totals = stack.sim.usage_totals("last")
    by_sub = totals["bySubscription"]
    return sum((Decimal(by_sub[s]) for s in stack.subscriptions[slug] if s in by_sub), Decimal(0))


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from keys(inner)


def test_the_usage_report_equals_what_the_simulator_exported_once_even_with_a_blob_twice(
    stack: Stack,
) -> None:
    steps = run_import(stack, crash_at="blob-rows")

    totals = stack.sim.usage_totals("last")
    stack.month = totals["billingMonth"]
    record = stack.c.usage_imports.get(IMPORTS_PARTITION, stack.month)
    assert record.status is UsageImportStatus.SUCCEEDED, record.failure_reason
    assert record.blob_count > 1
    assert steps.count("blob") == record.blob_count + 1  # one blob delivered twice
    assert record.lines == totals["lines"]
    stranger = expected(stack, "stranger")
    assert stranger > 0 and record.skipped_lines > 0

    admin = user(stack, "*", "admin@distributor.example", Role.DISTRIBUTOR_ADMIN)
    body = json_of(report(stack, admin))

    microsoft = expected(stack, "demo")
    assert microsoft > 0
    assert body["totals"] == [
        {
            "currency": "EUR",
            "lines": body["totals"][0]["lines"],
            "microsoftCost": money(microsoft),
            "resellerCost": money(microsoft * Decimal("1.05")),
            "customerPrice": money(microsoft * Decimal("1.05") * Decimal("1.125")),
            "margin": str(
                Decimal(money(microsoft * Decimal("1.05") * Decimal("1.125")))
                - Decimal(money(microsoft * Decimal("1.05")))
            ),
            "marginPercent": body["totals"][0]["marginPercent"],
        }
    ]
    by_category = json_of(report(stack, admin, groupBy="meterCategory"))["rows"]
    assert {r["customerId"] for r in by_category} == set(stack.customers["demo"])
    other = json_of(report(stack, admin, reseller="other"))["totals"][0]
    assert other["microsoftCost"] == money(expected(stack, "other"))
    assert other["resellerCost"] == money(expected(stack, "other") * Decimal("1.03"))

    # The next day's export of unchanged data replaces the month with the same sums.
    stack.sim.advance_clock(days=1)
    run_import(stack)
    again = json_of(report(stack, admin))["totals"][0]
    assert again["microsoftCost"] == money(microsoft)


def test_a_customer_users_report_has_no_cost_keys_and_another_reseller_is_not_found(
    stack: Stack,
) -> None:
    run_import(stack)
    stack.month = stack.sim.usage_totals("last")["billingMonth"]
    mine = stack.customers["demo"][0]
    customer_user = user(stack, "demo", "it@a.example", Role.CUSTOMER_READER, mine)
    other_staff = user(stack, "other", "owner@other.example", Role.ACCOUNT_MANAGER)

    resp = report(stack, customer_user)

    assert resp.status_code == 200
    body = json_of(resp)
    assert body["rows"] and {r["customerId"] for r in body["rows"]} == {mine}
    leaked = [k for k in keys(body) if any(w in k.lower() for w in ("cost", "margin", "markup"))]
    assert leaked == []
    assert report(stack, other_staff).status_code == 404


def test_the_demo_seed_leaves_azure_usage_that_the_import_brings_into_the_report(
    azurite: Azurite, table_prefix: str, tmp_path: Path, fresh_partner_center_sim: SimulatorHandle
) -> None:
    sim = fresh_partner_center_sim
    settings = pc_settings(sim, PARTNER_CENTER_GRAPH_URL=sim.connection["graphBaseUrl"])
    values = {
        **{
            k: v.get_secret_value() if hasattr(v, "get_secret_value") else v
            for k, v in settings.model_dump(by_alias=True, exclude_none=True).items()
        },
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": table_prefix,
        "MAIL_DROP_DIR": str(tmp_path / "mail"),
        "AUTH_ISSUERS": issuers_json("http://127.0.0.1:9"),
    }
    c = Container(Settings(**values))
    queues = RecordingQueues()
    c.__dict__["queues"] = queues
    seed(c)
    seed_catalog(c)
    first = seed_customers(c)[0]
    assert seed_azure_plan(c, first) is not None
    assert seed_azure_plan(c, first) is None  # seeding again adds none
    usage_import.begin(c.usage_book)
    queue = queues.take()
    while queue:
        usage_import.handle(
            c.usage_book, c.partner_center, UsageImportMessage.model_validate_json(queue.pop(0))
        )
        queue.extend(queues.take())
    month = sim.usage_totals("current")["billingMonth"]
    record = c.usage_imports.get(IMPORTS_PARTITION, month)
    assert record.status is UsageImportStatus.SUCCEEDED, record.failure_reason
    owner = Principal("seed", "demo", None, Role.ACCOUNT_MANAGER, "o@d.example", SignInKind.WORK)

    answer = usage_report.build(c.usage_book, owner, "demo", UsageQuery(), Decimal(0))

    assert answer.rows and {r.customer_id for r in answer.rows} == {first.id}
    c.partner_center.close()  # type: ignore[attr-defined]


def _blob_sums(stack: Stack) -> dict[str, Decimal]:
    """Pre-tax usage per Azure plan subscription, summed from the export's own files: the
    manifest asked for through Graph, each blob downloaded with its SAS token, un-gzipped and
    read line by line here, independently of the importer."""
    graph = stack.sim.connection["graphBaseUrl"].rstrip("/")
    token = stack.sim.token(scope=stack.c.settings.partner_center_graph_scope)
    auth = {"Authorization": f"Bearer {token}"}
    with stack.sim.client() as http:
        started = http.post(
            f"{graph}/reports/partners/billing/usage/unbilled/export",
            json={"currencyCode": "EUR", "billingPeriod": "last", "attributeSet": "full"},
            headers=auth,
        )
        assert started.status_code == 202, started.text
        for _ in range(50):
            operation = http.get(started.headers["location"], headers=auth).json()
            if operation["status"].lower() in ("succeeded", "completed", "failed"):
                break
            time.sleep(0.1)
        assert operation["status"].lower() in ("succeeded", "completed"), operation
        manifest = (
            operation.get("resourceLocation")
            or http.get(operation["resourceLocation@odata.navigationLink"], headers=auth).json()
        )
        sums: dict[str, Decimal] = {}
        root = manifest["rootDirectory"].rstrip("/")
        for blob in manifest["blobs"]:
            raw = http.get(f"{root}/{blob['name']}?{manifest['sasToken'].lstrip('?')}")
            assert raw.status_code == 200, raw.text
            for text in gzip.decompress(raw.content).decode().splitlines():
                line = {k.lower(): v for k, v in json.loads(text, parse_float=Decimal).items()}
                sub = line["subscriptionid"]
                sums[sub] = sums.get(sub, Decimal(0)) + Decimal(str(line["billingpretaxtotal"]))
    return sums


def test_each_subscriptions_usage_equals_the_sum_of_the_export_blobs_lines(stack: Stack) -> None:
    run_import(stack)
    stack.month = stack.sim.usage_totals("last")["billingMonth"]
    admin = user(stack, "*", "admin@distributor.example", Role.DISTRIBUTOR_ADMIN)

    rows = json_of(report(stack, admin, groupBy="subscription"))["rows"]

    sums = _blob_sums(stack)
    mine = {s: sums[s] for s in stack.subscriptions["demo"] if s in sums}
    assert mine and all(v > 0 for v in mine.values())
    assert {r["group"]: r["microsoftCost"] for r in rows} == {s: money(v) for s, v in mine.items()}
