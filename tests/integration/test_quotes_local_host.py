"""Quotes through the local host, Azurite, the local issuer and the Partner Center simulator.

Create → send (the .eml holds the link, no cost or margin) → accept through the link without
signing in → an order Completed in the simulator at the quoted price; two parallel acceptances
make one order; expired and withdrawn links refuse; a customer user sees its own quotes only and
another reseller gets 404.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.orders import order_row_key
from shared.domain.quotes import quote_row_key
from tests.catalog_fakes import cost_fields
from tests.integration.test_customers_local_host import Stack
from tests.integration.test_customers_local_host import stack as stack_fixture
from tests.integration.test_orders_local_host import FAST, FINAL, OWNER, _pc_orders, _setup
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
stack = stack_fixture
LINK = re.compile(r"/quotes/([A-Za-z0-9._-]{60,})")
CUSTOMER_USER = "it@customer.example"


def _anonymous(stack: Stack, method: str, path: str) -> tuple[int, Any]:
    status, _, raw = stack.host.request(method, "/api/" + path, None, {})
    return status, json.loads(raw) if raw else None


def _sent_quote(stack: Stack, customer_id: str, line: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create and send a quote; the quote and the link token from its e-mail."""
    base = f"resellers/demo/customers/{customer_id}/quotes"
    status, headers, draft = stack.call("POST", base, OWNER, {"lines": [line]})
    assert status == 201 and draft["status"] == "Draft", draft
    before = len(stack.emails())
    status, _, sent = stack.call(
        "POST", f"{base}/{draft['id']}/send", OWNER, None, {"If-Match": headers["etag"]}
    )
    assert status == 200 and sent["status"] == "Sent", sent
    wait_until(lambda: len(stack.emails()) > before, what="the quote e-mail")
    text = stack.emails()[-1].get_payload(decode=True).decode()
    match = LINK.search(text)
    assert match, text
    return sent, match.group(1)


def test_quote_sent_and_accepted_through_the_link_completes_at_the_quoted_price(stack):
    customer_id, line = _setup(stack)
    stack.start_host(**FAST)
    quote, token = _sent_quote(stack, customer_id, line)
    stored = stack.c.quotes.get("demo", quote_row_key(quote["id"]))
    unit = stored.lines[0].priced.unit
    # Its e-mail is queued: the token is no longer on the row, nothing is owed any more.
    assert stored.pending_link is None and token.split(".")[-1] not in str(
        stack.c.quotes.table.get_entity("demo", quote_row_key(quote["id"]))
    )
    assert [q.id for q in stack.c.quotes.iterate(equals={"mail_due": True})] == []
    text = stack.emails()[-1].get_payload(decode=True).decode()
    assert f"{unit.customer_price.amount} CZK each" in text
    assert str(unit.reseller_cost.amount) not in text and "margin" not in text.lower()

    status, shown = _anonymous(stack, "GET", f"quote-links/{token}")
    assert status == 200 and shown["status"] == "Sent" and cost_fields(shown) == []

    # Two acceptances at once, no sign-in: one order.
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def accept() -> None:
        barrier.wait()
        statuses.append(_anonymous(stack, "POST", f"quote-links/{token}/accept")[0])

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses)[0] == 200 and statuses.count(200) == 1, statuses
    accepted = stack.c.quotes.get("demo", quote_row_key(quote["id"]))
    assert accepted.status.value == "Accepted" and accepted.order_id

    def order_status() -> str:
        return stack.c.orders.get("demo", order_row_key(accepted.order_id or "")).status.value

    wait_until(lambda: order_status() in FINAL, what="the accepted quote's order to finish")
    assert order_status() == "Completed"
    order = stack.c.orders.get("demo", order_row_key(accepted.order_id or ""))
    assert order.lines[0].priced.unit.customer_price == unit.customer_price
    tenant = stack.c.customers.get("demo", customer_id).tenant_id or ""
    assert len(_pc_orders(stack, tenant)) == 1
    assert len(list(stack.c.orders.iterate("demo"))) == 1

    # A used link refuses; the customer user sees its quote, another reseller learns nothing.
    assert _anonymous(stack, "POST", f"quote-links/{token}/accept")[0] == 410
    status, _, mine = stack.call("GET", "resellers/demo/quotes", CUSTOMER_USER)
    assert status == 200 and [q["id"] for q in mine["items"]] == [quote["id"]]
    assert cost_fields(mine) == []
    path = f"resellers/demo/customers/{customer_id}/quotes/{quote['id']}"
    assert stack.call("GET", path, "owner@other.example")[0] == 404


def test_expired_and_withdrawn_quote_links_refuse(stack):
    customer_id, line = _setup(stack)
    stack.start_host(**FAST)
    expiring, expiring_token = _sent_quote(stack, customer_id, line)
    stored = stack.c.quotes.get("demo", quote_row_key(expiring["id"]))
    stored.valid_until = stored.valid_until - timedelta(days=40)  # its validity has passed
    stack.c.quotes.update(stored)
    assert _anonymous(stack, "POST", f"quote-links/{expiring_token}/accept")[0] == 410

    withdrawn, withdrawn_token = _sent_quote(stack, customer_id, line)
    path = f"resellers/demo/customers/{customer_id}/quotes/{withdrawn['id']}/withdraw"
    assert stack.call("POST", path, OWNER)[0] == 200
    assert _anonymous(stack, "POST", f"quote-links/{withdrawn_token}/accept")[0] == 410
    assert _anonymous(stack, "GET", f"quote-links/{withdrawn_token[:-4]}AAAA")[0] == 404
    assert list(stack.c.orders.iterate("demo")) == []
