"""Contract: the production Azure usage client against the simulator's Graph usage export.

Export → poll → manifest → every blob, over real HTTPS; the sums equal what the simulator says it
holds for the period (`/_sim/usage`, computed from its generator without an export).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from localdev.partner_center_sim import SimulatorHandle
from shared.adapters.partner_center import PartnerCenterClient, build_partner_center
from shared.domain.errors import UpstreamRejected
from shared.domain.usage import (
    AZURE_PLAN_PRODUCT_ID,
    BillingPeriod,
    UnbilledUsageExport,
    UsageExportExpired,
    UsageExportFailed,
    UsageExportOperation,
    UsageExportRunning,
    UsageExportStatus,
    UsageExportSucceeded,
    UsageLine,
    UsageManifest,
)
from tests.integration.test_partner_center_contract import pc_settings

AZURE_PLAN = f"{AZURE_PLAN_PRODUCT_ID}:0001:CFQ7TTC0PB6M"
EXPORT_PATH = "/v1.0/reports/partners/billing/usage/unbilled/export"


@pytest.fixture
def sim(fresh_partner_center_sim: SimulatorHandle) -> SimulatorHandle:
    """The session's simulator, reset, with a few customers on Azure plans 40 days old."""
    fresh_partner_center_sim.seed(customers=4, seed=7)
    for customer in fresh_partner_center_sim.customers()[:3]:
        fresh_partner_center_sim.place_order(
            customer["id"], AZURE_PLAN, 1, term_duration="", billing_cycle="monthly"
        )
    # A full "last" month of usage, and some of the current one.
    fresh_partner_center_sim.advance_clock(days=40)
    return fresh_partner_center_sim


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[PartnerCenterClient]:
    """The production client from the production factory, Graph pointed at the simulator."""
    pc = build_partner_center(
        pc_settings(sim, PARTNER_CENTER_GRAPH_URL=sim.connection["graphBaseUrl"])
    )
    yield pc
    pc.close()


def finished(client: PartnerCenterClient, operation: UsageExportOperation) -> UsageExportStatus:
    """Poll until the export is no longer running (an importer would re-enqueue instead)."""
    for _ in range(20):
        status = client.usage_export_status(operation)
        if not isinstance(status, UsageExportRunning):
            return status
    raise AssertionError("the export never finished")


def manifest_of(client: PartnerCenterClient, period: BillingPeriod) -> UsageManifest:
    operation = client.start_usage_export(UnbilledUsageExport(period=period, currency="EUR"))
    status = finished(client, operation)
    assert isinstance(status, UsageExportSucceeded), status
    return status.manifest


def all_lines(client: PartnerCenterClient, manifest: UsageManifest) -> list[UsageLine]:
    return [line for blob in manifest.blobs for line in client.usage_lines(manifest, blob)]


@pytest.mark.parametrize("period", [BillingPeriod.LAST, BillingPeriod.CURRENT])
def test_usage_export_blobs_sum_to_what_the_simulator_holds_for_the_period(
    sim: SimulatorHandle, client: PartnerCenterClient, period: BillingPeriod
) -> None:
    sim.configure(usageExportPolls=2, usageLinesPerBlob=40)
    operation = client.start_usage_export(UnbilledUsageExport(period=period, currency="EUR"))
    assert isinstance(client.usage_export_status(operation), UsageExportRunning)
    status = finished(client, operation)
    assert isinstance(status, UsageExportSucceeded)
    manifest = status.manifest
    expected: dict[str, Any] = sim.usage_totals(period.value)

    lines = all_lines(client, manifest)

    assert manifest.blob_count > 1
    assert manifest.billing_month == expected["billingMonth"]
    assert len(lines) == expected["lines"] > 0
    assert sum((line.billing_pre_tax_total.amount for line in lines), Decimal(0)) == Decimal(
        expected["billingPreTaxTotal"]
    )
    assert sum((line.quantity for line in lines), Decimal(0)) == Decimal(expected["quantity"])
    by_subscription: dict[str, Decimal] = {}
    for line in lines:
        by_subscription[line.subscription_id] = (
            by_subscription.get(line.subscription_id, Decimal(0))
            + line.billing_pre_tax_total.amount
        )
    assert {k: str(v) for k, v in by_subscription.items()} == expected["bySubscription"]
    assert len(expected["bySubscription"]) >= 3
    assert {line.billing_month for line in lines} == {expected["billingMonth"]}
    assert all(line.meter_category and line.resource_group for line in lines)
    assert len({line.meter_category for line in lines}) > 1
    assert len({line.resource_group for line in lines}) > 1


def test_the_same_unchanged_period_exports_with_the_same_etag_and_import_keys(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    first = manifest_of(client, BillingPeriod.LAST)
    again = manifest_of(client, BillingPeriod.LAST)

    assert first.id != again.id
    assert first.etag == again.etag
    assert [first.import_key(b) for b in first.blobs] == [again.import_key(b) for b in again.blobs]
    assert all(
        k.startswith(f"{first.billing_month}:{first.etag}:")
        for k in map(first.import_key, first.blobs)
    )


def test_usage_export_refuses_a_partner_center_token_and_partner_center_a_graph_token(
    sim: SimulatorHandle,
) -> None:
    body = {"currencyCode": "EUR", "billingPeriod": "current", "attributeSet": "full"}
    with sim.client() as http:
        refused = http.post(
            EXPORT_PATH, json=body, headers={"Authorization": f"Bearer {sim.token()}"}
        )
        graph = {"Authorization": f"Bearer {sim.graph_token()}"}
        accepted = http.post(EXPORT_PATH, json=body, headers=graph)
        wrong_api = http.get("/v1/customers", headers=graph)

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert accepted.status_code == 202
    assert accepted.headers["Location"].startswith(sim.connection["graphBaseUrl"])
    assert wrong_api.status_code == 401


def test_reading_a_blob_after_its_sas_token_expired_asks_for_a_new_export(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    sim.configure(usageSasMinutes=5)
    manifest = manifest_of(client, BillingPeriod.LAST)
    assert list(client.usage_lines(manifest, manifest.blobs[0]))

    sim.advance_clock(minutes=6)

    with pytest.raises(UsageExportExpired):
        list(client.usage_lines(manifest, manifest.blobs[0]))


def test_a_blob_read_with_a_forged_sas_signature_is_refused(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    manifest = manifest_of(client, BillingPeriod.LAST)
    forged = manifest.model_copy(update={"sas_token": manifest.sas_token[:-4] + "0000"})
    unsigned = manifest.model_copy(update={"sas_token": ""})

    with pytest.raises(UsageExportExpired):
        list(client.usage_lines(forged, forged.blobs[0]))
    with pytest.raises(UsageExportExpired):
        list(client.usage_lines(unsigned, unsigned.blobs[0]))


def test_a_throttled_poll_waits_for_retry_after_and_then_reads_the_operation(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    operation = client.start_usage_export(
        UnbilledUsageExport(period=BillingPeriod.LAST, currency="EUR")
    )
    sim.clear_requests()
    sim.inject_faults(
        pathPrefix="/v1.0/reports/partners/billing/operations/",
        throttleRate=1.0,
        retryAfterSeconds=1,
        count=1,
    )

    started = time.monotonic()
    status = client.usage_export_status(operation)
    waited = time.monotonic() - started

    assert isinstance(status, UsageExportRunning)
    assert waited >= 1.0
    statuses = [r["status"] for r in sim.requests(path_prefix="/v1.0/reports/partners/billing/")]
    assert statuses == [429, 200]


def test_an_export_microsoft_gives_up_on_is_reported_failed_with_its_reason(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    sim.configure(usageExportFailure="Internal error while preparing the export")
    failed = finished(
        client,
        client.start_usage_export(UnbilledUsageExport(period=BillingPeriod.LAST, currency="EUR")),
    )
    sim.configure(usageExportFailure="")
    other_currency = finished(
        client,
        client.start_usage_export(UnbilledUsageExport(period=BillingPeriod.LAST, currency="USD")),
    )

    assert isinstance(failed, UsageExportFailed)
    assert failed.reason == "Internal error while preparing the export"
    assert isinstance(other_currency, UsageExportFailed)
    assert other_currency.code == "5000"
    assert other_currency.reason == "No data available"


def test_a_manifest_given_only_as_a_link_is_read_from_graph(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    sim.configure(usageManifestInline=False)

    manifest = manifest_of(client, BillingPeriod.LAST)

    assert manifest.blob_count == len(manifest.blobs) > 0
    assert len(all_lines(client, manifest)) == sim.usage_totals("last")["lines"]


def test_an_operation_url_outside_graph_is_never_sent_the_graph_token(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    elsewhere = UsageExportOperation(id="x", location="https://attacker.example/operations/x")

    with pytest.raises(UpstreamRejected):
        client.usage_export_status(elsewhere)


def test_basic_attribute_set_lines_still_map_without_meter_details(
    sim: SimulatorHandle, client: PartnerCenterClient
) -> None:
    operation = client.start_usage_export(
        UnbilledUsageExport(period=BillingPeriod.LAST, currency="EUR", full_attributes=False)
    )
    status = finished(client, operation)
    assert isinstance(status, UsageExportSucceeded)

    lines = all_lines(client, status.manifest)

    assert len(lines) == sim.usage_totals("last")["lines"]
    assert all(line.meter_category == "" for line in lines)
    assert all(line.billing_pre_tax_total.amount > 0 for line in lines)


def test_the_simulator_serves_blobs_without_any_bearer_token(sim: SimulatorHandle) -> None:
    """The storage host takes the SAS token alone (the client sends no Authorization there)."""
    with sim.client(headers={"Authorization": f"Bearer {sim.graph_token()}"}) as http:
        location = http.post(
            EXPORT_PATH, json={"currencyCode": "EUR", "billingPeriod": "last"}
        ).headers["Location"]
        payload = http.get(location).json()
        while payload["status"] == "running":
            payload = http.get(location).json()
    manifest = payload["resourceLocation"]
    url = f"{manifest['rootDirectory']}/{manifest['blobs'][0]['name']}?{manifest['sasToken']}"
    with httpx.Client(verify=sim.ssl_context) as anonymous:
        assert anonymous.get(url).status_code == 200
