"""Report exports: CSV and XLSX from row models (columns, types, locales, bounded memory)."""

from __future__ import annotations

import csv
import io
import itertools
import tracemalloc
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openpyxl
import pytest
from pydantic import BaseModel

from shared.adapters.exports import (
    ROWS_PER_CHUNK,
    MixedCurrencies,
    columns_of,
    csv_chunks,
    humanise,
    sheet_title,
    write_xlsx,
)
from shared.domain.exports import ExportFormat, export_filename, uses_decimal_comma
from shared.domain.model import WireModel
from shared.domain.money import Money
from tests.export_rows import (
    LinePublic,
    LineStaff,
    public_line,
    scan_for_cost,
    staff_line,
    staff_lines,
)

BOM = "\ufeff"


def csv_text(model: type[BaseModel], rows, *, decimal_comma: bool) -> str:
    return b"".join(csv_chunks(model, rows, decimal_comma=decimal_comma)).decode("utf-8")


def parse_csv(text: str, delimiter: str) -> list[dict[str, str]]:
    assert text.startswith(BOM)
    return list(csv.DictReader(io.StringIO(text[1:], newline=""), delimiter=delimiter))


def xlsx_sheet(model: type[BaseModel], rows, title: str = "Licences"):
    out = io.BytesIO()
    write_xlsx(model, rows, out, title=title)
    out.seek(0)
    workbook = openpyxl.load_workbook(out)
    return workbook.worksheets[0]


def sheet_rows(sheet) -> list[dict[str, object]]:
    header = [c.value for c in sheet[1]]
    return [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(2)]


# --- The decimal-comma rule and file names ---------------------------------------------------


@pytest.mark.parametrize("country", ["CZ", "SK", "DE", "PL", "FR", "AT", "ES", "IT", "cz"])
def test_continental_european_countries_write_decimal_commas(country):
    assert uses_decimal_comma(country)


@pytest.mark.parametrize("country", ["US", "GB", "IE", "CH", "CA", "AU", "JP", "ZZ"])
def test_english_speaking_swiss_and_unknown_countries_write_decimal_points(country):
    assert not uses_decimal_comma(country)


def test_file_name_holds_report_reseller_and_the_filters_given_in_safe_characters():
    name = export_filename(
        "licences",
        "demo",
        {"month": "2026-11", "customer": "01J/..\\x y", "product": None, "months": 14},
        ExportFormat.CSV,
    )

    assert name == "licences_demo_month-2026-11_customer-01J-x-y_months-14.csv"


def test_file_name_with_a_hostile_filter_is_cut_but_keeps_its_extension():
    name = export_filename("usage", "demo", {"q": '"; rm -rf /' * 40}, ExportFormat.XLSX)

    assert name.endswith(".xlsx") and len(name) <= 160
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert name.count(".") == 1


# --- Columns ---------------------------------------------------------------------------------


def test_columns_follow_the_fields_with_their_title_else_the_alias_humanised():
    titles = [c.title for c in columns_of(LineStaff)]

    assert titles == [
        "Customer name",
        "Product name",
        "Term",
        "Seats",
        "Unit price",
        "Currency",
        "Total price",
        "Renews on",
        "Changed at (UTC)",
        "Auto renew",
        "Reseller cost",
        "Margin",
        "Markup percent",
    ]


def test_humanise_splits_camel_case_and_keeps_acronyms():
    assert humanise("renewsOn") == "Renews on"
    assert humanise("partnerCenterID") == "Partner center ID"
    assert humanise("seats_bought") == "Seats bought"


def test_a_nested_model_other_than_money_is_refused_when_the_columns_are_derived():
    class Address(WireModel):
        city: str

    class WithAddress(WireModel):
        name: str
        address: Address

    with pytest.raises(TypeError, match=r"WithAddress\.address"):
        columns_of(WithAddress)


def test_a_list_field_is_refused_when_the_columns_are_derived():
    class WithTags(WireModel):
        tags: list[str]

    with pytest.raises(TypeError, match=r"WithTags\.tags"):
        columns_of(WithTags)


def test_a_row_with_amounts_in_two_currencies_is_refused_not_written_under_one():
    row = staff_line(1).model_copy(update={"margin": Money.of("1.00", "EUR")})

    with pytest.raises(MixedCurrencies, match="CZK, EUR"):
        csv_text(LineStaff, [row], decimal_comma=True)


def test_a_row_of_another_model_is_refused():
    # A staff row exported through the customer's model would still be a bug worth a stop.
    class Other(WireModel):
        customer_name: str

    with pytest.raises(TypeError, match="LineStaff row in an export of Other"):
        csv_text(Other, [staff_line(1)], decimal_comma=False)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_staff_row_is_never_written_under_a_customers_columns(fmt):
    # LineStaff subclasses LinePublic: the guard wants the very model, not a subclass of it.
    rows = [public_line(0), staff_line(1)]

    with pytest.raises(TypeError, match="LineStaff row in an export of LinePublic"):
        if fmt == "csv":
            csv_text(LinePublic, rows, decimal_comma=True)
        else:
            write_xlsx(LinePublic, rows, io.BytesIO(), title="Licences")


# --- CSV -------------------------------------------------------------------------------------


def test_csv_for_a_czech_reseller_parses_with_semicolons_and_decimal_commas():
    rows = parse_csv(csv_text(LineStaff, [staff_line(7)], decimal_comma=True), ";")

    assert rows[0]["Unit price"] == "10,075"
    assert rows[0]["Currency"] == "CZK"
    assert rows[0]["Customer name"] == "Zákazník 7 s.r.o."
    assert rows[0]["Renews on"] == "2026-12-08"
    assert rows[0]["Changed at (UTC)"] == "2026-11-03 10:22:00"
    assert rows[0]["Auto renew"] == "true"
    assert rows[0]["Term"] == "P1Y"


def test_csv_for_a_us_reseller_parses_with_commas_and_points():
    rows = parse_csv(csv_text(LineStaff, [staff_line(7)], decimal_comma=False), ",")

    assert rows[0]["Unit price"] == "10.075"
    assert rows[0]["Markup percent"] == "10.00"


@pytest.mark.parametrize(("decimal_comma", "delimiter"), [(True, ";"), (False, ",")])
def test_csv_decimal_amounts_round_trip_exactly(decimal_comma, delimiter):
    lines = [staff_line(i) for i in range(0, 300, 7)]

    rows = parse_csv(csv_text(LineStaff, lines, decimal_comma=decimal_comma), delimiter)

    for line, row in zip(lines, rows, strict=True):
        assert Decimal(row["Unit price"].replace(",", ".")) == line.unit_price.amount
        assert Decimal(row["Reseller cost"].replace(",", ".")) == line.reseller_cost.amount
        assert int(row["Seats"]) == line.seats


def test_csv_leaves_none_cells_empty():
    line = staff_line(2).model_copy(update={"total_price": None, "renews_on": None})

    row = parse_csv(csv_text(LineStaff, [line], decimal_comma=True), ";")[0]

    assert row["Total price"] == "" and row["Renews on"] == ""
    assert row["Currency"] == "CZK"


def test_csv_writes_an_aware_datetime_as_naive_utc():
    prague = timezone(timedelta(hours=1))
    line = staff_line(0).model_copy(
        update={"changed_at": datetime(2026, 11, 3, 11, 0, tzinfo=prague)}
    )

    row = parse_csv(csv_text(LineStaff, [line], decimal_comma=True), ";")[0]

    assert row["Changed at (UTC)"] == "2026-11-03 10:00:00"


def test_csv_text_that_a_spreadsheet_would_run_as_a_formula_is_quoted_as_text():
    line = staff_line(0).model_copy(update={"customer_name": '=HYPERLINK("http://x","y")'})

    row = parse_csv(csv_text(LineStaff, [line], decimal_comma=True), ";")[0]

    assert row["Customer name"] == '\'=HYPERLINK("http://x","y")'


def test_csv_is_produced_in_chunks_of_rows_not_as_one_string():
    chunks = list(csv_chunks(LineStaff, staff_lines(ROWS_PER_CHUNK * 3), decimal_comma=True))

    assert len(chunks) >= 3
    assert chunks[0].startswith(b"\xef\xbb\xbf")
    assert not any(c.startswith(b"\xef\xbb\xbf") for c in chunks[1:])


def test_csv_of_30000_rows_is_produced_with_bounded_memory():
    # Rows come from a small pool made beforehand: what is measured is the export's memory
    # (and making 30,000 pydantic rows would be most of this test's time).
    pool = [staff_line(i) for i in range(500)]
    rows = itertools.islice(itertools.cycle(pool), 30_000)
    size = 0
    tracemalloc.start()
    try:
        for chunk in csv_chunks(LineStaff, rows, decimal_comma=True):
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert size > 4_000_000
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte file"


# --- XLSX ------------------------------------------------------------------------------------


def test_xlsx_amounts_are_numeric_cells_with_two_decimals_and_exact_values():
    lines = [staff_line(i) for i in range(5)]

    sheet = xlsx_sheet(LineStaff, lines)

    header = [c.value for c in sheet[1]]
    price = sheet.cell(2, header.index("Unit price") + 1)
    assert price.data_type == "n"
    assert price.number_format == "#,##0.00"
    for line, row in zip(lines, sheet_rows(sheet), strict=True):
        assert Decimal(str(row["Unit price"])) == line.unit_price.amount
        assert row["Seats"] == line.seats and isinstance(row["Seats"], int)
        assert row["Currency"] == "CZK"


def test_xlsx_amounts_up_to_moneys_bound_read_back_exactly():
    amounts = ["999999999999.99", "123456789012.34", "0.01", "-987654321098.76"]
    lines = [
        staff_line(i).model_copy(update={"unit_price": Money.of(a, "CZK")})
        for i, a in enumerate(amounts)
    ]

    rows = sheet_rows(xlsx_sheet(LineStaff, lines))

    assert [Decimal(repr(r["Unit price"])) for r in rows] == [Decimal(a) for a in amounts]


def test_xlsx_dates_are_date_cells_and_datetimes_naive_utc():
    prague = timezone(timedelta(hours=1))
    line = staff_line(0).model_copy(
        update={"changed_at": datetime(2026, 11, 3, 11, 0, tzinfo=prague)}
    )

    sheet = xlsx_sheet(LineStaff, [line])

    row = sheet_rows(sheet)[0]
    header = [c.value for c in sheet[1]]
    renews = sheet.cell(2, header.index("Renews on") + 1)
    assert renews.is_date and renews.number_format == "yyyy-mm-dd"
    assert row["Renews on"] == datetime(2026, 12, 1)  # Excel has no date-only type
    assert row["Changed at (UTC)"] == datetime(2026, 11, 3, 10, 0)
    assert row["Auto renew"] is False


def test_xlsx_has_a_frozen_bold_header_a_sheet_title_and_widths():
    sheet = xlsx_sheet(LineStaff, [staff_line(1)], title="Licences: 2026/11")

    assert sheet.title == "Licences  2026 11"
    assert sheet.freeze_panes == "A2"
    assert all(c.font.bold for c in sheet[1])
    assert sheet.column_dimensions["A"].width >= len("Customer name")
    assert sheet.column_dimensions["I"].width >= len("Changed at (UTC)")


def test_xlsx_text_that_looks_like_a_formula_stays_text():
    line = staff_line(0).model_copy(update={"customer_name": "=1+2", "product": "bell\x07"})

    sheet = xlsx_sheet(LineStaff, [line])

    assert sheet.cell(2, 1).value == "=1+2" and sheet.cell(2, 1).data_type == "s"
    assert sheet.cell(2, 2).value == "bell"


def test_xlsx_leaves_none_cells_empty():
    line = staff_line(2).model_copy(update={"total_price": None})

    row = sheet_rows(xlsx_sheet(LineStaff, [line]))[0]

    assert row["Total price"] is None


def test_sheet_title_is_cut_to_what_excel_accepts():
    assert sheet_title("a" * 40) == "a" * 31
    assert sheet_title("[]") == "Report"


# --- The customer's view ---------------------------------------------------------------------


def test_the_staff_export_does_name_cost_margin_and_markup_so_the_scan_can_see_them():
    titles = [c.title for c in columns_of(LineStaff)]

    assert len(scan_for_cost(titles)) == 3


def test_a_customer_view_export_has_no_cost_margin_or_markup_column_in_csv_or_xlsx():
    lines = [public_line(i) for i in range(3)]

    rows = parse_csv(csv_text(LinePublic, lines, decimal_comma=True), ";")
    sheet = xlsx_sheet(LinePublic, lines)

    assert scan_for_cost(rows) == []
    assert scan_for_cost([[c.value for c in r] for r in sheet.iter_rows()]) == []
    assert rows[0]["Unit price"] == "10,005"


def test_an_empty_report_is_a_header_only():
    assert parse_csv(csv_text(LinePublic, [], decimal_comma=False), ",") == []
    assert sheet_rows(xlsx_sheet(LinePublic, [])) == []
    assert [c.value for c in xlsx_sheet(LinePublic, [])[1]][:2] == ["Customer name", "Product name"]
