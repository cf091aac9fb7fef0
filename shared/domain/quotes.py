"""Quotes: an offer priced for a customer, sent to it, answered by it (accepted into an order).

A quote is one row of table `Quotes` (PartitionKey the reseller slug, RowKey `quote_row_key(id)`,
newest first like orders). Its lines are order lines (`OrderLine` with the `PricedLine` snapshot
the reseller saw), so accepting one is an order of the same lines at the quoted customer prices.

The e-mailed link carries `<reseller>.<quote id>.<secret>`; only the secret's hash is stored
(`link_hash`). The link authorises nothing unless the quote is `Sent` and still valid; a new
send replaces the hash, so an older link stops being known at all. The token itself is on the
row only from the send until its e-mail is queued (`pending_link`), as a Pending notification
holds its secrets: a crash in between leaves the e-mail for housekeeping to queue, not lost.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, Field, model_validator

from shared.domain.errors import Conflict
from shared.domain.model import Timestamped, WireModel, new_id
from shared.domain.orders import MAX_LINES, OrderLine, OrderLineInput, order_row_key

QUOTE_ID_PATTERN = r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}"
_LINK = re.compile(
    r"([a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?)\.(" + QUOTE_ID_PATTERN + r")\.([\w-]{40,64})"
)
MAX_VALID_DAYS = 365
TEXT_LIMIT = 2000


def quote_row_key(quote_id: str) -> str:
    """The RowKey of a quote: its ULID inverted, so newer sorts first (as orders do)."""
    return order_row_key(quote_id)


class QuoteStatus(StrEnum):
    """Where a quote is in its life (DESIGN.md, States)."""

    DRAFT = "Draft"
    SENT = "Sent"
    CHANGES_REQUESTED = "ChangesRequested"
    ACCEPTED = "Accepted"
    DECLINED = "Declined"
    EXPIRED = "Expired"
    WITHDRAWN = "Withdrawn"


Q = QuoteStatus
OPEN = frozenset({Q.DRAFT, Q.SENT, Q.CHANGES_REQUESTED})
EDITABLE = frozenset({Q.DRAFT, Q.CHANGES_REQUESTED})
# Changes someone hears of by e-mail: the customer (Sent), the reseller (answers, expiry).
MAILED = frozenset({Q.SENT, Q.ACCEPTED, Q.DECLINED, Q.CHANGES_REQUESTED, Q.EXPIRED})
# Sent → Sent is a new send (a lost e-mail, a new validity): a new link, the old one dies.
TRANSITIONS: dict[QuoteStatus, frozenset[QuoteStatus]] = {
    Q.DRAFT: frozenset({Q.SENT, Q.WITHDRAWN}),
    Q.SENT: frozenset(
        {Q.SENT, Q.ACCEPTED, Q.DECLINED, Q.CHANGES_REQUESTED, Q.EXPIRED, Q.WITHDRAWN}
    ),
    Q.CHANGES_REQUESTED: frozenset({Q.SENT, Q.EXPIRED, Q.WITHDRAWN}),
    Q.ACCEPTED: frozenset(),
    Q.DECLINED: frozenset(),
    Q.EXPIRED: frozenset(),
    Q.WITHDRAWN: frozenset(),
}


class QuoteAnswerKind(StrEnum):
    """What the customer answers."""

    ACCEPT = "accept"
    DECLINE = "decline"
    REQUEST_CHANGES = "request-changes"

    @property
    def status(self) -> QuoteStatus:
        """The status the answer moves a Sent quote to."""
        return {
            QuoteAnswerKind.ACCEPT: Q.ACCEPTED,
            QuoteAnswerKind.DECLINE: Q.DECLINED,
            QuoteAnswerKind.REQUEST_CHANGES: Q.CHANGES_REQUESTED,
        }[self]


# --- commands -------------------------------------------------------------------------------


class _QuoteTexts(WireModel):
    model_config = WireModel.model_config | {"extra": "forbid"}

    valid_days: int | None = Field(
        None, ge=1, le=MAX_VALID_DAYS, description="Days the sent quote can be accepted."
    )
    note: str | None = Field(
        None, min_length=1, max_length=TEXT_LIMIT, description="For the customer."
    )
    comment: str | None = Field(
        None, min_length=1, max_length=TEXT_LIMIT, description="Internal: staff only."
    )


class QuoteCreate(_QuoteTexts):
    """A new quote: the same lines as an order, validity, a note, an internal comment."""

    lines: list[OrderLineInput] = Field(min_length=1, max_length=MAX_LINES)


class QuoteFromOrder(_QuoteTexts):
    """A Draft order turned into a quote (its lines; the draft is then deleted)."""


class QuoteUpdate(_QuoteTexts):
    """Changes to a Draft or ChangesRequested quote; fields left out stay as they are."""

    lines: list[OrderLineInput] | None = Field(None, min_length=1, max_length=MAX_LINES)


class QuoteAnswer(WireModel):
    """The customer's answer; the comment is optional."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    comment: str | None = Field(None, min_length=1, max_length=TEXT_LIMIT)


# --- the record -----------------------------------------------------------------------------


class QuoteEvent(WireModel):
    """One status change: when, by whom, with the comment given."""

    status: QuoteStatus
    at: AwareDatetime
    by: str
    comment: str | None = None


class Quote(Timestamped):
    """A quote for a reseller's customer (table `Quotes`)."""

    reseller: str
    customer_id: str
    id: str = Field(default_factory=new_id)
    status: QuoteStatus = QuoteStatus.DRAFT
    # Stored beside the status so "open" is one equality filter of the table.
    is_open: bool = True
    lines: list[OrderLine]
    currency: str
    valid_days: int = Field(ge=1, le=MAX_VALID_DAYS)
    valid_until: AwareDatetime | None = None  # set when sent
    note: str | None = None
    comment: str | None = None  # internal
    history: list[QuoteEvent] = Field(default_factory=list)
    created_by: str
    sent_at: AwareDatetime | None = None
    link_hash: str | None = Field(default=None, repr=False)
    # The order an acceptance makes: its id is fixed with the Accepted status (one write), the
    # order is added after it; `order_pending` until it is known to exist.
    order_id: str | None = None
    order_pending: bool = False
    # The e-mail of the latest change is owed: set in the change's own write, cleared once the
    # e-mail is queued (under a fixed id), so a crash in between delays it, never loses it.
    mail_due: bool = False
    # The Sent e-mail's link token until that e-mail is queued; never kept past it.
    pending_link: str | None = Field(default=None, repr=False)
    source_order_id: str | None = None

    @model_validator(mode="after")
    def _no_link_at_rest_unless_sent(self) -> Quote:
        if self.pending_link is not None and self.status is not QuoteStatus.SENT:
            raise ValueError("only a Sent quote whose e-mail is not yet queued holds its link")
        return self

    def move(self, to: QuoteStatus, at: datetime, by: str, comment: str | None = None) -> None:
        """Change status by the transition table (Conflict otherwise), with a history entry."""
        if to not in TRANSITIONS[self.status]:
            raise Conflict(f"a quote that is {self.status.value} cannot become {to.value}")
        self.status = to
        self.is_open = to in OPEN
        self.mail_due, self.pending_link = to in MAILED, None
        self.history.append(QuoteEvent(status=to, at=at, by=by, comment=comment))
        self.updated_at = at

    def link_matches(self, secret: str) -> bool:
        """Whether `secret` is the one of the current link (compared in constant time)."""
        if self.link_hash is None:
            return False
        return hmac.compare_digest(self.link_hash, link_hash(secret))

    def valid_at(self, now: datetime) -> bool:
        """Whether a Sent quote can still be answered."""
        return self.valid_until is None or now < self.valid_until


def link_hash(secret: str) -> str:
    """What is stored of a quote link's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def link_token(reseller: str, quote_id: str, secret: str) -> str:
    """The token of a quote's link."""
    return f"{reseller}.{quote_id}.{secret}"


def parse_link(token: str) -> tuple[str, str, str] | None:
    """(reseller, quote id, secret) of a link token; None for anything else."""
    match = _LINK.fullmatch(token)
    if match is None:
        return None
    return match.group(1), match.group(2).upper(), match.group(3)
