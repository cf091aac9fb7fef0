"""The Azure usage import for operators: start it now, and read how each month's went."""

from __future__ import annotations

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._http import Call, Reply, http
from shared.bootstrap import container
from shared.domain.identity import Command
from shared.domain.usage import BillingPeriod
from shared.services import usage_import
from shared.services.access import Action, allow
from shared.services.usage_import import UsageImportPublic

bp = func.Blueprint()
TAGS = ("reports",)


class UsageImportStart(Command):
    """Which months to import now (default: as the nightly timer would)."""

    model_config = ConfigDict(extra="forbid")

    periods: list[BillingPeriod] | None = Field(
        None, min_length=1, max_length=2, description="`current`, `last` or both."
    )


@http(
    bp,
    "usage/imports",
    ["POST"],
    name="http_start_usage_import",
    summary="Import Azure usage from Partner Center now (202): the current month, and early in "
    "a month the last one, or the `periods` asked for; a month whose import is running keeps it.",
    body=UsageImportStart,
    response=list[UsageImportPublic],
    status=202,
    tags=TAGS,
    errors=(400,),
    access=allow(Action.IMPORT_USAGE),
)
def start_usage_import(call: Call) -> Reply:
    """Queue the runs, answer the records."""
    raw = call.req.get_body() or b""
    command = call.body(UsageImportStart) if raw.strip() else UsageImportStart()
    records = usage_import.begin(container().usage_book, command.periods)
    return Reply([usage_import.present(r) for r in records], status=202)


@http(
    bp,
    "usage/imports",
    ["GET"],
    name="http_list_usage_imports",
    summary="Every month's Azure usage import: status, blobs, lines, skipped lines of unknown "
    "tenants, errors.",
    response=list[UsageImportPublic],
    tags=TAGS,
    access=allow(Action.IMPORT_USAGE),
)
def list_usage_imports(call: Call) -> list[UsageImportPublic]:
    """The import records, newest month first."""
    return usage_import.list_imports(container().usage_book)
