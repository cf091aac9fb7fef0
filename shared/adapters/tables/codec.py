"""Typed mapping between pydantic records and Table Storage entities.

Scalars become typed properties (so they can be filtered on), nested models are flattened
into prefixed properties (`address.city` → `AddressCity`), and only genuinely nested parts
(lists, dicts) are stored as JSON text. Decimal is stored as a string (never a double),
datetimes as aware UTC, enums by value, `None` is left out (Table Storage holds no null): a
field that must be given but may be None (`erp: Money | None`, no default) loads back as None
when its property is absent, at any depth.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Generic, TypeVar
from uuid import UUID

from azure.data.tables import EdmType, EntityProperty
from pydantic import AwareDatetime, BaseModel, TypeAdapter

from shared.domain.model import Record

M = TypeVar("M", bound=Record)

RESERVED = {"PartitionKey", "RowKey", "Timestamp", "etag", "odata.etag"}
_INT32 = 2**31
_SCALARS: tuple[type, ...] = (str, int, float, bool, Decimal, datetime, date, UUID, Enum)


def pascal(name: str) -> str:
    """`company_name` → `CompanyName` (the property name used in storage)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap_optional(args[0])
    if origin is typing.Annotated:
        return _unwrap_optional(typing.get_args(tp)[0])
    return tp


def _is_aware_datetime(tp: Any) -> bool:
    # pydantic's AwareDatetime is no datetime subclass; stored as one, it can be filtered on.
    return _unwrap_optional(tp) is AwareDatetime


def _is_scalar(tp: Any) -> bool:
    tp = _unwrap_optional(tp)
    if typing.get_origin(tp) is typing.Literal:
        return True
    return isinstance(tp, type) and issubclass(tp, _SCALARS)


def _admits_none(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _admits_none(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return any(a is type(None) or _admits_none(a) for a in typing.get_args(tp))
    return tp is None or tp is type(None) or tp is Any


def _is_model(tp: Any) -> bool:
    tp = _unwrap_optional(tp)
    return isinstance(tp, type) and issubclass(tp, BaseModel)


@dataclass(frozen=True)
class _Field:
    name: str
    prop: str
    kind: str  # "scalar" | "datetime" | "model" | "json"
    nested: EntityCodec[Any] | None = None
    adapter: TypeAdapter[Any] | None = None
    old_prop: str | None = None  # the property it was stored under before a rename
    # Required but nullable: stored as no property, so an absent property means None.
    none_if_absent: bool = False


def _encode_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store aware UTC only")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, int) and not -_INT32 <= value < _INT32:
        return EntityProperty(value, EdmType.INT64)
    return value


def decode_scalar(value: Any) -> Any:
    """A scalar property as read back (an aware datetime; a typed property's value)."""
    if isinstance(value, EntityProperty):
        return value.value
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return value


class EntityCodec(Generic[M]):
    """Converts one record type to and from entity dictionaries."""

    def __init__(self, model: type[M], prefix: str = "") -> None:
        self.model = model
        self.fields: list[_Field] = []
        for name, info in model.model_fields.items():
            if info.exclude:
                continue
            prop = prefix + pascal(name)
            if prop in RESERVED:
                raise TypeError(f"{model.__name__}.{name}: {prop} is reserved by Table Storage")
            tp = info.annotation
            renamed = getattr(model, "renamed_fields", {}).get(name)
            old = prefix + pascal(renamed) if renamed else None
            absent = info.is_required() and _admits_none(tp)
            if _is_aware_datetime(tp):
                self.fields.append(
                    _Field(name, prop, "datetime", old_prop=old, none_if_absent=absent)
                )
            elif _is_scalar(tp):
                self.fields.append(
                    _Field(name, prop, "scalar", old_prop=old, none_if_absent=absent)
                )
            elif _is_model(tp):
                nested = EntityCodec(_unwrap_optional(tp), prefix=prop)
                self.fields.append(
                    _Field(name, prop, "model", nested=nested, none_if_absent=absent)
                )
            else:
                adapter = TypeAdapter(tp or Any)
                self.fields.append(
                    _Field(name, prop, "json", adapter=adapter, none_if_absent=absent)
                )

    def to_properties(self, item: BaseModel) -> dict[str, Any]:
        """The storage properties of `item` (without keys)."""
        out: dict[str, Any] = {}
        for f in self.fields:
            value = getattr(item, f.name)
            if value is None:
                continue
            if f.kind in ("scalar", "datetime"):
                out[f.prop] = _encode_scalar(value)
            elif f.kind == "model":
                assert f.nested is not None
                out[f.prop] = True  # presence marker, so an all-None nested model survives
                out.update(f.nested.to_properties(value))
            else:
                assert f.adapter is not None
                out[f.prop] = f.adapter.dump_json(value).decode()
        return out

    def scalar_prop(self, name: str) -> str:
        """The storage property of a scalar field (ValueError for any other field)."""
        for f in self.fields:
            if f.name == name and f.kind == "scalar":
                return f.prop
        raise ValueError(f"{self.model.__name__} has no scalar field {name}")

    def values(self, entity: typing.Mapping[str, Any]) -> dict[str, Any]:
        """Field values (not yet validated) read from an entity's properties."""
        data: dict[str, Any] = {}
        for f in self.fields:
            if f.kind == "model":
                assert f.nested is not None
                if entity.get(f.prop):
                    data[f.name] = f.nested.values(entity)
                elif f.none_if_absent:
                    data[f.name] = None
                continue
            prop = f.prop
            if entity.get(prop) is None and f.old_prop is not None:
                prop = f.old_prop
            if entity.get(prop) is None:
                if f.none_if_absent:
                    data[f.name] = None
                continue
            raw = entity[prop]
            if f.kind == "datetime" and isinstance(raw, str):
                # Rows written before AwareDatetime was stored as a DateTime hold JSON text.
                data[f.name] = json.loads(raw) if raw.startswith('"') else raw
            elif f.kind in ("scalar", "datetime"):
                data[f.name] = decode_scalar(raw)
            else:
                data[f.name] = json.loads(raw)
        # Properties an older version of the record stored; the model migrates them on load.
        legacy: typing.Mapping[str, str] = getattr(self.model, "legacy_properties", {})
        for prop, name in legacy.items():
            if entity.get(prop) is not None and data.get(name) is None:
                data[name] = decode_scalar(entity[prop])
        return data

    def from_entity(self, entity: typing.Mapping[str, Any]) -> M:
        """The record stored in `entity`, with its ETag."""
        item = self.model.model_validate(self.values(entity))
        metadata = getattr(entity, "metadata", None) or {}
        item.etag = metadata.get("etag") or entity.get("odata.etag")
        return item
