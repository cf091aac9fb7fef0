"""Orders: drafts, submit / approve / reject / retry, the views, and the `provision-order` step.

One concern per module: `book` (the records, finding an order), `lines` (validating and pricing
lines), `drafts`, `submission`, `views`, and the step: `provisioning` (the step machine),
`placing` (cart and checkout in Partner Center) and `completion` (subscription records, e-mail).
"""

from shared.services.orders.book import OrderBook, OrderPolicy, get
from shared.services.orders.completion import notification_id
from shared.services.orders.drafts import create, delete, preview, update
from shared.services.orders.provisioning import give_up, provision
from shared.services.orders.submission import approve, reject, retry, submit
from shared.services.orders.views import (
    ChangeView,
    FailureStaff,
    FailureView,
    OrderLinePublic,
    OrderLineStaff,
    OrderPreviewPublic,
    OrderPreviewStaff,
    OrderPublic,
    OrderStaff,
    list_orders,
    present,
)
from shared.services.orders.watch import InFlightOrders

__all__ = [
    "ChangeView",
    "FailureStaff",
    "FailureView",
    "InFlightOrders",
    "OrderBook",
    "OrderLinePublic",
    "OrderLineStaff",
    "OrderPolicy",
    "OrderPreviewPublic",
    "OrderPreviewStaff",
    "OrderPublic",
    "OrderStaff",
    "approve",
    "create",
    "delete",
    "get",
    "give_up",
    "list_orders",
    "notification_id",
    "present",
    "preview",
    "provision",
    "reject",
    "retry",
    "submit",
    "update",
]
