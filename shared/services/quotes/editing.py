"""Making quotes: create (or from a Draft order), edit while Draft or ChangesRequested, send,
withdraw."""

from __future__ import annotations

import contextlib
import secrets
from datetime import timedelta

from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.identity import Principal, Reseller
from shared.domain.model import ANY_VERSION, expected_version, new_id
from shared.domain.orders import OrderCreate, OrderLine, OrderStatus
from shared.domain.quotes import (
    EDITABLE,
    Quote,
    QuoteAnswer,
    QuoteCreate,
    QuoteEvent,
    QuoteFromOrder,
    QuoteStatus,
    QuoteUpdate,
    link_hash,
    link_token,
)
from shared.services import orders, resellers
from shared.services.orders.book import customer_of
from shared.services.orders.drafts import command_of
from shared.services.orders.lines import build_lines
from shared.services.quotes import mail
from shared.services.quotes.answers import finish
from shared.services.quotes.book import QuoteBook, get


def _lines(
    book: QuoteBook,
    principal: Principal,
    reseller: Reseller,
    customer_id: str,
    command: OrderCreate,
) -> list[OrderLine]:
    customer = customer_of(book.orders, principal, reseller.slug, customer_id)
    return build_lines(book.orders, reseller, customer, command)


def _add(
    book: QuoteBook,
    principal: Principal,
    reseller: Reseller,
    customer_id: str,
    lines: list[OrderLine],
    command: QuoteCreate | QuoteFromOrder,
    quote_id: str | None,
    source_order_id: str | None = None,
) -> Quote:
    now = book.orders.clock.now()
    quote = Quote(
        reseller=reseller.slug,
        customer_id=customer_id,
        id=quote_id or new_id(),
        lines=lines,
        currency=reseller.currency,
        valid_days=command.valid_days or reseller.settings.quote_valid_days,
        note=command.note,
        comment=command.comment,
        created_by=principal.email,
        created_at=now,
        updated_at=now,
        history=[QuoteEvent(status=QuoteStatus.DRAFT, at=now, by=principal.email)],
        source_order_id=source_order_id,
    )
    return book.quotes.add(quote)


def create(
    book: QuoteBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    command: QuoteCreate,
    *,
    quote_id: str | None = None,
) -> Quote:
    """Store a Draft quote (lines validated and priced as an order's)."""
    reseller = resellers.get(book.orders.resellers, reseller_slug)
    lines = _lines(book, principal, reseller, customer_id, OrderCreate(lines=command.lines))
    return _add(book, principal, reseller, customer_id, lines, command, quote_id)


def from_order(
    book: QuoteBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str | None,
    command: QuoteFromOrder,
    *,
    quote_id: str | None = None,
) -> Quote:
    """Turn a Draft order into a Draft quote (its lines priced now); the draft is deleted."""
    order = orders.get(book.orders, principal, reseller_slug, customer_id, order_id)
    if etag is not None and etag != ANY_VERSION and etag != order.etag:
        raise ConcurrencyConflict("the order changed since it was read; read it again")
    if order.status is not OrderStatus.DRAFT:
        raise Conflict(f"only a Draft order can become a quote; this one is {order.status.value}")
    reseller = resellers.get(book.orders.resellers, reseller_slug)
    lines = _lines(book, principal, reseller, customer_id, command_of(order))
    quote = _add(book, principal, reseller, customer_id, lines, command, quote_id, order.id)
    # The quote replaces the draft; should this delete lose a race, the draft simply stays.
    with contextlib.suppress(ConcurrencyConflict):
        book.orders.orders.delete(order)
    return quote


def _editable(quote: Quote, etag: str) -> Quote:
    if quote.status not in EDITABLE:
        raise Conflict(
            f"only a Draft or ChangesRequested quote can be changed; this one is "
            f"{quote.status.value}"
        )
    quote.etag = expected_version(quote.etag, etag)
    return quote


def update(
    book: QuoteBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    quote_id: str,
    etag: str,
    command: QuoteUpdate,
) -> Quote:
    """Change lines (priced anew), validity, note or comment; fields left out stay."""
    quote = _editable(get(book, principal, reseller_slug, customer_id, quote_id), etag)
    reseller = resellers.get(book.orders.resellers, reseller_slug)
    given = command.model_fields_set
    if command.lines is not None:
        quote.lines = _lines(
            book, principal, reseller, customer_id, OrderCreate(lines=command.lines)
        )
    if "valid_days" in given:
        quote.valid_days = command.valid_days or reseller.settings.quote_valid_days
    if "note" in given:
        quote.note = command.note
    if "comment" in given:
        quote.comment = command.comment
    quote.updated_at = book.orders.clock.now()
    return book.quotes.update(quote)


def send(
    book: QuoteBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    quote_id: str,
    etag: str,
) -> Quote:
    """E-mail the quote to the customer with a new link (an earlier link dies): Sent."""
    quote = get(book, principal, reseller_slug, customer_id, quote_id)
    quote.etag = expected_version(quote.etag, etag)
    reseller = resellers.get(book.orders.resellers, reseller_slug)
    now = book.orders.clock.now()
    quote.move(QuoteStatus.SENT, now, principal.email)
    quote.sent_at, quote.valid_until = now, now + timedelta(days=quote.valid_days)
    if mail.sent_email(book, reseller, quote) is None:
        raise Conflict(
            "nobody of this customer can receive the quote: give the customer a contact e-mail "
            "(PATCH the customer) or switch on the quoteSent notification"
        )
    secret = secrets.token_urlsafe(32)
    quote.link_hash = link_hash(secret)
    # Held on the row only until its e-mail is queued (`finish`): a crash right after this write
    # leaves the e-mail owed, for housekeeping to queue, instead of a link nobody ever gets.
    quote.pending_link = link_token(quote.reseller, quote.id, secret)
    return finish(book, book.quotes.update(quote))


def withdraw(
    book: QuoteBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    quote_id: str,
    etag: str | None,
    answer: QuoteAnswer,
) -> Quote:
    """The reseller takes an open quote back: Withdrawn (its link no longer works)."""
    quote = get(book, principal, reseller_slug, customer_id, quote_id)
    quote.etag = expected_version(quote.etag, etag)
    quote.move(QuoteStatus.WITHDRAWN, book.orders.clock.now(), principal.email, answer.comment)
    return book.quotes.update(quote)
