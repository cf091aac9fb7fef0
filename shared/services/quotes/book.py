"""The quote book (the records quotes work on) and finding a quote in the caller's world."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.domain.errors import NotFound
from shared.domain.identity import Principal
from shared.domain.quotes import QUOTE_ID_PATTERN, Quote, quote_row_key
from shared.domain.ratelimit import RateWindow
from shared.ports import Repository
from shared.services.attribution import VIA_LINK as VIA_LINK
from shared.services.orders.book import OrderBook, customer_of
from shared.services.ratelimit import Limit

_QUOTE_ID = re.compile(QUOTE_ID_PATTERN)
# The link routes are open to anyone: per client and per token, requests per minute.
LINK_LIMITS = (Limit("quote-link-client", 60, 60), Limit("quote-link-token", 20, 60))


@dataclass
class QuoteBook:
    """The records and settings the quote services work on."""

    quotes: Repository[Quote]
    orders: OrderBook  # customers, resellers, catalog, clock, notifications, users, orders
    rate_limits: Repository[RateWindow]
    public_base_url: str


def find_quote(book: QuoteBook, reseller: str, quote_id: str) -> Quote | None:
    """The quote by its id (None for an id that is not a quote's)."""
    if _QUOTE_ID.fullmatch(quote_id) is None:
        return None
    return book.quotes.find(reseller, quote_row_key(quote_id.upper()))


def get(
    book: QuoteBook, principal: Principal, reseller: str, customer_id: str, quote_id: str
) -> Quote:
    """One quote of the customer inside the caller's world (NotFound otherwise)."""
    customer_of(book.orders, principal, reseller, customer_id)
    found = find_quote(book, reseller, quote_id)
    if found is None or found.customer_id != customer_id or not visible_to(principal, found):
        raise NotFound("quote not found")
    return found


def visible_to(principal: Principal, quote: Quote) -> bool:
    """Staff see every quote; the customer's users only those sent to them (a Draft, and one
    withdrawn before it was ever sent, is the reseller's own work in progress)."""
    return not principal.is_customer_user or quote.sent_at is not None
