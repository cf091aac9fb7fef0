"""The customer's answer: accept (into an order), decline or ask for changes; signed in as a
customer user, or through the e-mailed link without an account.

Accepting is decided by one write: the quote becomes Accepted with the id of its order fixed
(`order_id`, `order_pending`), guarded by its ETag, so of two racing acceptances one wins and
the other is refused. The order is added after it under that id (a second add finds it), and
whoever touches the quote next (a repeated answer, a link, `timer_housekeeping`) adds it if a
crash came between the two writes: never two orders, never an accepted quote without one. The
e-mail an answer owes the reseller is finished the same way (`finish`).
"""

from __future__ import annotations

from shared.domain.customers import Customer
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    NotFound,
    ValidationFailed,
)
from shared.domain.identity import Principal, Reseller
from shared.domain.model import new_id
from shared.domain.money import Money
from shared.domain.orders import (
    HistoryEntry,
    Order,
    OrderCreate,
    OrderLine,
    OrderStatus,
)
from shared.domain.quotes import (
    Quote,
    QuoteAnswer,
    QuoteAnswerKind,
    QuoteStatus,
    parse_link,
    quote_row_key,
)
from shared.services import ratelimit, resellers
from shared.services.attribution import names_for
from shared.services.orders.book import SYSTEM, find_order
from shared.services.orders.drafts import lines_command
from shared.services.orders.lines import build_lines
from shared.services.orders.submission import provision_message
from shared.services.quotes import mail
from shared.services.quotes.book import LINK_LIMITS, VIA_LINK, QuoteBook, find_quote, get
from shared.services.quotes.views import QuotePublic, present

# The one answer to a link that is not (or no longer) a quote's: nothing tells them apart.
LINK_NOT_FOUND = "quote link not found"
# Why an accepted quote's order waits, as its customer may read it (the details are staff's).
HELD = "waiting for the reseller's approval"


def _pinned(quote: Quote) -> OrderCreate:
    """The quote's lines with the quoted customer unit price pinned (cost is priced anew)."""
    return lines_command(_as_quoted(quote))


def _as_quoted(quote: Quote) -> list[OrderLine]:
    """The quote's own lines, price pinned: for an order that could not be priced anew."""
    return [
        li.model_copy(update={"unit_price": li.priced.unit.customer_price, "markup_percent": None})
        for li in quote.lines
    ]


def _customer(book: QuoteBook, quote: Quote) -> Customer:
    customer = book.orders.customers.find(quote.reseller, quote.customer_id)
    if customer is None:
        raise NotFound("customer not found")
    return customer


def _total(lines: list[OrderLine], currency: str, layer: str) -> Money:
    return sum((getattr(li.priced.extended, layer) for li in lines), Money.zero(currency))


def _open_order(
    book: QuoteBook,
    quote: Quote,
    reseller: Reseller,
    lines: list[OrderLine],
    by: str,
    hold: str | None = None,
) -> Order:
    """Add the accepted quote's order (Submitted with its message, or PendingApproval) under
    the id the quote fixed; an order already there (an earlier attempt) is the answer."""
    assert quote.order_id is not None
    existing = find_order(book.orders, quote.reseller, quote.order_id)
    if existing is not None:
        return existing
    now = book.orders.clock.now()
    order = Order(
        reseller=quote.reseller,
        customer_id=quote.customer_id,
        id=quote.order_id,
        lines=lines,
        currency=quote.currency,
        created_by=quote.created_by,  # staff made the offer; the history says who accepted
        quote_id=quote.id,
        created_at=now,
        updated_at=now,
        history=[HistoryEntry(status=OrderStatus.DRAFT, at=now, by=by, reason=f"quote {quote.id}")],
    )
    price = _total(lines, quote.currency, "customer_price")
    cost = _total(lines, quote.currency, "reseller_cost")
    if hold is None and price - cost < Money.zero(quote.currency):
        hold = (
            f"the margin is negative at acceptance: the quoted price {price.amount} is below "
            f"today's cost {cost.amount} {quote.currency}; approve to sell at a loss, or reject"
        )
    messages = []
    if hold is not None:
        # The customer reads the history: the reason naming costs is a staff-only warning.
        order.warnings.append(hold)
        order.move(OrderStatus.PENDING_APPROVAL, now, SYSTEM, HELD)
    elif reseller.settings.orders_require_approval:
        order.move(OrderStatus.PENDING_APPROVAL, now, by)
    else:
        order.move(OrderStatus.SUBMITTED, now, by)
        order.start_attempt()
        messages = [provision_message(order)]
    try:
        return book.orders.orders.add(order, messages=messages)
    except Conflict:
        found = find_order(book.orders, quote.reseller, quote.order_id)
        if found is None:
            raise
        return found


def _ensure_order(
    book: QuoteBook, quote: Quote, reseller: Reseller, lines: list[OrderLine] | None
) -> None:
    """The accepted quote's order, added if missing (`lines` as priced at acceptance, or priced
    now); the quote is accepted either way, so an order that cannot be priced is held."""
    if find_order(book.orders, quote.reseller, quote.order_id or "") is not None:
        return
    by = quote.history[-1].by
    if lines is None:
        try:
            lines = build_lines(book.orders, reseller, _customer(book, quote), _pinned(quote))
        except (ValidationFailed, Conflict) as exc:
            hold = f"could not be priced again at acceptance ({exc.detail}); check before approving"
            _open_order(book, quote, reseller, _as_quoted(quote), by, hold)
            return
    _open_order(book, quote, reseller, lines, by)


def finish(book: QuoteBook, quote: Quote, lines: list[OrderLine] | None = None) -> Quote:
    """Do what the quote's latest change left for after its own write, then record it done in
    one more write: add the accepted quote's order if it is missing, queue the e-mail it owes
    (under a fixed id, its link dropped from the row). Whoever touches the quote next (an answer,
    its link, `timer_housekeeping`) calls this too: a crash between the writes delays the order
    or the e-mail, never loses it, and never makes either twice."""
    if not (quote.mail_due or (quote.order_pending and quote.status is QuoteStatus.ACCEPTED)):
        return quote
    reseller = resellers.get(book.orders.resellers, quote.reseller)
    if quote.order_pending and quote.status is QuoteStatus.ACCEPTED:
        _ensure_order(book, quote, reseller, lines)
    mail.queue_due(book, reseller, quote)
    quote.order_pending, quote.mail_due, quote.pending_link = False, False, None
    try:
        return book.quotes.update(quote)
    except ConcurrencyConflict:
        # Changed meanwhile: whoever changed it finishes what it owes.
        return book.quotes.get(*_keys(quote))


def _refusal(via_link: bool, detail: str) -> DomainError:
    return Gone(detail) if via_link else Conflict(detail)


def _check_answerable(book: QuoteBook, quote: Quote, via_link: bool) -> None:
    if quote.status is not QuoteStatus.SENT:
        raise _refusal(
            via_link, f"this quote is {quote.status.value}: it can no longer be answered"
        )
    if not quote.valid_at(book.orders.clock.now()):
        assert quote.valid_until is not None
        raise _refusal(via_link, f"this quote expired on {quote.valid_until:%Y-%m-%d %H:%M} UTC")


def _write(book: QuoteBook, quote: Quote, via_link: bool) -> Quote:
    """Store the answer; losing a race to another answer is a 409 (410 through the link)."""
    try:
        return book.quotes.update(quote)
    except ConcurrencyConflict:
        current = book.quotes.find(*_keys(quote))
        if current is not None and current.status is not QuoteStatus.SENT:
            raise _refusal(
                via_link, f"this quote was {current.status.value} meanwhile: nothing changed"
            ) from None
        raise


def _keys(quote: Quote) -> tuple[str, str]:
    return quote.reseller, quote_row_key(quote.id)


def _answer(
    book: QuoteBook,
    quote: Quote,
    kind: QuoteAnswerKind,
    by: str,
    comment: str | None,
    *,
    via_link: bool,
) -> Quote:
    quote = finish(book, quote)
    _check_answerable(book, quote, via_link)
    reseller = resellers.get(book.orders.resellers, quote.reseller)
    now = book.orders.clock.now()
    if kind is not QuoteAnswerKind.ACCEPT:
        quote.move(kind.status, now, by, comment)
        return finish(book, _write(book, quote, via_link))
    try:
        lines = build_lines(book.orders, reseller, _customer(book, quote), _pinned(quote))
    except ValidationFailed as exc:
        raise Conflict(
            f"this quote cannot be accepted as it stands ({exc.detail}); ask "
            f"{reseller.settings.appearance.display_name} for a new one"
        ) from exc
    quote.order_id, quote.order_pending = new_id(), True
    quote.move(QuoteStatus.ACCEPTED, now, by, comment)
    return finish(book, _write(book, quote, via_link), lines)


def answer(
    book: QuoteBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    quote_id: str,
    kind: QuoteAnswerKind,
    body: QuoteAnswer,
) -> Quote:
    """A customer's user answers a Sent quote of its customer (only a Sent quote can be
    answered, so no If-Match: a second answer finds it answered and gets a 409)."""
    if not principal.is_customer_user:
        raise Forbidden("the customer answers a quote; its reseller edits or withdraws it")
    quote = get(book, principal, reseller_slug, customer_id, quote_id)
    return _answer(book, quote, kind, principal.email, body.comment, via_link=False)


def _by_link(book: QuoteBook, token: str, client: str) -> Quote:
    """The quote of a link token, rate-limited per client and per token; a wrong token and an
    unknown one get the same answer after the same one read."""
    for limit, subject in zip(LINK_LIMITS, (client, token), strict=True):
        ratelimit.hit(book.rate_limits, book.orders.clock, limit, subject)
    parsed = parse_link(token)
    if parsed is None:
        book.quotes.find("-", "-")  # the same one read as for a well-formed token
        raise NotFound(LINK_NOT_FOUND)
    reseller, quote_id, secret = parsed
    quote = find_quote(book, reseller, quote_id)
    if quote is None or not quote.link_matches(secret):
        raise NotFound(LINK_NOT_FOUND)
    return quote


def link_view(book: QuoteBook, token: str, client: str) -> QuotePublic:
    """The quote at the customer's prices, for whoever holds its link (410 once answered)."""
    quote = finish(book, _by_link(book, token, client))
    _check_answerable(book, quote, via_link=True)
    view = present(None, quote, names_for(book.orders, None, quote.reseller, quote.customer_id))
    assert isinstance(view, QuotePublic)
    return view


def link_answer(
    book: QuoteBook, token: str, client: str, kind: QuoteAnswerKind, body: QuoteAnswer
) -> QuotePublic:
    """Answer through the e-mailed link, without an account."""
    quote = _answer(
        book, _by_link(book, token, client), kind, VIA_LINK, body.comment, via_link=True
    )
    view = present(None, quote, names_for(book.orders, None, quote.reseller, quote.customer_id))
    assert isinstance(view, QuotePublic)
    return view
