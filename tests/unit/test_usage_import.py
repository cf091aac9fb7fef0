"""The Azure usage import and the report's sums, with the in-memory usage export."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.domain.errors import NotFound
from shared.domain.failures import Failure, FailureKind
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.money import Money
from shared.domain.usage import BillingPeriod, UsageExportExpired
from shared.domain.usage_report import (
    IMPORTS_PARTITION,
    Owner,
    UsageImportMessage,
    UsageImportStatus,
    aggregate,
    rows_partition,
    usage_amounts,
)
from shared.services import usage_import, usage_report
from shared.services.usage_import import UsageBook, UsagePolicy
from shared.services.usage_report import UsageQuery
from tests.functions.world import CUST_A, CUST_B, CUST_OTHER, World, add_customers, build_world
from tests.usage_fakes import FakeAzureUsage, usage_line
from tests.usage_report_fakes import claim_tenant, drain, install_usage, pending

TENANT_A, TENANT_B, TENANT_OTHER = (
    "aaaaaaaa-0000-0000-0000-00000000000a",
    "bbbbbbbb-0000-0000-0000-00000000000b",
    "cccccccc-0000-0000-0000-00000000000c",
)
STRANGER = "dddddddd-0000-0000-0000-00000000000d"
MONTH = "2026-01"
DAY = date(2026, 1, 3)
STAFF = Principal("u1", "demo", None, Role.ACCOUNT_MANAGER, "owner@demo.example", SignInKind.WORK)
ADMIN = Principal("u0", "*", None, Role.DISTRIBUTOR_ADMIN, "admin@d.example", SignInKind.WORK)
CUSTOMER_USER = Principal(
    "u2", "demo", CUST_A, Role.CUSTOMER_READER, "c@a.example", SignInKind.WORK
)


@pytest.fixture
def world() -> World:
    w = build_world()
    add_customers(w)
    claim_tenant(w.container, "demo", CUST_A, TENANT_A)
    claim_tenant(w.container, "demo", CUST_B, TENANT_B)
    claim_tenant(w.container, "other", CUST_OTHER, TENANT_OTHER)
    return w


@pytest.fixture
def book(world: World) -> UsageBook:
    return install_usage(world.container)


@pytest.fixture
def usage(world: World) -> FakeAzureUsage:
    lines = [
        usage_line("sub-a1", DAY, customer=TENANT_A, quantity="10", unit_price="0.5"),
        usage_line("sub-a1", DAY + timedelta(days=1), customer=TENANT_A, quantity="4",
                   unit_price="0.5"),
        usage_line("sub-a1", DAY, customer=TENANT_A, meter_category="Storage",
                   resource_group="rg-data", quantity="3", unit_price="0.3333"),
        usage_line("sub-b1", DAY, customer=TENANT_B, quantity="1", unit_price="2"),
        usage_line("sub-o1", DAY, customer=TENANT_OTHER, quantity="7", unit_price="1"),
        usage_line("sub-x1", DAY, customer=STRANGER, quantity="100", unit_price="1"),
    ]  # fmt: skip
    return FakeAzureUsage(
        now=world.clock.now, usage={MONTH: lines}, running_polls=1, lines_per_blob=2
    )


def report(book: UsageBook, principal: Principal = STAFF, **query: Any) -> Any:
    return usage_report.build(book, principal, "demo", UsageQuery.model_validate(query), Decimal(0))


def test_aggregate_sums_a_blobs_lines_per_customer_and_grain_and_counts_unknown_tenants() -> None:
    owners = {TENANT_A: Owner("demo", CUST_A)}
    lines = [
        usage_line("s1", DAY, customer=TENANT_A.upper(), quantity="2", unit_price="0.5"),
        usage_line("S1", DAY + timedelta(days=1), customer=TENANT_A, quantity="3",
                   unit_price="0.5"),
        usage_line("s1", DAY, customer=TENANT_A, resource_group="rg-data", quantity="1"),
        usage_line("s9", DAY, customer=STRANGER),
        usage_line("s9", DAY, customer=STRANGER),
    ]  # fmt: skip

    sums = aggregate(lines, owners)

    assert (sums.lines, sums.skipped, sums.unknown_tenants) == (5, 2, [STRANGER])
    by_group = {r.resource_group: r for r in sums.rows}
    assert set(by_group) == {"rg-web", "rg-data"}
    assert by_group["rg-web"].quantity == Decimal(5)
    assert by_group["rg-web"].pre_tax == Decimal("2.5")
    assert by_group["rg-web"].lines == 2
    assert by_group["rg-web"].customer_id == CUST_A


def test_usage_amounts_apply_the_distributor_then_the_usage_markup_rounding_once() -> None:
    amounts = usage_amounts(Decimal("10.004"), "EUR", Decimal(5), Decimal("12.5"))

    # 10.004 × 1.05 = 10.5042 → 10.50; × 1.125 = 11.817225 → 11.82 (not 10.50 × 1.125 = 11.8125)
    assert amounts.money("microsoft_cost") == Money.of("10.00", "EUR")
    assert amounts.money("reseller_cost") == Money.of("10.50", "EUR")
    assert amounts.money("customer_price") == Money.of("11.82", "EUR")
    assert amounts.money("margin") == Money.of("1.32", "EUR")
    assert amounts.margin_percent == Decimal("11.17")


def test_an_import_runs_start_poll_blobs_finish_and_the_report_sums_the_resellers_lines(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage_import.begin(book)

    steps = drain(book, usage)

    assert steps == ["start", "poll", "poll", "blob0", "blob1", "blob2", "finish"]
    record = book.imports.get(IMPORTS_PARTITION, MONTH)
    assert record.status is UsageImportStatus.SUCCEEDED
    assert (record.lines, record.skipped_lines, record.unknown_tenants) == (6, 1, [STRANGER])
    answer = report(book)
    rows = {(r.customer_id, r.group): r for r in answer.rows}
    assert set(rows) == {
        (CUST_A, "Storage"),
        (CUST_A, "Virtual Machines"),
        (CUST_B, "Virtual Machines"),
    }
    assert rows[(CUST_A, "Virtual Machines")].quantity == Decimal(14)
    assert rows[(CUST_A, "Virtual Machines")].reseller_cost == Decimal("7.00")
    # demo's usage mark-up defaults to its default mark-up (10 %)
    assert rows[(CUST_A, "Virtual Machines")].customer_price == Decimal("7.70")
    # 5 + 2 + 0.9999 + 2, rounded once
    assert [(t.currency, t.reseller_cost) for t in answer.totals] == [("EUR", Decimal("10.00"))]


def test_a_blob_imported_twice_counts_once(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    crashes = {"blob-rows": 1}

    def crash_once(step: str) -> None:
        if crashes.get(step):
            crashes[step] -= 1
            raise RuntimeError("killed after the rows were written")

    book.after_step = crash_once
    usage_import.begin(book)
    queue = pending(book)
    redelivered = 0
    while queue:
        msg = UsageImportMessage.model_validate(queue.pop(0))
        try:
            usage_import.handle(book, usage, msg)
        except RuntimeError:
            redelivered += 1
            queue.insert(0, msg.body())  # the host delivers it again
        queue.extend(pending(book))

    assert redelivered == 1
    record = book.imports.get(IMPORTS_PARTITION, MONTH)
    assert record.status is UsageImportStatus.SUCCEEDED
    assert record.lines == 6
    total = report(book).totals[0]
    assert total.reseller_cost == Decimal("10.00")  # 5 + 2 + 0.9999 + 2, once


def test_a_finished_blob_delivered_again_after_the_import_changes_nothing(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage_import.begin(book)
    drain(book, usage)
    record = book.imports.get(IMPORTS_PARTITION, MONTH)
    before = report(book).totals

    usage_import.handle(book, usage, UsageImportMessage(step="blob", month=MONTH,
                                                        runId=record.run_id, blob=0))  # fmt: skip
    drain(book, usage)

    assert report(book).totals == before
    assert book.imports.get(IMPORTS_PARTITION, MONTH).lines == record.lines


def test_the_next_days_export_replaces_the_month_only_once_all_its_blobs_are_in(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage_import.begin(book)
    drain(book, usage)
    first = book.imports.get(IMPORTS_PARTITION, MONTH)
    world.clock.advance(days=1)
    usage.usage[MONTH].append(
        usage_line("sub-b1", DAY + timedelta(days=2), customer=TENANT_B, quantity="5",
                   unit_price="1")
    )  # fmt: skip
    usage_import.begin(book)
    queue = pending(book)
    # Run the new import up to its last blob, but not its finish.
    while queue:
        msg = UsageImportMessage.model_validate(queue.pop(0))
        if msg.step.value == "finish":
            held = msg
            break
        usage_import.handle(book, usage, msg)
        queue.extend(pending(book))
    assert report(book).totals[0].reseller_cost == Decimal("10.00")  # still the old import

    usage_import.handle(book, usage, held)

    second = book.imports.get(IMPORTS_PARTITION, MONTH)
    assert second.active_tag != first.active_tag
    assert report(book).totals[0].reseller_cost == Decimal("15.00")
    rows: Any = book.rows
    assert rows_partition("demo", MONTH, first.active_tag or "") not in rows.rows
    assert second.stale_tags == []


def test_a_failed_export_is_recorded_with_its_reason_and_the_next_day_starts_anew(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage.failure = "Internal error while preparing the export"
    usage_import.begin(book)
    drain(book, usage)
    failed = book.imports.get(IMPORTS_PARTITION, MONTH)
    assert failed.status is UsageImportStatus.FAILED
    assert "Internal error while preparing the export" in (failed.failure_reason or "")

    usage.failure = ""
    world.clock.advance(days=1)
    usage_import.begin(book)
    drain(book, usage)

    again = book.imports.get(IMPORTS_PARTITION, MONTH)
    assert again.status is UsageImportStatus.SUCCEEDED
    assert again.run_id != failed.run_id
    assert again.failure_reason is None


def test_an_expired_blob_fails_the_run_through_give_up_naming_it(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage_import.begin(book)
    queue = pending(book)
    while queue:
        msg = UsageImportMessage.model_validate(queue.pop(0))
        if msg.step.value == "blob":
            usage.expire_blobs()
            with pytest.raises(UsageExportExpired) as raised:
                usage_import.handle(book, usage, msg)
            usage_import.give_up(book, msg, Failure.of(raised.value))
            break
        usage_import.handle(book, usage, msg)
        queue.extend(pending(book))

    record = book.imports.get(IMPORTS_PARTITION, MONTH)
    assert record.status is UsageImportStatus.FAILED
    assert record.failure_reason is not None and record.failure_reason.startswith("blob: ")
    assert Failure.of(UsageExportExpired("x")).kind is FailureKind.REFUSED


def test_a_message_of_an_older_run_changes_nothing(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage_import.begin(book)
    old = pending(book)[0]
    world.clock.advance(days=1)
    book.imports.update(
        book.imports.get(IMPORTS_PARTITION, MONTH).model_copy(
            update={"status": UsageImportStatus.FAILED}
        )
    )
    usage_import.begin(book)
    pending(book)

    usage_import.handle(book, usage, UsageImportMessage.model_validate(old))

    assert usage.calls == []
    assert pending(book) == []


def test_begin_keeps_a_moving_run_and_restarts_one_that_stopped(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    first = usage_import.begin(book)[0]
    world.clock.advance(hours=1)
    assert usage_import.begin(book)[0].run_id == first.run_id
    world.clock.advance(hours=7)

    restarted = usage_import.begin(book)[0]

    assert restarted.run_id != first.run_id
    assert restarted.status is UsageImportStatus.QUEUED


def test_the_last_month_is_imported_too_on_the_first_days_of_a_month(world: World) -> None:
    policy = UsagePolicy(last_month_days=5)
    world.clock.current = world.clock.current.replace(day=3)
    assert usage_import.due_periods(world.clock.now(), policy) == [
        BillingPeriod.CURRENT,
        BillingPeriod.LAST,
    ]
    world.clock.current = world.clock.current.replace(day=6)
    assert usage_import.due_periods(world.clock.now(), policy) == [BillingPeriod.CURRENT]


def test_the_report_drills_down_from_meter_categories_to_resource_groups(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage.usage[MONTH].append(
        usage_line("sub-a1", DAY, customer=TENANT_A, resource_group="rg-dev", quantity="2")
    )
    usage_import.begin(book)
    drain(book, usage)

    answer = report(book, customer=CUST_A, meterCategory="Virtual Machines",
                    groupBy="resourceGroup")  # fmt: skip

    assert [(r.group, r.quantity) for r in answer.rows] == [
        ("rg-dev", Decimal(2)),
        ("rg-web", Decimal(14)),
    ]
    assert answer.totals[0].reseller_cost == Decimal("8.00")


def test_the_usage_markup_setting_prices_the_customer_and_the_distributor_sees_its_cost(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    demo = world.container.resellers.get("reseller", "demo")
    demo.settings.usage_markup_percent = Decimal(20)
    demo.distributor_markup_percent = Decimal(10)
    world.container.resellers.update(demo)
    usage_import.begin(book)
    drain(book, usage)

    total = report(book, ADMIN).totals[0]

    assert total.microsoft_cost == Decimal("10.00")  # 9.9999
    assert total.reseller_cost == Decimal("11.00")  # 10.99989
    assert total.customer_price == Decimal("13.20")  # 13.199868
    assert total.margin == Decimal("2.20")


def test_a_customer_user_gets_its_own_rows_only_and_another_customer_is_not_found(
    world: World, book: UsageBook, usage: FakeAzureUsage
) -> None:
    usage_import.begin(book)
    drain(book, usage)

    answer = report(book, CUSTOMER_USER)

    assert {r.customer_id for r in answer.rows} == {CUST_A}
    with pytest.raises(NotFound):
        report(book, CUSTOMER_USER, customer=CUST_B)


def test_a_month_never_imported_has_no_rows(book: UsageBook) -> None:
    answer = report(book, month="2025-06")

    assert (answer.rows, answer.totals, answer.imported_at) == ([], [], None)
