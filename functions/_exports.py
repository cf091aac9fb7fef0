"""Report downloads: JSON, or the same rows as a CSV or XLSX file.

A report route asks once which format the caller wants; for a file it gets every row from its
service and hands them over:

    fmt = requested_format(call)
    if fmt is not ExportFormat.JSON:
        rows = licences.licence_rows(book, call.principal, call.route["r"], month=q.month)
        return export(call, fmt, report="licences", filters={"month": q.month},
                      model=rows.model, rows=rows.rows, country=rows.country)
    return licences.licence_report(...)             # JSON: a page

The format is `?format=json|csv|xlsx` (the route's query model extends
`shared.domain.exports.ExportQuery`, so OpenAPI shows the parameter), else the best of `Accept`
(`text/csv`, the XLSX media type, `application/json`), else JSON. The file is an attachment,
never cached, named `<report>_<reseller>_<filters>.<ext>` (`shared.domain.exports.export_filename`).

Streaming. The body is produced incrementally (CSV in chunks of rows, XLSX by openpyxl's
write-only workbook) into a spooled temporary file: in memory up to `SPOOL_BYTES`, on disk
beyond. The response itself is still one `func.HttpResponse` whose body is the whole file,
since that is all the classic Python programming model can return: the worker sends the body to
the host in one message. True streaming (the first bytes on the wire before the last row is
read) needs Azure Functions' "HTTP streams" for Python:

- the package `azurefunctions-extensions-http-fastapi` (FastAPI/Starlette `Request` and
  `StreamingResponse` for triggers), Functions runtime ≥ 4.34.1, and on Python ≤ 3.12 the app
  setting `PYTHON_ENABLE_INIT_INDEXING=1`;
- `async def` HTTP triggers that take `azurefunctions.extensions.http.fastapi.Request` and
  return a `StreamingResponse(csv_chunks(...))`; once the extension is loaded the worker runs
  the app's HTTP functions through its HTTP proxy, and Microsoft's announcement warns that the
  classic `HttpRequest`/`HttpResponse` functions then stop working: in practice every route of
  `functions/` and `_http.http()` (request parsing, problem+json, idempotency's stored
  responses) would move to the FastAPI types at once, not only the exports;
- `localdev/host.py` could serve it: its front end is already ASGI under uvicorn, so a handler
  result carrying an iterator of chunks could be sent as several `http.response.body` messages
  (`more_body=True`, no Content-Length), with the iterator advanced in the worker thread pool;
  today `_render` reads `HttpResponse.get_body()` once.
Until then the spool bounds the memory the rows and the writer use; the finished file (about
6 MB for 30,000 CSV rows) is in memory once, as the response body.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from functions._http import Call, Reply
from shared.bootstrap import container
from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.exports import ExportFormat, export_filename, uses_decimal_comma

# Exports smaller than this stay in memory while written; larger ones go to a temporary file.
SPOOL_BYTES = 1024 * 1024
FORMAT_FIELD = "format"
_BY_MEDIA_TYPE = {f.media_type: f for f in ExportFormat}
_FORMATS = ", ".join(f.value for f in ExportFormat)


def _accepted(accept: str) -> ExportFormat:
    """The format `Accept` prefers (highest q, then first listed); JSON when none is named."""
    best: tuple[float, int, ExportFormat] | None = None
    for position, item in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        fmt = _BY_MEDIA_TYPE.get(media.lower())
        if fmt is None:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -position) > (best[0], -best[1])):
            best = (q, position, fmt)
    return best[2] if best is not None else ExportFormat.JSON


def requested_format(call: Call) -> ExportFormat:
    """`?format=` if given (a 400 naming `format` when unknown), else `Accept`, else JSON."""
    given = call.req.params.get(FORMAT_FIELD)
    if given is not None:
        try:
            return ExportFormat(given.strip().lower())
        except ValueError:
            raise ValidationFailed(
                [FieldError(FORMAT_FIELD, f"must be one of {_FORMATS}")]
            ) from None
    return _accepted(call.header("accept") or "")


def export(
    call: Call,
    fmt: ExportFormat,
    *,
    report: str,
    filters: Mapping[str, object],
    model: type[BaseModel],
    rows: Iterable[BaseModel],
    country: str,
) -> Reply:
    """The report as a file of format `fmt` (CSV or XLSX: what `requested_format` chose).

    `model` is the row model of the caller's view (a customer user's has no cost, margin or
    mark-up field; its columns are all the file can hold); `country` is the reseller's, for
    the decimal separator of the CSV.
    """
    if fmt is ExportFormat.JSON:
        raise ValueError("JSON is the route's own answer, not an export")
    reseller = call.route.get("r") or call.principal.reseller
    named = {k: v for k, v in filters.items() if k != FORMAT_FIELD}
    filename = export_filename(report, reseller, named, fmt)
    writer = container().report_writers[fmt]
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        writer.write(
            model,
            rows,
            spool,
            decimal_comma=uses_decimal_comma(country),
            title=report.replace("-", " ").replace("_", " ").capitalize(),
        )
        spool.seek(0)
        body = spool.read()
    return Reply(
        body=body,
        content_type=fmt.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "Vary": "Accept",
        },
    )
