"""Report rows as files: CSV (UTF-8 with BOM) and XLSX (openpyxl, write-only), one code path for
every report.

Columns come from the row model, never from the data: a customer user's report is written from
its own row model, which has no cost, margin or mark-up field, so no such column can appear.

- Fields in declaration order (`exclude=True` ones left out, as in JSON); the title is the
  field's `title`, else its alias (camelCase) humanised: `renewsOn` → "Renews on".
- Scalars: text (str, enums by value, literals, e-mail addresses), integers, Decimals, floats,
  booleans, dates and datetimes. An aware datetime is written as naive UTC (neither CSV nor
  Excel keeps a zone) and its title says so: "Renews at (UTC)". `None` is an empty cell.
- `Money` fields: each becomes one amount column (its title), and the row gets **one**
  "Currency" column, right after the first amount. A report row is in one currency (the
  reseller's; DESIGN.md's "a decimal string beside one `currency` field of its object"), so
  one column keeps the sheet summable and readable; a row whose amounts are in two currencies
  is refused (`MixedCurrencies`) rather than written wrong. A model that really needs two
  currencies in a row should carry them as two text fields.
- Any other nested model, list or dict is refused when the columns are first derived
  (`columns_of`, which a report module may call at import time to fail early): flatten it in
  the row model, where its titles can be chosen.

CSV: `;` between fields and decimal commas where the reseller's country writes decimals with a
comma (`shared.domain.exports.uses_decimal_comma`), else `,` and points; CRLF line ends; no
thousands separators; text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first)
gets a leading `'` (OWASP's CSV-injection advice). `csv_chunks` yields byte chunks of a few
hundred rows, so 30,000 rows never sit in memory at once.

XLSX: numbers as numeric cells (openpyxl writes a Decimal as the nearest double, in the shortest
text that reads back as it: exact up to 15 significant digits, so exact for every amount shown
with two decimals below `Money`'s bound of 10^12; amounts formatted with two decimals), dates
and datetimes as date cells with a date format, booleans as booleans, text as inline strings
(never formulas); a bold header row, frozen; column widths from the column's type and title;
the sheet named after the report.
openpyxl's write-only workbook keeps rows in its own temporary file, not in memory.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import IO, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AwareDatetime,
    BaseModel,
    EmailStr,
    FutureDate,
    FutureDatetime,
    NaiveDatetime,
    PastDate,
    PastDatetime,
)

from shared.domain.exports import ExportFormat
from shared.domain.money import Money

Row = BaseModel
Cell = str | int | float | Decimal | bool | date | datetime | None

TEXT, INTEGER, DECIMAL, AMOUNT, NUMBER, BOOLEAN, DATE, DATETIME, CURRENCY = (
    "text",
    "integer",
    "decimal",
    "amount",
    "number",
    "boolean",
    "date",
    "datetime",
    "currency",
)
# Excel number formats by kind (Excel shows them in the reader's own locale).
_NUMBER_FORMATS = {
    AMOUNT: "#,##0.00",
    DECIMAL: "#,##0.00##",
    DATE: "yyyy-mm-dd",
    DATETIME: "yyyy-mm-dd hh:mm:ss",
}
# Column widths (characters) by kind; a title wider than this widens its column.
_WIDTHS = {
    TEXT: 24,
    INTEGER: 10,
    DECIMAL: 14,
    AMOUNT: 14,
    NUMBER: 14,
    BOOLEAN: 8,
    DATE: 12,
    DATETIME: 20,
    CURRENCY: 10,
}
_MAX_WIDTH = 60
_DATETIMES = (AwareDatetime, NaiveDatetime, PastDatetime, FutureDatetime)
_DATES = (PastDate, FutureDate)
_TEXTS = (EmailStr, uuid.UUID)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Characters XML 1.0 cannot hold (openpyxl refuses a cell with any of them).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SHEET_TITLE_UNSAFE = re.compile(r"[\[\]:*?/\\]")
ROWS_PER_CHUNK = 500


class MixedCurrencies(ValueError):
    """A report row holds amounts in two currencies; its one Currency column cannot say both."""


@dataclass(frozen=True)
class Column:
    """One column of an export: its title, its kind of value and how a row gives that value."""

    title: str
    kind: str
    value: Callable[[Row], Cell]
    # The row's attribute when the cell is that attribute as it is (read directly: a call per
    # cell less, which a 30,000-row export notices); None when `value` converts it.
    field: str | None = None

    @property
    def width(self) -> float:
        """Characters wide in a spreadsheet."""
        return float(min(_MAX_WIDTH, max(_WIDTHS[self.kind], len(self.title) + 2)))


def humanise(name: str) -> str:
    """`renewsOn` or `renews_on` → "Renews on" (acronyms such as `ID` kept)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ")
    words = [w if len(w) > 1 and w.isupper() else w.lower() for w in spaced.split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _optional(annotation: Any, where: str) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{where}: a column holds one type of value, not {annotation}")
        return args[0]
    return annotation


def _kind(annotation: Any, where: str) -> str:
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        if all(isinstance(v, str) for v in values):
            return TEXT
        raise TypeError(f"{where}: only literals of text can be exported")
    if annotation in _DATETIMES:
        return DATETIME
    if annotation in _DATES:
        return DATE
    if annotation in _TEXTS:
        return TEXT
    if not isinstance(annotation, type):
        raise TypeError(f"{where}: {annotation} cannot be a column")
    if issubclass(annotation, Money):
        return AMOUNT
    if issubclass(annotation, BaseModel):
        raise TypeError(
            f"{where}: a nested {annotation.__name__} cannot be exported; flatten it in the row "
            "model"
        )
    for base, kind in (
        (Enum, TEXT),
        (bool, BOOLEAN),
        (int, INTEGER),
        (Decimal, DECIMAL),
        (float, NUMBER),
        (datetime, DATETIME),
        (date, DATE),
        (str, TEXT),
    ):
        if issubclass(annotation, base):
            return kind
    raise TypeError(f"{where}: {annotation.__name__} cannot be a column")


def _plain(name: str) -> Callable[[Row], Cell]:
    def value(row: Row) -> Cell:
        v: Cell = getattr(row, name)
        return v

    return value


def _enum(name: str) -> Callable[[Row], Cell]:
    def value(row: Row) -> Cell:
        v = getattr(row, name)
        return None if v is None else str(v.value if isinstance(v, Enum) else v)

    return value


def _text(name: str) -> Callable[[Row], Cell]:
    def value(row: Row) -> Cell:
        v = getattr(row, name)
        return None if v is None else str(v)

    return value


def _utc(name: str) -> Callable[[Row], Cell]:
    def value(row: Row) -> Cell:
        v = getattr(row, name)
        if v is None or v.tzinfo is None:
            return v  # type: ignore[no-any-return]
        return v.astimezone(UTC).replace(tzinfo=None)  # type: ignore[no-any-return]

    return value


def _amount(name: str) -> Callable[[Row], Cell]:
    def value(row: Row) -> Cell:
        money: Money | None = getattr(row, name)
        return None if money is None else money.amount

    return value


def _currency(names: list[str]) -> Callable[[Row], Cell]:
    def value(row: Row) -> Cell:
        found = {m.currency for n in names if (m := getattr(row, n)) is not None}
        if len(found) > 1:
            raise MixedCurrencies(
                f"{type(row).__name__} has amounts in {', '.join(sorted(found))} in one row"
            )
        return found.pop() if found else None

    return value


@cache
def columns_of(model: type[BaseModel]) -> tuple[Column, ...]:
    """The export columns of a row model (TypeError for a field that cannot be one)."""
    columns: list[Column] = []
    money: list[str] = []
    currency_at: int | None = None
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        where = f"{model.__name__}.{name}"
        title = info.title or humanise(info.alias or name)
        annotation = _optional(info.annotation, where)
        kind = _kind(annotation, where)
        if kind == AMOUNT:
            money.append(name)
            columns.append(Column(title, AMOUNT, _amount(name)))
            if currency_at is None:
                currency_at = len(columns)
        elif kind == DATETIME:
            utc_title = title if "UTC" in title else f"{title} (UTC)"
            columns.append(Column(utc_title, DATETIME, _utc(name)))
        elif kind == TEXT:
            enum_like = isinstance(annotation, type) and issubclass(annotation, Enum)
            if enum_like:
                columns.append(Column(title, TEXT, _enum(name)))
            else:
                # The CSV's text formatter makes a string of it itself.
                columns.append(Column(title, TEXT, _text(name), field=name))
        else:
            columns.append(Column(title, kind, _plain(name), field=name))
    if currency_at is not None:
        columns.insert(currency_at, Column("Currency", CURRENCY, _currency(money)))
    return tuple(columns)


def _rows(model: type[BaseModel], rows: Iterable[BaseModel]) -> Iterator[BaseModel]:
    for row in rows:
        # Exactly the model, not a subclass: a staff row (a subclass of the customer's row
        # model) must never be written under a customer's columns.
        if type(row) is not model:
            raise TypeError(f"a {type(row).__name__} row in an export of {model.__name__}")
        yield row


# CSV ---------------------------------------------------------------------------------------


def _csv_text(value: Cell) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_formatter(kind: str, decimal_comma: bool) -> Callable[[Cell], str]:
    point = "," if decimal_comma else "."

    def number(value: Cell) -> str:
        if value is None:
            return ""
        text = format(value, "f") if isinstance(value, Decimal) else repr(value)
        return text.replace(".", point) if decimal_comma else text

    def plain(value: Cell) -> str:
        return "" if value is None else str(value)

    def moment(value: Cell) -> str:
        if not isinstance(value, datetime):
            return ""
        return value.isoformat(sep=" ", timespec="seconds")

    def day(value: Cell) -> str:
        return value.isoformat() if isinstance(value, date) else ""

    def boolean(value: Cell) -> str:
        return "" if value is None else ("true" if value else "false")

    by_kind: dict[str, Callable[[Cell], str]] = {
        TEXT: _csv_text,
        CURRENCY: plain,
        INTEGER: plain,
        DECIMAL: number,
        AMOUNT: number,
        NUMBER: number,
        BOOLEAN: boolean,
        DATE: day,
        DATETIME: moment,
    }
    return by_kind[kind]


def csv_chunks(
    model: type[BaseModel], rows: Iterable[BaseModel], *, decimal_comma: bool
) -> Iterator[bytes]:
    """The CSV export of `rows`, as UTF-8 byte chunks (the first starts with the BOM)."""
    columns = columns_of(model)
    # (attribute, how a row gives the value when it is not an attribute, formatter)
    cells = [(c.field, c.value, _csv_formatter(c.kind, decimal_comma)) for c in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";" if decimal_comma else ",", lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([c.title for c in columns])
    for n, row in enumerate(_rows(model, rows), 1):
        writer.writerow(
            [
                text(getattr(row, field) if field is not None else value(row))
                for field, value, text in cells
            ]
        )
        if n % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


# XLSX --------------------------------------------------------------------------------------


def sheet_title(name: str) -> str:
    """A worksheet name Excel accepts (≤ 31 characters, none of []:*?/\\)."""
    return _SHEET_TITLE_UNSAFE.sub(" ", name).strip(" '")[:31] or "Report"


def write_xlsx(
    model: type[BaseModel], rows: Iterable[BaseModel], out: IO[bytes], *, title: str
) -> None:
    """The XLSX export of `rows`, written to `out` (a seekable binary file)."""
    # Imported here: indexing the app must not load openpyxl (tests/unit/test_cold_start.py).
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    columns = columns_of(model)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(sheet_title(title))
    for index, column in enumerate(columns, 1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)

    def header(text: str) -> Any:
        cell = WriteOnlyCell(sheet, _ILLEGAL_XML.sub("", text))
        cell.font = bold
        return cell

    def styled(fmt: str) -> Callable[[Cell], Any]:
        def cell(value: Cell) -> Any:
            if value is None:
                return None
            c = WriteOnlyCell(sheet, value)
            c.number_format = fmt
            return c

        return cell

    def text(value: Cell) -> Any:
        if value is None:
            return None
        clean = _ILLEGAL_XML.sub("", str(value))
        if not clean.startswith("="):
            return clean
        c = WriteOnlyCell(sheet, clean)
        c.data_type = "s"  # text, even when it looks like a formula
        return c

    def plain(value: Cell) -> Any:
        return value

    def converter(kind: str) -> Callable[[Cell], Any]:
        if kind in _NUMBER_FORMATS:
            return styled(_NUMBER_FORMATS[kind])
        return text if kind in (TEXT, CURRENCY) else plain

    cells = [(c.value, converter(c.kind)) for c in columns]
    sheet.append([header(c.title) for c in columns])
    try:
        for row in _rows(model, rows):
            sheet.append([convert(value(row)) for value, convert in cells])
    except BaseException:
        # Close the sheet's temporary file now, not when its row writer is collected.
        with contextlib.suppress(Exception):
            sheet.close()
        raise
    workbook.save(out)


# The port ----------------------------------------------------------------------------------


class CsvWriter:
    """Writes report rows as CSV (`shared.ports.ReportWriter`)."""

    format = ExportFormat.CSV

    def write(
        self,
        model: type[BaseModel],
        rows: Iterable[BaseModel],
        out: IO[bytes],
        *,
        decimal_comma: bool,
        title: str,
    ) -> None:
        """Write the export of `rows` to `out`, chunk by chunk."""
        for chunk in csv_chunks(model, rows, decimal_comma=decimal_comma):
            out.write(chunk)


class XlsxWriter:
    """Writes report rows as an XLSX workbook (`shared.ports.ReportWriter`)."""

    format = ExportFormat.XLSX

    def write(
        self,
        model: type[BaseModel],
        rows: Iterable[BaseModel],
        out: IO[bytes],
        *,
        decimal_comma: bool,
        title: str,
    ) -> None:
        """Write the export of `rows` to `out` (Excel formats numbers by its own locale)."""
        write_xlsx(model, rows, out, title=title)


WRITERS: dict[ExportFormat, CsvWriter | XlsxWriter] = {
    ExportFormat.CSV: CsvWriter(),
    ExportFormat.XLSX: XlsxWriter(),
}
