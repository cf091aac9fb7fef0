"""The quote e-mails: to the customer when sent (its prices only, the link), and to the
reseller when the customer answers or the quote expires."""

from __future__ import annotations

import contextlib

from shared.domain.errors import Conflict
from shared.domain.identity import NotificationEvent, Reseller, UserStatus
from shared.domain.money import Money
from shared.domain.notifications import Email, secret_placeholder
from shared.domain.quotes import Quote, QuoteStatus
from shared.services import notifications
from shared.services.quotes.book import QuoteBook

LINK_SECRET = "quote"  # noqa: S105 — the placeholder's name, not a secret


def notification_id(quote: Quote) -> str:
    """The fixed id of the e-mail of the quote's latest status change (queued once)."""
    return f"quote-{quote.id}-{quote.status.value.lower()}-{len(quote.history)}"


def _total(quote: Quote) -> Money:
    return sum(
        (li.priced.extended.customer_price for li in quote.lines), Money.zero(quote.currency)
    )


def _price_lines(quote: Quote) -> str:
    """The lines at the customer's prices: nothing of cost, margin or mark-up."""
    rows = []
    for li in quote.lines:
        unit, ext = li.priced.unit.customer_price, li.priced.extended.customer_price
        rows.append(
            f"- {li.quantity} × {li.name} ({li.term_duration}, billed {li.billing_cycle}): "
            f"{unit.amount} {unit.currency} each, {ext.amount} {ext.currency}"
        )
    total = _total(quote)
    return "\n".join(rows) + f"\nTotal: {total.amount} {total.currency}"


def customer_recipients(book: QuoteBook, quote: Quote) -> tuple[list[str | None], list[str]]:
    """The customer's contact (addressed) and its active users (copied per the settings)."""
    customer = book.orders.customers.find(quote.reseller, quote.customer_id)
    contact = customer.contact.email if customer is not None else None
    users = []
    if book.orders.users is not None:
        page = book.orders.users.list(
            quote.reseller,
            equals={"customer_id": quote.customer_id, "status": UserStatus.ACTIVE},
            page_size=50,
        )
        users = [u.email for u in page.items]
    return [contact], users


def sent_email(book: QuoteBook, reseller: Reseller, quote: Quote) -> Email | None:
    """The e-mail that sends the quote (its link as a secret placeholder), or None if nobody
    of the customer can get it."""
    addressed, users = customer_recipients(book, quote)
    link = f"{book.public_base_url.rstrip('/')}/quotes/{secret_placeholder(LINK_SECRET)}"
    name = reseller.settings.appearance.display_name
    assert quote.valid_until is not None
    text = (
        f"{name} sends you a quote.\n\n"
        + (f"{quote.note}\n\n" if quote.note else "")
        + f"{_price_lines(quote)}\n\n"
        f"The quote is valid until {quote.valid_until:%Y-%m-%d %H:%M} UTC. Accept it, decline "
        f"it or ask for changes here (no account needed):\n{link}\n\n"
        f"(API: GET /api/quote-links/{secret_placeholder(LINK_SECRET)}, then POST …/accept, "
        "…/decline or …/request-changes.)\n"
    )
    return notifications.email_to(
        reseller,
        NotificationEvent.QUOTE_SENT,
        f"Quote from {name}",
        text,
        addressed=addressed,
        interested=users,
        users=book.orders.users,
        staff=False,
    )


def queue_due(book: QuoteBook, reseller: Reseller, quote: Quote) -> None:
    """Queue the e-mail the quote's latest change owes (`mail_due`), under its fixed id: the
    customer's when Sent (with the link held in `pending_link`), else the reseller's. Writes
    nothing to the quote: the caller clears `mail_due` and the link after."""
    if not quote.mail_due:
        return
    if quote.status is not QuoteStatus.SENT:
        tell_reseller(book, reseller, quote)
    elif quote.pending_link is not None:
        _queue_sent(book, reseller, quote, quote.pending_link)


def _queue_sent(book: QuoteBook, reseller: Reseller, quote: Quote, token: str) -> None:
    """Queue the quote's e-mail; the link's token is kept only until the e-mail is sent."""
    email = sent_email(book, reseller, quote)
    if email is None or book.orders.notifications is None:
        return
    with contextlib.suppress(Conflict):
        notifications.queue_email(
            book.orders.notifications,
            reseller.slug,
            email,
            notification_id=notification_id(quote),
            secrets={LINK_SECRET: token},
        )


def tell_reseller(book: QuoteBook, reseller: Reseller, quote: Quote) -> None:
    """Tell the reseller's staff (whoever made the quote, per the settings) what happened."""
    if book.orders.notifications is None:
        return
    last = quote.history[-1]
    expired = quote.status is QuoteStatus.EXPIRED
    what = {
        QuoteStatus.ACCEPTED: "accepted",
        QuoteStatus.DECLINED: "declined",
        QuoteStatus.CHANGES_REQUESTED: "asks for changes to",
        QuoteStatus.EXPIRED: "did not answer before the validity of",
    }.get(quote.status, quote.status.value)
    customer = book.orders.customers.find(quote.reseller, quote.customer_id)
    who = customer.name if customer is not None else quote.customer_id
    # A customer that asked for changes did answer: it waited for a version that never came.
    waited = expired and quote.history[-2].status is QuoteStatus.CHANGES_REQUESTED
    text = (
        f"{who} asked for changes to quote {quote.id}, and no new version was sent before "
        "its validity ran out.\n"
        if waited
        else f"{who} {what} quote {quote.id}.\n"
    )
    if last.comment:
        text += f"\nTheir comment:\n{last.comment}\n"
    if quote.status is QuoteStatus.ACCEPTED and quote.order_id:
        text += f"\nIts order: {quote.order_id}\n"
    email = notifications.email_to(
        reseller,
        NotificationEvent.QUOTE_EXPIRED if expired else NotificationEvent.QUOTE_ANSWERED,
        f"Quote {quote.id}: {quote.status.value}",
        text,
        interested=[quote.created_by],
        users=book.orders.users,
    )
    if email is None:
        return
    with contextlib.suppress(Conflict):
        notifications.queue_email(
            book.orders.notifications, reseller.slug, email, notification_id=notification_id(quote)
        )
