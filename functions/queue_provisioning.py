"""Queues `provision-customer` (the customer's tenant) and `provision-order` (its orders)."""

from __future__ import annotations

import azure.functions as func

from functions._queue import run_step
from shared.bootstrap import container
from shared.domain.customers import ProvisionCustomerMessage
from shared.domain.orders import ProvisionOrderMessage
from shared.domain.outbox import Queue
from shared.services import customers, orders

bp = func.Blueprint()


@bp.function_name("queue_provision_customer")
@bp.queue_trigger(
    arg_name="msg", queue_name=Queue.PROVISION_CUSTOMER.value, connection="AzureWebJobsStorage"
)
def queue_provision_customer(msg: func.QueueMessage) -> None:
    """Provision one customer: tenant, sign-in e-mail, Active (or Failed, with the reason)."""
    c = container()
    run_step(
        msg,
        ProvisionCustomerMessage,
        lambda m: customers.provision(c.customer_book, c.partner_center, c.mailer, m),
        lambda m, failure: customers.give_up(c.customer_book, m, failure),
    )


@bp.function_name("queue_provision_order")
@bp.queue_trigger(
    arg_name="msg", queue_name=Queue.PROVISION_ORDER.value, connection="AzureWebJobsStorage"
)
def queue_provision_order(msg: func.QueueMessage) -> None:
    """Place one order in Partner Center exactly once, step by step (or Failed, with why)."""
    c = container()
    run_step(
        msg,
        ProvisionOrderMessage,
        lambda m: orders.provision(c.order_book, c.partner_center, m),
        lambda m, failure: orders.give_up(c.order_book, m, failure),
    )
