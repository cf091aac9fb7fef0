"""What a report may be asked for, defined once: the HTTP query models declare their parameters
with these types, and the services check the same types again for callers that are not HTTP.

Continuation tokens are bound to the query they page: the ledger's token is wrapped with a short
hash of (report, reseller, month, customer, product), so a token used with other filters (or
made up) is a 400 naming `continuationToken`, never a page that silently restarts or skips.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.identity import CUSTOMER_ID_PATTERN
from shared.domain.ledger import MONTH_PATTERN, month_of
from shared.domain.orders import PRODUCT_ID_PATTERN
from shared.ports import Clock

T = TypeVar("T")

MAX_PAGE_SIZE = 1000
MAX_SERIES_MONTHS = 14
DEFAULT_REVENUE_MONTHS = 14
MAX_REVENUE_MONTHS = 24

# The parameters' types (the query models' fields use them as they are).
Month = Annotated[str, Field(pattern=MONTH_PATTERN)]
CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN)]
ProductId = Annotated[str, Field(pattern=PRODUCT_ID_PATTERN)]
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
SeriesMonths = Annotated[int, Field(ge=1, le=MAX_SERIES_MONTHS)]
RevenueMonths = Annotated[int, Field(ge=1, le=MAX_REVENUE_MONTHS)]

_MONTH: TypeAdapter[str] = TypeAdapter(Month)
_CUSTOMER: TypeAdapter[str] = TypeAdapter(CustomerId)
_PRODUCT: TypeAdapter[str] = TypeAdapter(ProductId)
_PAGE_SIZE: TypeAdapter[int] = TypeAdapter(PageSize)
_SERIES_MONTHS: TypeAdapter[int] = TypeAdapter(SeriesMonths)
_REVENUE_MONTHS: TypeAdapter[int] = TypeAdapter(RevenueMonths)


def _error(adapter: TypeAdapter[T], field: str, value: T) -> FieldError | None:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        return FieldError(field, exc.errors()[0]["msg"])
    return None


def _checked(adapter: TypeAdapter[T], field: str, value: T) -> T:
    error = _error(adapter, field, value)
    if error is not None:
        raise ValidationFailed([error])
    return value


def check_month(month: str | None, clock: Clock) -> str:
    """`month` (YYYY-MM), or the current one; a malformed one is a 400 naming `month`."""
    return month_of(clock.now()) if month is None else _checked(_MONTH, "month", month)


def check_page_size(page_size: int) -> int:
    """Rows per page, else a 400 naming `pageSize`."""
    return _checked(_PAGE_SIZE, "pageSize", page_size)


def check_series_months(months: int) -> int:
    """The licence series' length, else a 400 naming `months`."""
    return _checked(_SERIES_MONTHS, "months", months)


def check_revenue_months(months: int) -> int:
    """The revenue report's length, else a 400 naming `months`."""
    return _checked(_REVENUE_MONTHS, "months", months)


def check_filters(customer_id: str | None, product_id: str | None) -> None:
    """The customer and product filters are ids a table key can hold, else a 400 naming
    `customer` or `product` (never a storage error for `a/b`, `#` or `?`)."""
    found = (
        _error(_CUSTOMER, "customer", customer_id) if customer_id is not None else None,
        _error(_PRODUCT, "product", product_id) if product_id is not None else None,
    )
    errors = [e for e in found if e is not None]
    if errors:
        raise ValidationFailed(errors)


def _query_hash(report: str, *filters: str | None) -> str:
    canonical = json.dumps([report, *filters], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def bind_token(token: str | None, report: str, *filters: str | None) -> str | None:
    """The ledger's next-page token, wrapped with the hash of the query it continues."""
    if token is None:
        return None
    return f"{_query_hash(report, *filters)}.{token}"


def unbind_token(token: str | None, report: str, *filters: str | None) -> str | None:
    """The ledger's token inside a token `bind_token` gave for this very query; a token of
    another query, or none this API gave, is a 400 naming `continuationToken`."""
    if not token:
        return None
    digest, dot, inner = token.partition(".")
    if not dot or not inner or not hmac.compare_digest(digest, _query_hash(report, *filters)):
        raise ValidationFailed(
            [FieldError("continuationToken", "is not a token of this report with these filters")]
        )
    return inner
