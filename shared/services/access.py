"""Access control: the one place that decides who may do what, where.

Every HTTP route declares a `Rule` (`functions/_http.py` refuses a route without one):

- `PUBLIC`: anyone, signed in or not (health, the OpenAPI document, the public catalog);
- `IDENTIFIED`: any caller with a valid token, even one not yet linked to a user (accepting an
  invitation is how a new sign-in becomes a user);
- `allow(Action.X)`: a signed-in, active user whose role holds action X *and* whose world holds
  the route's scope.
- `FUNCTION_KEY`: a route for operators and monitors rather than users: the Functions host lets
  a request in only with a function key (`x-functions-key`), so the app checks nothing more.
  Keys are enforced in Azure only; the local host and `func start` let every request through.

`decide(principal, scope, action)` is evaluated by the HTTP edge before the handler runs, with
the scope taken from the route parameters (`{r}` reseller slug, `{c}` customer id):

1. Outside the caller's world → `NotFound` (404): another reseller's anything, or, for a
   customer user, another customer. A caller cannot even learn that it exists.
2. Inside its world but the role lacks the action → `Forbidden` (403).

Services check *records* whose scope the route does not show (the user `{u}` of a reseller may
belong to one of its customers, an invitation names an organisation) with `ensure_visible`,
which applies rule 1 to the record's own (reseller, customer).

Cost and margin: reseller roles and distributor admins see them; customer users never do.
This is not a filtered dict but a different response model, chosen by `view()`:

    class ResellerStaff(WireModel): ... default_margin_percent ...   # cost/margin fields
    class ResellerPublic(WireModel): ...                             # none of them at all

    return view(call.principal, reseller, staff=ResellerStaff, public=ResellerPublic)

Priced resources (catalog, orders, quotes, subscriptions, reports) follow the same pattern:
`<Thing>Staff` carries purchase price and margin, `<Thing>Public` only the customer's price;
the route declares `response=<Thing>Staff | <Thing>Public` so both appear in OpenAPI. The
public catalog (a `PUBLIC` route) always answers its `...Public` model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from shared.domain.errors import Forbidden, NotFound
from shared.domain.identity import Principal, Role

S = TypeVar("S", bound=BaseModel)
P = TypeVar("P", bound=BaseModel)


class Action(StrEnum):
    """What a route does, as far as access is concerned."""

    SELF = "self"  # the caller's own profile and sign-in methods
    LIST_RESELLERS = "resellers.list"
    MANAGE_RESELLERS = "resellers.manage"  # onboard and edit resellers
    READ_RESELLER = "reseller.read"
    READ_USERS = "users.read"
    MANAGE_USERS = "users.manage"
    READ_SETTINGS = "settings.read"
    MANAGE_SETTINGS = "settings.manage"
    BROWSE_CATALOG = "catalog.browse"  # a customer's catalog with its prices
    READ_CATALOG_SETUP = "catalog.setup.read"  # entries, categories, segments, price rules
    MANAGE_CATALOG = "catalog.manage"
    IMPORT_CATALOG = "catalog.import"  # refresh Microsoft's catalog (distributor only)
    READ_CUSTOMERS = "customers.read"  # a customer user: its own customer only
    MANAGE_CUSTOMERS = "customers.manage"  # create, import, change; tenant names and links
    READ_ORDERS = "orders.read"  # a customer user: its own customer's, at its prices
    PLACE_ORDERS = "orders.place"  # preview, drafts, submit (customer admins where allowed)
    APPROVE_ORDERS = "orders.approve"  # approve or reject an order waiting for approval
    MANAGE_ORDERS = "orders.manage"  # retry a Failed order
    READ_SUBSCRIPTIONS = "subscriptions.read"  # a customer user: its own customer's
    READ_QUOTES = "quotes.read"  # a customer user: its own customer's, at its prices
    # Licence, usage and revenue reports; a customer user: its own customer's, at its prices.
    READ_REPORTS = "reports.read"
    MANAGE_QUOTES = "quotes.manage"  # create, edit, send, withdraw (reseller staff)
    ANSWER_QUOTES = "quotes.answer"  # accept, decline, ask for changes (customer admins)
    # Request a change (a Change order); customer admins where the reseller allows it.
    CHANGE_SUBSCRIPTIONS = "subscriptions.change"
    READ_OPERATIONS = "operations.read"  # poison queues, stuck records (distributor only)
    # Start a sync of the reseller with Partner Center (Sync now) and read its runs.
    SYNC = "sync.manage"
    IMPORT_USAGE = "usage.import"  # start the Azure usage import now (distributor only)


_EVERYONE = frozenset(
    {
        Action.SELF,
        Action.READ_RESELLER,
        Action.BROWSE_CATALOG,
        Action.READ_CUSTOMERS,
        Action.READ_ORDERS,
        Action.READ_SUBSCRIPTIONS,
        Action.READ_QUOTES,
        Action.READ_REPORTS,
    }
)
_ORDER_STAFF = frozenset(
    {Action.PLACE_ORDERS, Action.MANAGE_ORDERS, Action.MANAGE_QUOTES, Action.CHANGE_SUBSCRIPTIONS}
)
_CATALOG_STAFF = frozenset({Action.READ_CATALOG_SETUP, Action.MANAGE_CATALOG})

# Who may do what (DESIGN.md). A customer role's actions apply inside its own customer only.
ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = {
    Role.DISTRIBUTOR_ADMIN: frozenset(Action),
    Role.ACCOUNT_MANAGER: _EVERYONE
    | _CATALOG_STAFF
    | {Action.READ_USERS, Action.MANAGE_USERS, Action.READ_SETTINGS, Action.MANAGE_SETTINGS}
    | {Action.MANAGE_CUSTOMERS, Action.APPROVE_ORDERS, Action.SYNC}
    | _ORDER_STAFF,
    Role.SALES: _EVERYONE | _CATALOG_STAFF | {Action.MANAGE_CUSTOMERS} | _ORDER_STAFF,
    Role.READ_ONLY: _EVERYONE | {Action.READ_CATALOG_SETUP},
    # Placing orders also needs the reseller's customerOrderingEnabled, changing subscriptions
    # its customerSubscriptionChangesEnabled (both checked by the services).
    Role.CUSTOMER_ADMIN: _EVERYONE
    | {
        Action.READ_USERS,
        Action.MANAGE_USERS,
        Action.PLACE_ORDERS,
        Action.ANSWER_QUOTES,
        Action.CHANGE_SUBSCRIPTIONS,
    },
    Role.CUSTOMER_READER: _EVERYONE,
}

# Actions on the reseller's own organisation that its customers' users are not to learn of: for
# them the route is outside their world (404), as another reseller's things are.
_ORGANISATION_ONLY = frozenset({Action.SYNC})


@dataclass(frozen=True)
class Rule:
    """A route's access rule."""

    kind: Literal["public", "identified", "signed_in", "function_key"]
    action: Action | None = None

    @property
    def host_checks_key(self) -> bool:
        """Whether the Functions host admits the route's requests only with a function key."""
        return self.kind == "function_key"


PUBLIC = Rule("public")
IDENTIFIED = Rule("identified")
FUNCTION_KEY = Rule("function_key")


def allow(action: Action) -> Rule:
    """A route for signed-in users whose role holds `action`."""
    return Rule("signed_in", action)


@dataclass(frozen=True)
class Scope:
    """Where a request or a record lives: a reseller and possibly one of its customers."""

    reseller: str | None = None
    customer: str | None = None

    @classmethod
    def of_route(cls, params: Mapping[str, str]) -> Scope:
        """The scope named by route parameters `{r}` and `{c}`."""
        return cls(params.get("r") or None, params.get("c") or None)


def may(principal: Principal, action: Action) -> bool:
    """Whether the principal's role holds `action` (anywhere in its world)."""
    return action in ROLE_ACTIONS.get(principal.role, frozenset())


def _outside(principal: Principal, scope: Scope) -> bool:
    if principal.is_distributor:
        return False
    if scope.reseller is not None and scope.reseller != principal.reseller:
        return True
    return (
        principal.is_customer_user
        and scope.customer is not None
        and scope.customer != principal.customer_id
    )


def decide(principal: Principal, scope: Scope, action: Action) -> None:
    """Allow, or raise NotFound (outside the caller's world) or Forbidden (role lacks it)."""
    if _outside(principal, scope) or (principal.is_customer_user and action in _ORGANISATION_ONLY):
        raise NotFound("not found")
    if not may(principal, action):
        raise Forbidden(f"your role ({principal.role.value}) may not do this")


def ensure_visible(principal: Principal, reseller: str, customer: str | None) -> None:
    """NotFound unless a record of (reseller, customer) is inside the caller's world.

    A customer user's world holds its own customer only: records of the reseller's own
    organisation (customer None) are outside it, like other customers' records.
    """
    if _outside(principal, Scope(reseller, customer)):
        raise NotFound("not found")
    if principal.is_customer_user and customer != principal.customer_id:
        raise NotFound("not found")


def sees_cost(principal: Principal | None) -> bool:
    """Whether the caller may see purchase prices and margins (reseller and distributor staff)."""
    return principal is not None and not principal.is_customer_user


class Audience(StrEnum):
    """Who a priced answer is for: each sees its own response model."""

    DISTRIBUTOR = "distributor"  # every layer, Microsoft's cost included
    RESELLER = "reseller"  # reseller cost, recommended and customer price, margin
    CUSTOMER = "customer"  # the customer's price only (also anonymous callers)


def audience(principal: Principal | None) -> Audience:
    """The audience of a caller: Microsoft's cost is for distributor admins only."""
    if principal is not None and principal.is_distributor:
        return Audience.DISTRIBUTOR
    return Audience.RESELLER if sees_cost(principal) else Audience.CUSTOMER


def view(
    principal: Principal | None,
    record: Any,
    *,
    staff: type[S],
    public: type[P],
    distributor: type[S] | None = None,
) -> S | P:
    """The response model the caller may see: `staff` with cost and margin, else `public`."""
    model: type[S] | type[P] = staff if sees_cost(principal) else public
    if distributor is not None and audience(principal) is Audience.DISTRIBUTOR:
        model = distributor
    return model.model_validate(record, from_attributes=True)
