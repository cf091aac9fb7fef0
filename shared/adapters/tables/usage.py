"""The usage report's aggregated rows in Table Storage (`UsageRows`).

PartitionKey `<reseller>:<month>:<tag>` (one import of one month of one reseller), RowKey
`<customer>~<blob>~<grain hash>`: a report is one partition query (a customer's rows a RowKey
range), a blob imported again upserts the same keys, and an old import is one partition to drop.
Amounts are decimal strings, never doubles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables._serialize import _parameter_filter_substitution

from shared.adapters.tables.repository import MAX_PAGE_SIZE, check_key, storage_errors
from shared.adapters.tables.store import TableStore
from shared.domain.usage_report import UsageAggregate

TABLE = "UsageRows"
_BATCH = 100
_REPLACE = {"mode": UpdateMode.REPLACE}
_FIELDS = (
    "Reseller",
    "CustomerId",
    "CustomerName",
    "SubscriptionId",
    "MeterCategory",
    "ResourceGroup",
    "Unit",
    "Quantity",
    "PreTax",
    "Currency",
    "Lines",
)


def _entity(partition: str, row_key: str, row: UsageAggregate) -> dict[str, Any]:
    return {
        "PartitionKey": check_key(partition, "PartitionKey"),
        "RowKey": check_key(row_key, "RowKey"),
        "Reseller": row.reseller,
        "CustomerId": row.customer_id,
        "CustomerName": row.customer_name,
        "SubscriptionId": row.subscription_id,
        "MeterCategory": row.meter_category,
        "ResourceGroup": row.resource_group,
        "Unit": row.unit,
        "Quantity": format(row.quantity, "f"),
        "PreTax": format(row.pre_tax, "f"),
        "Currency": row.currency,
        "Lines": row.lines,
    }


def _row(entity: dict[str, Any]) -> UsageAggregate:
    return UsageAggregate(
        reseller=str(entity["Reseller"]),
        customer_id=str(entity["CustomerId"]),
        customer_name=str(entity.get("CustomerName") or ""),
        subscription_id=str(entity["SubscriptionId"]),
        meter_category=str(entity.get("MeterCategory") or ""),
        resource_group=str(entity.get("ResourceGroup") or ""),
        unit=str(entity.get("Unit") or ""),
        quantity=Decimal(str(entity["Quantity"])),
        pre_tax=Decimal(str(entity["PreTax"])),
        currency=str(entity["Currency"]),
        lines=int(entity.get("Lines") or 0),
    )


def query_rows(
    table: TableClient, query: str, parameters: Mapping[str, str], select: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Entities of a query as plain JSON (`odata=nometadata`), page by page.

    The SDK's `query_entities` deserialises each property through its generic model machinery
    (about 0.3 ms an entity: most of a report's time over tens of thousands of rows); the rows
    here are strings and small ints, which JSON gives as they are. The request goes through the
    client's own pipeline (authentication, retries, API version); the filter is built by the
    SDK's own parameter substitution, never from raw input.
    """
    base = f"{table.scheme}://{table._primary_hostname}/{table.table_name}()"
    args = {
        "$filter": _parameter_filter_substitution(dict(parameters), query),
        "$select": ",".join(select),
        "$top": str(MAX_PAGE_SIZE),
    }
    headers = {
        "x-ms-version": table.api_version,
        "DataServiceVersion": "3.0",
        "MaxDataServiceVersion": "3.0;NetFx",
        "Accept": "application/json;odata=nometadata",
    }
    while True:
        request = HttpRequest("GET", f"{base}?{urlencode(args, quote_via=quote)}", headers=headers)
        response = table._client.send_request(request)
        if response.status_code != 200:
            raise HttpResponseError(response=response)
        yield from json.loads(response.read())["value"]
        next_pk = response.headers.get("x-ms-continuation-NextPartitionKey")
        if not next_pk:
            return
        args["NextPartitionKey"] = next_pk
        args["NextRowKey"] = response.headers.get("x-ms-continuation-NextRowKey") or ""


class TableUsageRows:
    """The UsageRows port on one table."""

    def __init__(self, store: TableStore, table_name: str = TABLE) -> None:
        self.store = store
        self.table_name = table_name

    def upsert(self, partition: str, rows: Sequence[tuple[str, UsageAggregate]]) -> None:
        """Insert or replace the rows, 100 to a transaction (one partition each)."""
        table = self.store.table(self.table_name)
        entities = [_entity(partition, key, row) for key, row in rows]
        try:
            for start in range(0, len(entities), _BATCH):
                chunk = entities[start : start + _BATCH]
                table.submit_transaction([("upsert", e, _REPLACE) for e in chunk])
        except Exception as exc:
            raise storage_errors(exc) from exc

    def read(self, partition: str, customer_id: str | None = None) -> Iterator[UsageAggregate]:
        """The partition's rows (a RowKey range when one customer is asked for)."""
        table = self.store.table(self.table_name)
        query, params = "PartitionKey eq @pk", {"pk": partition}
        if customer_id is not None:
            query += " and RowKey ge @low and RowKey lt @high"
            params |= {"low": f"{customer_id}~", "high": f"{customer_id}~\uffff"}
        try:
            for entity in query_rows(table, query, params, _FIELDS):
                yield _row(entity)
        except Exception as exc:
            raise storage_errors(exc) from exc

    def drop(self, partition: str) -> int:
        """Delete the partition's rows, 100 to a transaction."""
        table = self.store.table(self.table_name)
        try:
            keys = [
                e["RowKey"]
                for e in table.query_entities(
                    "PartitionKey eq @pk",
                    parameters={"pk": partition},
                    select=["RowKey"],
                    results_per_page=MAX_PAGE_SIZE,
                )
            ]
            for start in range(0, len(keys), _BATCH):
                table.submit_transaction(
                    [
                        ("delete", {"PartitionKey": partition, "RowKey": key})
                        for key in keys[start : start + _BATCH]
                    ]
                )
        except Exception as exc:
            raise storage_errors(exc) from exc
        return len(keys)
