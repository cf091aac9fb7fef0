"""What `timer_housekeeping` does for quotes: expire those past their validity (the reseller is
told), finish what a crash interrupted (an accepted quote's order, an owed e-mail), and drop old
rate-limit windows."""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.domain.errors import ConcurrencyConflict
from shared.domain.quotes import QuoteStatus
from shared.services import ratelimit
from shared.services.orders.book import SYSTEM
from shared.services.quotes.answers import finish
from shared.services.quotes.book import QuoteBook

log = logging.getLogger(__name__)
RATE_WINDOWS_KEPT = timedelta(hours=1)


def expire_due(book: QuoteBook) -> int:
    """Expire every Sent or ChangesRequested quote past its validity; how many."""
    now = book.orders.clock.now()
    expired = 0
    # One query: an open quote has a validity once sent (a Draft has none yet).
    due = list(book.quotes.iterate(equals={"is_open": True}, before={"valid_until": now}))
    for quote in due:
        quote.move(QuoteStatus.EXPIRED, now, SYSTEM)
        try:
            quote = book.quotes.update(quote)
        except ConcurrencyConflict:
            continue  # answered meanwhile: the next pass decides again
        expired += 1
        finish(book, quote)  # tells the reseller
    return expired


def run(book: QuoteBook) -> int:
    """One pass: expiry, interrupted acceptances and owed e-mails, old rate-limit windows;
    quotes expired."""
    expired = expire_due(book)
    for flag in ("order_pending", "mail_due"):
        for quote in list(book.quotes.iterate(equals={flag: True})):
            finish(book, quote)
    ratelimit.purge(book.rate_limits, book.orders.clock.now(), RATE_WINDOWS_KEPT)
    if expired:
        log.info("expired %d quote(s)", expired)
    return expired
