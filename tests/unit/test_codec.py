"""Entity mapping: typed properties, flattened nested models, JSON only for lists/dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

import pytest
from azure.data.tables import EdmType, EntityProperty
from pydantic import AwareDatetime as AwareDatetimeField
from pydantic import BaseModel

from shared.adapters.tables.codec import EntityCodec
from shared.domain.model import Record
from shared.domain.pricing import PriceSheetRow, ResellerPricing, price_line
from shared.domain.subscriptions import Subscription


class Colour(StrEnum):
    RED = "Red"


class Address(BaseModel):
    street: str
    city: str | None = None


class Line(BaseModel):
    sku: str
    price: Decimal


class Thing(Record):
    name: str
    price: Decimal
    count: int
    big: int = 0
    when: datetime
    colour: Colour
    address: Address | None = None
    lines: list[Line] = []
    note: str | None = None


def thing(**kw) -> Thing:
    base = dict(
        name="A",
        price=Decimal("10.10"),
        count=3,
        when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        colour=Colour.RED,
        address=Address(street="Main 1", city="Praha"),
        lines=[Line(sku="x", price=Decimal("1.005"))],
    )
    return Thing(**{**base, **kw})


def test_scalars_are_typed_properties_and_money_is_a_string():
    props = EntityCodec(Thing).to_properties(thing())
    assert props["Name"] == "A"
    assert props["Price"] == "10.10"
    assert props["Count"] == 3
    assert props["Colour"] == "Red"
    assert props["When"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_nested_model_is_flattened_so_it_can_be_filtered_on():
    props = EntityCodec(Thing).to_properties(thing())
    assert props["AddressStreet"] == "Main 1"
    assert props["AddressCity"] == "Praha"
    assert "Address" in props


def test_lists_are_json_text_and_none_is_left_out():
    props = EntityCodec(Thing).to_properties(thing())
    assert props["Lines"] == '[{"sku":"x","price":"1.005"}]'
    assert "Note" not in props


def test_large_int_is_stored_as_int64():
    props = EntityCodec(Thing).to_properties(thing(big=2**40))
    assert props["Big"] == EntityProperty(2**40, EdmType.INT64)


def test_round_trip_keeps_every_value_exactly():
    codec = EntityCodec(Thing)
    original = thing(big=2**40, address=Address(street="S"))
    props = codec.to_properties(original)
    entity = {"PartitionKey": "p", "RowKey": "r", **props}
    back = codec.from_entity(entity)
    assert back == original
    assert back.price == Decimal("10.10")
    assert back.address == Address(street="S", city=None)


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        EntityCodec(Thing).to_properties(thing().model_copy(update={"when": datetime(2026, 1, 1)}))


def test_reserved_property_names_are_refused():
    class Bad(Record):
        row_key: str

    with pytest.raises(TypeError, match="reserved"):
        EntityCodec(Bad)


class Expiring(Record):
    key: str
    expires_at: AwareDatetimeField
    accepted_at: AwareDatetimeField | None = None


def test_aware_datetimes_are_stored_as_datetimes_so_retention_can_filter_on_them():
    codec = EntityCodec(Expiring)
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    props = codec.to_properties(Expiring(key="k", expires_at=moment))
    assert props["ExpiresAt"] == moment and "AcceptedAt" not in props
    assert codec.from_entity({"Key": "k", **props}).expires_at == moment


def test_aware_datetimes_written_as_json_text_before_still_read():
    legacy = {"Key": "k", "ExpiresAt": '"2026-01-02T03:04:05Z"'}
    read = EntityCodec(Expiring).from_entity(legacy)
    assert read.expires_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Layers(BaseModel):
    cost: Decimal
    retail: Address | None  # required, may be None (an offer without a retail price)
    markup: Decimal | None


class Priced(Record):
    name: str
    layers: Layers
    optional_layers: Layers | None = None


def test_a_required_field_that_is_none_loads_back_as_none_at_any_depth():
    codec = EntityCodec(Priced)
    item = Priced(name="A", layers=Layers(cost=Decimal("1.50"), retail=None, markup=None))

    props = codec.to_properties(item)

    assert not any(p.startswith("LayersRetail") or p == "LayersMarkup" for p in props)
    assert codec.from_entity(props) == item


def subscription_priced_without_retail_price() -> Subscription:
    """A subscription of an offer whose price-sheet row has no ERP (no retail price)."""
    row = PriceSheetRow(
        product_id="CFQ7TTC0LH18",
        sku_id="0001",
        segment="commercial",
        term="P1Y",
        billing_cycle="monthly",
        currency="CZK",
        microsoft_cost=Decimal("100"),
        erp=None,
    )
    pricing = ResellerPricing(currency="CZK", distributor_markup_percent=Decimal(5))
    priced = price_line(pricing, row, quantity=3)
    assert priced.unit.recommended_retail_price is None
    return Subscription(
        reseller="demo",
        customer_id="c1",
        id="s1",
        name="Basic",
        quantity=3,
        status="active",
        priced=priced,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        updated_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


def test_a_subscription_priced_from_an_offer_without_retail_price_loads_back():
    sub = subscription_priced_without_retail_price()
    codec = EntityCodec(Subscription)

    assert codec.from_entity(codec.to_properties(sub)) == sub


class Grade(BaseModel):
    label: str
    percent: Decimal | None  # required, and None is a value (no price: no margin percent)


class Graded(Record):
    grade: Grade | None = None


def test_a_required_field_that_is_none_reads_back_as_none_in_a_flattened_model():
    codec = EntityCodec(Graded)
    original = Graded(grade=Grade(label="free", percent=None))
    entity = {"PartitionKey": "p", "RowKey": "r", **codec.to_properties(original)}
    assert codec.from_entity(entity) == original
