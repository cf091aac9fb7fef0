"""What a caller sees of a quote (staff: every price layer and the internal comment; the
customer: its prices only), and the lists of them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime

from shared.domain.identity import Principal
from shared.domain.model import Page, WireModel
from shared.domain.money import Money
from shared.domain.quotes import Quote, QuoteEvent, QuoteStatus
from shared.services import access, resellers
from shared.services.attribution import Names, names_for
from shared.services.orders.book import customer_of
from shared.services.orders.views import OrderLinePublic, OrderLineStaff, lines_view
from shared.services.quotes.book import QuoteBook, visible_to

StatusFilter = Literal[
    "open",
    "past",
    "Draft",
    "Sent",
    "ChangesRequested",
    "Accepted",
    "Declined",
    "Expired",
    "Withdrawn",
]


class QuotePublic(WireModel):
    """A quote as the customer sees it (no cost, margin, mark-up or internal comment)."""

    id: str
    reseller: str
    customer_id: str
    status: QuoteStatus
    currency: str
    lines: list[OrderLinePublic]
    total: Money
    valid_until: AwareDatetime | None
    note: str | None
    history: list[QuoteEvent]
    order_id: str | None
    sent_at: AwareDatetime | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class QuoteStaff(WireModel):
    """A quote as reseller staff see it."""

    id: str
    reseller: str
    customer_id: str
    status: QuoteStatus
    currency: str
    lines: list[OrderLineStaff]
    total: Money
    total_cost: Money
    margin: Money
    valid_days: int
    valid_until: AwareDatetime | None
    note: str | None
    comment: str | None
    history: list[QuoteEvent]
    order_id: str | None
    source_order_id: str | None
    created_by: str
    sent_at: AwareDatetime | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


_COMMON = {"id", "reseller", "customer_id", "status", "currency", "valid_until", "note"} | {
    "sent_at",
    "created_at",
    "updated_at",
}


def present(principal: Principal | None, quote: Quote, names: Names) -> QuoteStaff | QuotePublic:
    """The view of a quote the caller may see (None: someone holding the e-mailed link;
    `names`: from `names_for` the caller)."""
    common = quote.model_dump(include=_COMMON)
    common["history"] = [e.model_copy(update={"by": names(e.by)}) for e in quote.history]
    # An order id is shown once the order exists (an acceptance adds it right after the quote).
    common["order_id"] = None if quote.order_pending else quote.order_id
    priced = lines_view(principal, quote.lines, quote.currency)
    if access.sees_cost(principal):
        return QuoteStaff(
            **common,
            **priced,
            valid_days=quote.valid_days,
            comment=quote.comment,
            source_order_id=quote.source_order_id,
            created_by=quote.created_by,
        )
    return QuotePublic(**common, **priced)


def list_quotes(
    book: QuoteBook,
    principal: Principal,
    reseller: str,
    customer_id: str | None,
    *,
    status: StatusFilter | None = None,
    page_size: int = 50,
    continuation_token: str | None = None,
) -> Page[QuoteStaff | QuotePublic]:
    """A page of quotes, newest first: one customer's, or (staff) the whole reseller's."""
    resellers.get(book.orders.resellers, reseller)
    if principal.is_customer_user:
        customer_id = principal.customer_id
    if customer_id is not None:
        customer_of(book.orders, principal, reseller, customer_id)
    equals: dict[str, Any] = {}
    if customer_id is not None:
        equals["customer_id"] = customer_id
    if status == "open":
        equals["is_open"] = True
    elif status == "past":
        equals["is_open"] = False
    elif status is not None:
        equals["status"] = QuoteStatus(status)
    page = book.quotes.list(
        reseller, equals=equals or None, page_size=page_size, continuation_token=continuation_token
    )
    names = names_for(book.orders, principal, reseller, customer_id)
    return Page[QuoteStaff | QuotePublic](
        # A customer's page may come out shorter than asked (its unsent quotes left out); the
        # token still leads on.
        items=[present(principal, q, names) for q in page.items if visible_to(principal, q)],
        continuation_token=page.continuation_token,
    )
