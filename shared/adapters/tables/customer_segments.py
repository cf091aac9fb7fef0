"""Which segment a customer buys in, read from the `Customers` table (one point read).

The customers module owns that table; this reader relies only on its keys (reseller slug,
customer id) and its `Segment` property, so the catalog works before and after it lands.
"""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.tables.repository import check_key, storage_errors
from shared.adapters.tables.store import TableStore
from shared.domain.catalog import MicrosoftSegment
from shared.domain.errors import NotFound

TABLE = "Customers"


class TableCustomerSegments:
    """The CustomerDirectory port on the Customers table."""

    def __init__(self, store: TableStore, table_name: str = TABLE) -> None:
        self.store = store
        self.table_name = table_name

    def segment_of(self, reseller: str, customer_id: str) -> str:
        """The customer's segment id (commercial when none is set); NotFound if unknown."""
        try:
            entity = self.store.table(self.table_name).get_entity(
                check_key(reseller, "PartitionKey"),
                check_key(customer_id, "RowKey"),
                select=["Segment"],
            )
        except ResourceNotFoundError as exc:
            raise NotFound("there is no such customer") from exc
        except ValueError as exc:
            raise NotFound("there is no such customer") from exc
        except Exception as exc:
            raise storage_errors(exc) from exc
        segment = entity.get("Segment")
        return str(segment) if segment else MicrosoftSegment.COMMERCIAL.value
