"""Quotes: create (or from a Draft order), list, read, edit, send, withdraw; the customer's
answers, signed in or through the e-mailed link (no account; rate-limited)."""

from __future__ import annotations

import re
from typing import TypeVar

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.model import Page
from shared.domain.quotes import (
    Quote,
    QuoteAnswer,
    QuoteAnswerKind,
    QuoteCreate,
    QuoteFromOrder,
    QuoteUpdate,
)
from shared.services import quotes
from shared.services.access import PUBLIC, Action, allow
from shared.services.attribution import names_for
from shared.services.quotes import QuotePublic, QuoteStaff, StatusFilter

B = TypeVar("B", QuoteCreate, QuoteUpdate)
Opt = TypeVar("Opt", QuoteAnswer, QuoteFromOrder)
bp = func.Blueprint()
TAGS = ("quotes",)
QUOTES = "resellers/{r}/customers/{c}/quotes"
QUOTE = QUOTES + "/{q}"
LINK = "quote-links/{token}"
_INDEX = re.compile(r"\.(\d+)(?=\.|$)")
_ANSWERS = {
    QuoteAnswerKind.ACCEPT: "Accept a Sent quote: its order is placed at the quoted prices.",
    QuoteAnswerKind.DECLINE: "Decline a Sent quote.",
    QuoteAnswerKind.REQUEST_CHANGES: "Ask the reseller to change a Sent quote.",
}


class QuoteListQuery(PageQuery):
    """Filters of a quote list (an unknown parameter is a 400, not silently ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    status: StatusFilter | None = Field(
        None, description="open (Draft, Sent, ChangesRequested), past, or one status."
    )
    customer: str | None = Field(None, max_length=40, description="Only this customer's.")


def _body(call: Call, model: type[B]) -> B:
    """The body, with list positions named like `lines[2].quantity`."""
    try:
        return call.body(model)
    except ValidationFailed as exc:
        raise ValidationFailed(
            [FieldError(_INDEX.sub(r"[\1]", e.field), e.message) for e in exc.errors]
        ) from exc


def _optional(call: Call, model: type[Opt]) -> Opt:
    return call.body(model) if (call.req.get_body() or b"").strip() else model()


def _reply(call: Call, quote: Quote, status: int = 200, location: bool = False) -> Reply:
    path = f"/api/resellers/{quote.reseller}/customers/{quote.customer_id}/quotes/{quote.id}"
    return Reply(
        quotes.present(
            call.principal,
            quote,
            names_for(
                container().quote_book.orders, call.principal, quote.reseller, quote.customer_id
            ),
        ),
        status=status,
        headers={"Location": path} if location else {},
        etag=quote.etag,
    )


def _client(call: Call) -> str:
    """The caller's address as the platform's front end forwards it (rate-limit bucket).

    The front end appends the address it saw to X-Forwarded-For, after whatever the caller
    sent: only that last entry is not the caller's to choose (the first one is, and a new one
    per request would be a new bucket per request). Its port is dropped (`1.2.3.4:5678`,
    `[2001:db8::1]:5678`), as it changes with every connection.
    """
    last = (call.header("x-forwarded-for") or "").split(",")[-1].strip()
    if last.startswith("["):
        return last[1:].split("]", 1)[0] or "-"
    return last.rsplit(":", 1)[0] if last.count(":") == 1 else last or "-"


@http(
    bp,
    QUOTES,
    ["POST"],
    name="http_create_quote",
    summary="Save a quote as a Draft: order lines, validity, a note, an internal comment.",
    body=QuoteCreate,
    response=QuoteStaff | QuotePublic,
    status=201,
    tags=TAGS,
    errors=(400, 409),
    access=allow(Action.MANAGE_QUOTES),
    idempotent=True,
)
def create_quote(call: Call) -> Reply:
    """A new Draft quote."""
    r = call.route
    quote = quotes.create(
        container().quote_book,
        call.principal,
        r["r"],
        r["c"],
        _body(call, QuoteCreate),
        quote_id=call.new_id(),
    )
    return _reply(call, quote, 201, location=True)


@http(
    bp,
    "resellers/{r}/customers/{c}/orders/{o}/quote",
    ["POST"],
    name="http_quote_order",
    summary="Turn a Draft order into a Draft quote (the draft is deleted; If-Match optional).",
    body=QuoteFromOrder,
    response=QuoteStaff | QuotePublic,
    status=201,
    tags=TAGS,
    errors=(400, 409, 412),
    access=allow(Action.MANAGE_QUOTES),
    idempotent=True,
)
def quote_order(call: Call) -> Reply:
    """The new Draft quote."""
    r = call.route
    quote = quotes.from_order(
        container().quote_book,
        call.principal,
        r["r"],
        r["c"],
        r["o"],
        call.if_match_optional(),
        _optional(call, QuoteFromOrder),
        quote_id=call.new_id(),
    )
    return _reply(call, quote, 201, location=True)


@http(
    bp,
    "resellers/{r}/quotes",
    ["GET"],
    name="http_list_quotes",
    summary="Quotes, newest first, by status (open, past, one) and customer (customers: theirs).",
    query=QuoteListQuery,
    response=Page[QuoteStaff | QuotePublic],
    tags=TAGS,
    errors=(400,),
    access=allow(Action.READ_QUOTES),
)
def list_quotes(call: Call) -> Page[QuoteStaff | QuotePublic]:
    """A page of the reseller's quotes."""
    q = call.query(QuoteListQuery)
    return quotes.list_quotes(
        container().quote_book,
        call.principal,
        call.route["r"],
        q.customer,
        status=q.status,
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


@http(
    bp,
    QUOTE,
    ["GET"],
    name="http_get_quote",
    summary="One quote (with its ETag).",
    response=QuoteStaff | QuotePublic,
    tags=TAGS,
    access=allow(Action.READ_QUOTES),
)
def get_quote(call: Call) -> Reply:
    """The quote."""
    r = call.route
    return _reply(call, quotes.get(container().quote_book, call.principal, r["r"], r["c"], r["q"]))


@http(
    bp,
    QUOTE,
    ["PATCH"],
    name="http_update_quote",
    summary="Change a Draft or ChangesRequested quote (If-Match): lines, validDays, note, comment.",
    body=QuoteUpdate,
    response=QuoteStaff | QuotePublic,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.MANAGE_QUOTES),
)
def update_quote(call: Call) -> Reply:
    """The changed quote."""
    r = call.route
    etag = call.if_match()
    quote = quotes.update(
        container().quote_book,
        call.principal,
        r["r"],
        r["c"],
        r["q"],
        etag,
        _body(call, QuoteUpdate),
    )
    return _reply(call, quote)


@http(
    bp,
    QUOTE + "/send",
    ["POST"],
    name="http_send_quote",
    summary="E-mail the quote to the customer with a link to answer it (If-Match): Sent.",
    response=QuoteStaff | QuotePublic,
    tags=TAGS,
    errors=(409, 412, 428),
    access=allow(Action.MANAGE_QUOTES),
)
def send_quote(call: Call) -> Reply:
    """The sent quote."""
    r = call.route
    etag = call.if_match()
    quote = quotes.send(container().quote_book, call.principal, r["r"], r["c"], r["q"], etag)
    return _reply(call, quote)


@http(
    bp,
    QUOTE + "/withdraw",
    ["POST"],
    name="http_withdraw_quote",
    summary="Take an open quote back (If-Match optional; optional comment): Withdrawn.",
    body=QuoteAnswer,
    response=QuoteStaff | QuotePublic,
    tags=TAGS,
    errors=(400, 409, 412),
    access=allow(Action.MANAGE_QUOTES),
)
def withdraw_quote(call: Call) -> Reply:
    """The withdrawn quote."""
    r = call.route
    quote = quotes.withdraw(
        container().quote_book,
        call.principal,
        r["r"],
        r["c"],
        r["q"],
        call.if_match_optional(),
        _optional(call, QuoteAnswer),
    )
    return _reply(call, quote)


def _signed_in_answer(kind: QuoteAnswerKind) -> None:
    name = "http_" + kind.value.replace("-", "_") + "_quote"

    @http(
        bp,
        QUOTE + "/" + kind.value,
        ["POST"],
        name=name,
        summary=_ANSWERS[kind] + " (a customer user; optional comment)",
        body=QuoteAnswer,
        response=QuoteStaff | QuotePublic,
        tags=TAGS,
        errors=(400, 409),
        access=allow(Action.ANSWER_QUOTES),
    )
    def handler(call: Call) -> Reply:
        r = call.route
        quote = quotes.answer(
            container().quote_book,
            call.principal,
            r["r"],
            r["c"],
            r["q"],
            kind,
            _optional(call, QuoteAnswer),
        )
        return _reply(call, quote)


def _link_answer(kind: QuoteAnswerKind) -> None:
    name = "http_link_" + kind.value.replace("-", "_") + "_quote"

    @http(
        bp,
        LINK + "/" + kind.value,
        ["POST"],
        name=name,
        summary=_ANSWERS[kind] + " (through the e-mailed link, no account; optional comment)",
        body=QuoteAnswer,
        response=QuotePublic,
        tags=TAGS,
        errors=(400, 404, 409, 410, 429),
        access=PUBLIC,
    )
    def handler(call: Call) -> QuotePublic:
        return quotes.link_answer(
            container().quote_book,
            call.route["token"],
            _client(call),
            kind,
            _optional(call, QuoteAnswer),
        )


for _kind in QuoteAnswerKind:
    _signed_in_answer(_kind)
    _link_answer(_kind)


@http(
    bp,
    LINK,
    ["GET"],
    name="http_link_quote",
    summary="A Sent quote at the customer's prices, for whoever holds its e-mailed link.",
    response=QuotePublic,
    tags=TAGS,
    errors=(404, 410, 429),
    access=PUBLIC,
)
def link_quote(call: Call) -> QuotePublic:
    """The quote (404 for a link that is not one; 410 once answered, expired or withdrawn)."""
    return quotes.link_view(container().quote_book, call.route["token"], _client(call))
