"""Partner Center models: camelCase both ways, unknown fields kept, aware UTC, Decimal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from shared.adapters.partner_center.wire import (
    Customer,
    OrderLineItemPricing,
    ResourceCollection,
    Subscription,
    iso_date,
)


def test_unknown_fields_survive_a_round_trip() -> None:
    wire = {"id": "s", "quantity": 1, "brandNewField": [1, 2], "attributes": {"etag": "e"}}

    subscription = Subscription.model_validate(wire)

    assert subscription.to_wire(as_read=True) == wire


def test_new_resources_go_out_without_nulls() -> None:
    assert Customer(associated_partner_id="r").to_wire() == {"associatedPartnerId": "r"}


def test_datetimes_are_always_aware_utc() -> None:
    subscription = Subscription.model_validate(
        {
            "id": "s",
            "creationDate": "2024-01-01T10:00:00",
            "commitmentEndDate": "2024-12-31T02:00:00+02:00",
        }
    )

    assert subscription.creation_date == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert subscription.commitment_end_date == datetime(2024, 12, 31, 0, tzinfo=UTC)
    assert subscription.commitment_end_date is not None
    assert subscription.commitment_end_date.utcoffset() == timedelta(0)


def test_money_is_decimal_and_exact() -> None:
    pricing = OrderLineItemPricing.model_validate_json('{"listPrice": 10.10, "total": "0.1"}')

    assert pricing.list_price == Decimal("10.10")
    assert pricing.total == Decimal("0.1")


def test_collection_token_comes_from_body_or_links() -> None:
    body = ResourceCollection[Customer].model_validate({"items": [], "continuationToken": "a"})
    links = ResourceCollection[Customer].model_validate(
        {"links": {"next": {"headers": [{"key": "MS-ContinuationToken", "value": "b"}]}}}
    )

    assert body.next_page_token() == "a"
    assert links.next_page_token() == "b"
    assert ResourceCollection[Customer].model_validate({"items": []}).next_page_token() is None


def test_query_dates_are_utc_with_z() -> None:
    cet = timezone(timedelta(hours=1))
    assert iso_date(datetime(2024, 1, 1, 1, 30, tzinfo=cet)) == "2024-01-01T00:30:00Z"
    assert iso_date(date(2024, 1, 2)) == "2024-01-02"
