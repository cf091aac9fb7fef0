"""Parsing Partner Center's price sheet: a CSV file, plain or zipped, into typed rows."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO

from pydantic import ValidationError

from shared.adapters.partner_center.wire import PriceSheetRow
from shared.domain.errors import UpstreamRejected

_ZIP_MAGIC = b"PK\x03\x04"

# The sheet has used ISO 8601 ("2021-10-01T00:00:00.0000000Z") and US-style local renderings
# ("2/1/2023 0:00", "3/1/2018 12:00:00 AM") over the years; all of them mean UTC.
_US_DATE_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
)


def parse_price_sheet(stream: IO[bytes]) -> Iterator[PriceSheetRow]:
    """Rows of a price sheet from a seekable binary stream holding CSV or a zip with one CSV."""
    head = stream.read(4)
    stream.seek(0)
    if head == _ZIP_MAGIC:
        with zipfile.ZipFile(stream) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise UpstreamRejected("price sheet archive holds no CSV file", code="price_sheet")
            with archive.open(names[0]) as member:
                yield from _rows(member)
    else:
        yield from _rows(stream)


def _rows(binary: IO[bytes]) -> Iterator[PriceSheetRow]:
    # utf-8-sig: the file starts with a byte-order mark, which would otherwise stick to the
    # first column's name.
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text)
    for line, raw in enumerate(reader, start=2):
        if not any((value or "").strip() for value in raw.values()):
            continue
        row: dict[str, str | datetime | None] = {
            (key or "").strip().strip("\u201c\u201d"): _clean(value)
            for key, value in raw.items()
            if key is not None
        }
        for column in ("EffectiveStartDate", "EffectiveEndDate"):
            value = row.get(column)
            if isinstance(value, str):
                row[column] = _parse_datetime(value)
        try:
            yield PriceSheetRow.model_validate(row)
        except ValidationError as exc:
            raise UpstreamRejected(
                f"price sheet line {line} is not readable: {exc.errors()[0]['msg']}",
                code="price_sheet",
            ) from exc


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().strip("\u201c\u201d")
    return value or None


def _parse_datetime(value: str) -> datetime | str:
    try:
        # Seven fractional digits ("....0000000Z") are beyond fromisoformat before 3.11's
        # relaxed parser only; trim to microseconds to be safe.
        iso = value.replace("Z", "+00:00")
        if "." in iso:
            whole, _, rest = iso.partition(".")
            digits = "".join(c for c in rest if c.isdigit())
            zone = rest[len(digits) :]
            iso = f"{whole}.{digits[:6]}{zone}"
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        for fmt in _US_DATE_FORMATS:
            try:
                parsed = datetime.strptime(value, fmt)  # noqa: DTZ007 - made UTC below
                break
            except ValueError:
                continue
        else:
            return value  # let the model report it
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
