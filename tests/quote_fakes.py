"""Quotes in memory on a fake container (after `install_orders`)."""

from __future__ import annotations

from typing import Any

from shared.domain.quotes import Quote, quote_row_key
from shared.domain.ratelimit import RateWindow
from shared.services.quotes import QuoteBook
from tests.fakes import InMemoryRepository


def install_quotes(c: Any) -> QuoteBook:
    """The Quotes and RateLimits tables in memory, and the quote book over the order book."""
    book = QuoteBook(
        quotes=InMemoryRepository[Quote](lambda q: (q.reseller, quote_row_key(q.id))),
        orders=c.order_book,
        rate_limits=InMemoryRepository[RateWindow](lambda w: (w.bucket, w.window)),
        public_base_url=c.settings.public_base_url,
    )
    c.__dict__.update(quotes=book.quotes, rate_limits=book.rate_limits, quote_book=book)
    return book
