"""Who did something, in the words the reader may see: staff see e-mails; a customer sees its
own people's e-mails, its reseller's staff as the reseller and the platform as "system"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.domain.identity import Principal, normalise_email
from shared.services import access, resellers

if TYPE_CHECKING:
    from shared.services.orders.book import OrderBook

# Who acts without a person: the platform's own steps (timers, queues, the watchdog).
SYSTEM = "system"
# Who answers through the link (no account): the history names the link, not a person.
VIA_LINK = "customer (quote link)"
YOUR_RESELLER = "your reseller"


@dataclass(frozen=True)
class Names:
    """Names the `by` of a history entry or a pending change for one reader."""

    staff: bool
    reseller_name: str = YOUR_RESELLER
    people: frozenset[str] = field(default_factory=frozenset)

    def __call__(self, by: str) -> str:
        """`by` as this reader may see it (anyone not known as the customer's is its reseller)."""
        if self.staff:
            return by
        if by == SYSTEM:
            return SYSTEM
        if by == VIA_LINK or normalise_email(by) in self.people:
            return by
        return self.reseller_name


STAFF = Names(staff=True)


def names_for(
    book: OrderBook, principal: Principal | None, reseller: str, customer_id: str | None
) -> Names:
    """How `principal` sees who acted on the customer's records (None: a quote link's holder)."""
    if access.sees_cost(principal):
        return STAFF
    name = resellers.get(book.resellers, reseller).settings.appearance.display_name
    people: set[str] = set()
    token: str | None = None
    while book.users is not None and customer_id is not None:
        page = book.users.list(
            reseller, equals={"customer_id": customer_id}, page_size=500, continuation_token=token
        )
        people.update(normalise_email(u.email) for u in page.items)
        token = page.continuation_token
        if token is None:
            break
    return Names(staff=False, reseller_name=name or YOUR_RESELLER, people=frozenset(people))
