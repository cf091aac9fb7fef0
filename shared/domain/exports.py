"""Report exports, the parts that are rules rather than file formats: which formats there are,
how a country writes its decimals, and what the downloaded file is called.

The writers themselves (CSV, XLSX) are in `shared/adapters/exports.py`; the HTTP choice between
JSON and a file is in `functions/_exports.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, StrEnum

from pydantic import ConfigDict, Field

from shared.domain.model import WireModel


class ExportFormat(StrEnum):
    """What a report answers in: JSON (the default), or a file to download."""

    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"

    @property
    def media_type(self) -> str:
        """The Content-Type of this format."""
        return _MEDIA_TYPES[self]


class ExportQuery(WireModel):
    """The query parameter every report route takes; a route's query model extends it."""

    model_config = ConfigDict(extra="forbid")

    format: ExportFormat | None = Field(
        None,
        description="json (the default), csv or xlsx; without it, the Accept header decides.",
    )


_MEDIA_TYPES = {
    ExportFormat.JSON: "application/json",
    ExportFormat.CSV: "text/csv",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

# ISO 3166-1 alpha-2 countries whose usual (CLDR) decimal separator is a comma: most of
# continental Europe, Russia and its neighbours, Turkey, most of South America, Indonesia,
# Vietnam, South Africa. Everywhere else (US, GB, IE, CH, LI, MT, CA, AU, NZ, MX, Asia, …) a
# point, which is also the answer for a country not listed.
# fmt: off
_DECIMAL_COMMA = frozenset((
    "AD", "AL", "AM", "AO", "AR", "AT", "AZ", "BA", "BE", "BG", "BO", "BR", "BY", "CL",
    "CM", "CO", "CR", "CU", "CV", "CY", "CZ", "DE", "DK", "DZ", "EC", "EE", "ES", "FI",
    "FO", "FR", "GE", "GL", "GR", "HR", "HU", "ID", "IS", "IT", "KZ", "LT", "LU", "LV",
    "MA", "MC", "MD", "ME", "MK", "MN", "MZ", "NL", "NO", "PE", "PL", "PT", "PY", "RO",
    "RS", "RU", "SE", "SI", "SK", "SM", "TN", "TR", "UA", "UY", "UZ", "VE", "VN", "XK",
    "ZA",
))
# fmt: on


def uses_decimal_comma(country: str) -> bool:
    """Whether people in `country` (ISO 3166-1 alpha-2) write 12,50 rather than 12.50.

    Spreadsheets opened there read CSV with `;` between fields, since `,` is in the numbers.
    """
    return country.strip().upper() in _DECIMAL_COMMA


# What a file name's parts may hold: ASCII letters, digits and "-" (anything else in a value
# becomes one "-"; the only "." is the extension's).
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_MAX_NAME = 150


def _safe(value: object) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, datetime | date):
        value = value.isoformat()
    elif isinstance(value, Decimal):
        value = format(value, "f")
    return _UNSAFE.sub("-", str(value)).strip("-")


def export_filename(
    report: str, reseller: str, filters: Mapping[str, object], fmt: ExportFormat
) -> str:
    """`<report>_<reseller>_<filter values…>.<ext>`, in safe characters only.

    Filters that are None or empty are left out; the others appear in the order given, as
    `name-value` (`licences_demo_month-2026-11_customer-01J….csv`), so two downloads of
    different selections never share a name. Too long a name is cut, never the extension.
    """
    parts = [_safe(report) or "report", _safe(reseller) or "reseller"]
    for name, value in filters.items():
        if value is None or value == "" or value is False:
            continue
        text = _safe(value)
        if text:
            parts.append(f"{_safe(name)}-{text}" if value is not True else _safe(name))
    return "_".join(parts)[:_MAX_NAME].rstrip("-_") + f".{fmt.value}"
