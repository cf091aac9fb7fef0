"""The HTTP side of report exports: format by query or Accept, headers, file name, problems."""

from __future__ import annotations

import csv
import io
import json

import azure.functions as func
import openpyxl
import pytest

from functions._exports import export, requested_format
from functions._http import PROBLEM_JSON, Call, RouteSpec, problem_for, render
from shared.domain.errors import ValidationFailed
from shared.domain.exports import ExportFormat, ExportQuery
from tests.export_rows import LinePublic, LineStaff, public_line, scan_for_cost, staff_line

SPEC = RouteSpec("t", "resellers/{r}/reports/licences", ("GET",), "test")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILTERS = {"month": "2026-11", "customer": None, "format": "csv"}


def call_with(params: dict[str, str] | None = None, accept: str | None = None) -> Call:
    req = func.HttpRequest(
        "GET",
        "http://h/api/resellers/demo/reports/licences",
        headers={"Accept": accept} if accept else {},
        params=params or {},
        route_params={"r": "demo"},
        body=b"",
    )
    return Call(req, SPEC, "rid")


def download(call: Call, *, model=LineStaff, rows=None, country: str = "CZ") -> func.HttpResponse:
    """What a report route does: choose the format once, then export in it."""
    reply = export(
        call,
        requested_format(call),
        report="licences",
        filters=FILTERS,
        model=model,
        rows=rows if rows is not None else [staff_line(i) for i in range(3)],
        country=country,
    )
    return render(reply, SPEC)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ExportFormat.JSON),
        ("*/*", ExportFormat.JSON),
        ("application/json", ExportFormat.JSON),
        ("text/csv", ExportFormat.CSV),
        ("text/csv; charset=utf-8", ExportFormat.CSV),
        (XLSX, ExportFormat.XLSX),
        (f"application/json;q=0.5, {XLSX}", ExportFormat.XLSX),
        ("text/csv;q=0.2, application/json;q=0.9", ExportFormat.JSON),
        ("text/csv, application/json", ExportFormat.CSV),
        ("text/csv;q=0", ExportFormat.JSON),
    ],
)
def test_format_follows_accept_when_the_query_names_none(accept, expected):
    assert requested_format(call_with(accept=accept)) is expected


def test_the_format_parameter_wins_over_accept():
    assert requested_format(call_with({"format": "xlsx"}, accept="text/csv")) is ExportFormat.XLSX
    assert requested_format(call_with({"format": "json"}, accept="text/csv")) is ExportFormat.JSON


def test_an_export_is_written_in_the_format_the_route_chose_without_asking_the_request_again():
    # The route read `?format=`/Accept once; the request (asking for CSV) is not read again.
    reply = export(
        call_with(accept="text/csv"),
        ExportFormat.XLSX,
        report="licences",
        filters=FILTERS,
        model=LineStaff,
        rows=[staff_line(1)],
        country="CZ",
    )

    resp = render(reply, SPEC)
    assert resp.mimetype == XLSX
    assert openpyxl.load_workbook(io.BytesIO(resp.get_body())).worksheets[0].max_row == 2


def test_json_is_the_routes_own_answer_not_an_export():
    with pytest.raises(ValueError):
        export(
            call_with(),
            ExportFormat.JSON,
            report="licences",
            filters=FILTERS,
            model=LineStaff,
            rows=[staff_line(1)],
            country="CZ",
        )


def test_an_unknown_format_is_a_400_problem_naming_format():
    with pytest.raises(ValidationFailed) as caught:
        download(call_with({"format": "pdf"}))

    resp = problem_for(caught.value, "/api/resellers/demo/reports/licences")
    body = json.loads(resp.get_body())
    assert resp.status_code == 400 and resp.mimetype == PROBLEM_JSON
    assert body["errors"] == [{"field": "format", "message": "must be one of json, csv, xlsx"}]


def test_a_czech_csv_download_is_an_attachment_never_cached_named_after_its_filters():
    resp = download(call_with({"format": "csv"}))

    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"] == (
        'attachment; filename="licences_demo_month-2026-11.csv"'
    )
    assert resp.headers["Cache-Control"] == "no-store"
    text = resp.get_body().decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:], newline=""), delimiter=";"))
    assert [r["Unit price"] for r in rows] == ["10,005", "10,015", "10,025"]


def test_a_us_reseller_gets_commas_between_fields_and_decimal_points():
    resp = download(call_with(accept="text/csv"), country="US")

    text = resp.get_body().decode("utf-8")[1:]
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=","))
    assert rows[0]["Unit price"] == "10.005"


def test_an_xlsx_download_opens_with_numeric_amounts():
    resp = download(call_with(accept=XLSX))

    assert resp.mimetype == XLSX
    assert resp.headers["Content-Disposition"].endswith('_month-2026-11.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(resp.get_body())).worksheets[0]
    assert sheet.title == "Licences"
    header = [c.value for c in sheet[1]]
    amount = sheet.cell(2, header.index("Unit price") + 1)
    assert amount.data_type == "n" and amount.value == pytest.approx(10.005)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_customer_users_download_has_no_cost_column(fmt):
    resp = download(
        call_with({"format": fmt}), model=LinePublic, rows=[public_line(i) for i in range(2)]
    )

    if fmt == "csv":
        header = resp.get_body().decode("utf-8")[1:].splitlines()[0].split(";")
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(resp.get_body())).worksheets[0]
        header = [c.value for c in sheet[1]]
    assert "Unit price" in header
    assert scan_for_cost(header) == []


def test_a_route_query_model_built_on_export_query_names_a_bad_format():
    class LicenceQuery(ExportQuery):
        month: str | None = None

    with pytest.raises(ValidationFailed) as caught:
        call_with({"format": "pdf", "month": "2026-11"}).query(LicenceQuery)

    assert [e.field for e in caught.value.errors] == ["format"]
    good = call_with({"format": "xlsx"}).query(LicenceQuery)
    assert good.format is ExportFormat.XLSX
