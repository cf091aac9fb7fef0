"""The `Catalog` table: one partition per reseller holding its settings, entries and version.

Rows: `~settings` (categories, segments), `~version` (rewritten with every change) and one row
per product id. Every write is one transaction of the changed row (If-Match its ETag, or
insert) and the `~version` row, so a cache validated against `~version` can never miss a
change. A whole catalog is one partition query.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.adapters.tables.codec import EntityCodec
from shared.adapters.tables.repository import check_key, read_version, storage_errors
from shared.adapters.tables.store import TableStore
from shared.domain.catalog import (
    SETTINGS_ROW,
    VERSION_ROW,
    CatalogEntry,
    CatalogSettings,
    CatalogState,
    CatalogVersion,
)
from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.model import Record

TABLE = "Catalog"
# Reseller-wide rows start with "~" and product rows never do; outbox rows are not used here.
_ROWS_END = "~~"


class CatalogTable:
    """The CatalogStore port on Table Storage."""

    def __init__(self, store: TableStore, table_name: str = TABLE) -> None:
        self.store = store
        self.table_name = table_name
        self._settings = EntityCodec(CatalogSettings)
        self._entries = EntityCodec(CatalogEntry)
        self._versions = EntityCodec(CatalogVersion)

    @property
    def _table(self) -> Any:
        return self.store.table(self.table_name)

    def _point(self, reseller: str, row: str) -> Any | None:
        try:
            return self._table.get_entity(reseller, row)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise storage_errors(exc) from exc

    def version(self, reseller: str) -> str | None:
        """The reseller's catalog version (one point read; None if never changed)."""
        entity = self._point(check_key(reseller, "PartitionKey"), VERSION_ROW)
        return None if entity is None else self._versions.from_entity(entity).version

    def load(self, reseller: str) -> CatalogState:
        """Settings, entries and version of a reseller (one partition query)."""
        state = CatalogState(reseller=reseller)
        try:
            rows = self._table.query_entities(
                "PartitionKey eq @pk and RowKey lt @end",
                parameters={"pk": check_key(reseller, "PartitionKey"), "end": _ROWS_END},
                results_per_page=1000,
            )
            for entity in rows:
                row = entity["RowKey"]
                if row == SETTINGS_ROW:
                    state.settings = self._settings.from_entity(entity)
                elif row == VERSION_ROW:
                    state.version = self._versions.from_entity(entity).version
                elif not row.startswith("~"):
                    state.entries.append(self._entries.from_entity(entity))
        except Exception as exc:
            raise storage_errors(exc) from exc
        return state

    def find_settings(self, reseller: str) -> CatalogSettings | None:
        """The reseller's categories and segments, if it ever set them."""
        entity = self._point(check_key(reseller, "PartitionKey"), SETTINGS_ROW)
        return None if entity is None else self._settings.from_entity(entity)

    def find_entry(self, reseller: str, product_id: str) -> CatalogEntry | None:
        """The reseller's entry for a product, if any."""
        entity = self._point(check_key(reseller, "PartitionKey"), check_key(product_id, "RowKey"))
        return None if entity is None else self._entries.from_entity(entity)

    def save_settings(self, settings: CatalogSettings, version: CatalogVersion) -> CatalogSettings:
        """Insert or replace (If-Match) the settings, with a new version, atomically."""
        saved: CatalogSettings = self._save(settings, self._settings, SETTINGS_ROW, version)
        return saved

    def save_entry(self, entry: CatalogEntry, version: CatalogVersion) -> CatalogEntry:
        """Insert or replace (If-Match) an entry, with a new version, atomically."""
        row = check_key(entry.product_id, "RowKey")
        saved: CatalogEntry = self._save(entry, self._entries, row, version)
        return saved

    def _save(self, item: Any, codec: EntityCodec[Any], row: str, version: CatalogVersion) -> Any:
        pk = check_key(item.reseller, "PartitionKey")
        entity = {"PartitionKey": pk, "RowKey": row, **codec.to_properties(item)}
        stamp = {
            "PartitionKey": pk,
            "RowKey": VERSION_ROW,
            **self._versions.to_properties(version),
        }
        op: Any
        if item.etag is None:
            op = ("create", entity)
        else:
            op = (
                "update",
                entity,
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": read_version(item.etag),
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        try:
            results = self._table.submit_transaction([op, ("upsert", stamp)])
        except TableTransactionError as exc:
            code = str(getattr(exc, "error_code", "") or "")
            if "AlreadyExists" in code:
                raise Conflict("someone created it first; read it again") from exc
            if "ConditionNotSatisfied" in code or "ResourceNotFound" in code:
                raise ConcurrencyConflict(
                    "the catalog was changed by someone else; read it again"
                ) from exc
            raise storage_errors(exc) from exc
        except Exception as exc:
            raise storage_errors(exc) from exc
        saved: Record = item.model_copy()
        saved.etag = results[0].get("etag")
        return saved
