"""Quotes through the app's HTTP triggers (fake container): create, send, the link, answers,
one order per acceptance, expiry, withdrawal, rate limiting, scoping."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from functions._http import encode_etag
from shared import bootstrap
from shared.domain.customers import Qualification
from shared.domain.errors import Conflict
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.notifications import NotificationMessage, NotificationStatus
from shared.domain.orders import OrderStatus, order_row_key
from shared.domain.quotes import QuoteStatus, quote_row_key
from shared.services import notifications, quotes
from tests.catalog_fakes import BOTH, cost_fields, install_catalog
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, CUST_B, World, add_customers, build_world
from tests.order_fakes import install_orders, offer_line
from tests.quote_fakes import install_quotes

BASE = f"resellers/demo/customers/{CUST_A}/quotes"
LINK = re.compile(r"https://portal\.test/quotes/(\S+)")


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    install_catalog(
        w.container,
        w.clock,
        {("demo", CUST_A): "commercial", ("demo", CUST_B): "commercial", ("other", ""): ""},
    )
    add_customers(w)
    install_orders(w.container)
    install_quotes(w.container)
    c = w.container
    for cid in (CUST_A, CUST_B):
        customer = c.customers.get("demo", cid)
        customer.tenant_id, customer.qualification = str(uuid.uuid4()), Qualification.APPROVED
        c.customers.update(customer)
    bootstrap.use(c)
    yield w
    bootstrap.use(None)


def _line(world: World, customer_id: str = CUST_A, **extra: Any) -> dict[str, Any]:
    c = world.container
    r = c.resellers.get("reseller", "demo")
    market = c.catalog_reader.market_products(r.country, c.catalog_reader.import_id(r.country))
    product = market[str(c.partner_center.product_id(BOTH))]
    return offer_line(None, c.customers.get("demo", customer_id), product, **extra)


def _create(world: World, customer_id: str = CUST_A, **body: Any) -> dict[str, Any]:
    base = f"resellers/demo/customers/{customer_id}/quotes"
    body = {"lines": [_line(world, customer_id, quantity=3)], **body}
    resp = call(
        "http_create_quote",
        "POST",
        base,
        route={"r": "demo", "c": customer_id},
        token=world.token("Sales"),
        body=body,
    )
    assert resp.status_code == 201, resp.get_body()
    return {**json_of(resp), "etag": resp.headers["ETag"]}


def _send(world: World, quote: dict[str, Any]) -> str:
    """Send the quote, deliver the e-mail; the link token it carried."""
    resp = call(
        "http_send_quote",
        "POST",
        f"{BASE}/{quote['id']}/send",
        route={"r": "demo", "c": quote["customerId"], "q": quote["id"]},
        token=world.token("Sales"),
        headers={"If-Match": quote["etag"]},
    )
    assert resp.status_code == 200, resp.get_body()
    text = _deliver(world)[-1]
    match = LINK.search(text)
    assert match, text
    return match.group(1)


def _deliver(world: World) -> list[str]:
    """Send every pending e-mail; the texts the mailer got, in order."""
    c = world.container
    for n in list(c.notifications.iterate(equals={"status": NotificationStatus.PENDING})):
        notifications.deliver(
            c.notifications, c.mailer, NotificationMessage(scope=n.scope, id=n.id)
        )
    return [email.text for _, email in c.mailer.sent]


def _link(name: str, token: str, method: str = "POST", **kw: Any) -> Any:
    path = f"quote-links/{token}" + ("" if name == "http_link_quote" else "/x")
    return call(name, method, path, route={"token": token}, **kw)


def _orders(world: World) -> list[Any]:
    return list(world.container.orders.iterate("demo"))


def test_sent_quote_mails_a_link_with_customer_prices_only_and_stores_only_its_hash(world):
    quote = _create(world, note="As discussed on the phone", comment="internal: 20 % off next")
    token = _send(world, quote)
    [text] = _deliver(world)
    assert "As discussed on the phone" in text and "internal" not in text
    stored = world.container.quotes.get("demo", quote_row_key(quote["id"]))
    unit = stored.lines[0].priced.unit
    assert f"{unit.customer_price.amount} CZK each" in text
    assert str(unit.reseller_cost.amount) not in text and "margin" not in text.lower()
    secret = token.split(".")[-1]
    assert stored.link_hash and secret not in stored.model_dump_json()
    # The notification no longer holds the token once sent.
    assert all(not n.secrets for n in world.container.notifications.iterate())


def test_link_shows_the_quote_at_customer_prices_without_cost_fields(world):
    token = _send(world, _create(world))
    resp = _link("http_link_quote", token, "GET")
    assert resp.status_code == 200, resp.get_body()
    body = json_of(resp)
    assert body["status"] == "Sent" and cost_fields(body) == []
    assert "comment" not in body


def test_accept_through_the_link_places_one_order_at_the_quoted_unit_price(world):
    quote = _create(world)
    token = _send(world, quote)
    quoted = world.container.quotes.get("demo", quote_row_key(quote["id"])).lines[0].priced
    resp = _link("http_link_accept_quote", token, body={"comment": "Go ahead"})
    assert resp.status_code == 200, resp.get_body()
    accepted = json_of(resp)
    assert accepted["status"] == "Accepted" and accepted["orderId"]
    [order] = _orders(world)
    assert order.id == accepted["orderId"] and order.quote_id == quote["id"]
    assert order.status is OrderStatus.SUBMITTED
    assert order.lines[0].unit_price == quoted.unit.customer_price
    assert order.lines[0].priced.extended.customer_price == quoted.extended.customer_price
    assert [m.body["orderId"] for m in world.container.orders.sent] == [order.id]
    # The reseller hears of it, with the customer's comment.
    assert any("accepted quote" in t and "Go ahead" in t for t in _deliver(world))


def test_accepting_twice_through_the_link_is_a_410_and_never_a_second_order(world):
    token = _send(world, _create(world))
    assert _link("http_link_accept_quote", token).status_code == 200
    again = _link("http_link_accept_quote", token)
    assert again.status_code == 410 and "Accepted" in json_of(again)["detail"]
    assert len(_orders(world)) == 1


def test_two_parallel_acceptances_make_one_order(world):
    token = _send(world, _create(world))
    barrier, statuses = threading.Barrier(4), []

    def accept() -> None:
        barrier.wait()
        statuses.append(_link("http_link_accept_quote", token).status_code)

    threads = [threading.Thread(target=accept) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) == 1 and set(statuses) <= {200, 410, 412}, statuses
    assert len(_orders(world)) == 1


def test_a_wrong_token_answers_exactly_like_an_unknown_one(world):
    quote = _create(world)
    token = _send(world, quote)
    wrong_secret = token.rsplit(".", 1)[0] + "." + "A" * 43
    unknown_quote = f"demo.{'0' * 26}.{'A' * 43}"
    answers = [
        _link("http_link_quote", t, "GET") for t in (wrong_secret, unknown_quote, "nonsense")
    ]
    assert {r.status_code for r in answers} == {404}
    assert len({json_of(r)["detail"] for r in answers}) == 1


def test_expired_quote_link_refuses_and_the_timer_marks_it_expired_telling_the_reseller(world):
    quote = _create(world, validDays=2)
    token = _send(world, quote)
    world.clock.advance(days=2, seconds=1)
    assert _link("http_link_quote", token, "GET").status_code == 410
    assert _link("http_link_accept_quote", token).status_code == 410
    assert quotes.run(world.container.quote_book) == 1
    stored = world.container.quotes.get("demo", quote_row_key(quote["id"]))
    assert stored.status is QuoteStatus.EXPIRED and stored.history[-1].by == "system"
    assert any("did not answer" in t for t in _deliver(world))
    assert _orders(world) == []


def test_withdrawn_quote_link_refuses(world):
    quote = _create(world)
    token = _send(world, quote)
    resp = call(
        "http_withdraw_quote",
        "POST",
        f"{BASE}/{quote['id']}/withdraw",
        route={"r": "demo", "c": CUST_A, "q": quote["id"]},
        token=world.token("Sales"),
        body={"comment": "prices change next month"},
    )
    assert resp.status_code == 200 and json_of(resp)["status"] == "Withdrawn"
    assert _link("http_link_accept_quote", token).status_code == 410
    assert _orders(world) == []


def test_a_new_send_kills_the_earlier_link(world):
    quote = _create(world)
    first = _send(world, quote)
    current = world.container.quotes.get("demo", quote_row_key(quote["id"]))
    second = _send(world, {**quote, "etag": encode_etag(current.etag)})
    assert _link("http_link_quote", first, "GET").status_code == 404
    assert _link("http_link_quote", second, "GET").status_code == 200


def test_link_requests_beyond_the_limit_are_429_with_retry_after(world):
    token = _send(world, _create(world))
    codes = [_link("http_link_quote", token, "GET").status_code for _ in range(21)]
    assert codes[:20] == [200] * 20 and codes[20] == 429
    resp = _link("http_link_quote", token, "GET")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    world.clock.advance(seconds=61)
    assert _link("http_link_quote", token, "GET").status_code == 200


def test_customer_admin_accepts_signed_in_and_a_second_accept_is_409(world):
    quote = _create(world)
    _send(world, quote)
    route = {"r": "demo", "c": CUST_A, "q": quote["id"]}
    path = f"{BASE}/{quote['id']}/accept"
    first = call("http_accept_quote", "POST", path, route=route, token=world.token("CustomerAdmin"))
    assert first.status_code == 200, first.get_body()
    assert cost_fields(json_of(first)) == []
    again = call("http_accept_quote", "POST", path, route=route, token=world.token("CustomerAdmin"))
    assert again.status_code == 409
    assert len(_orders(world)) == 1


def test_customer_user_lists_only_its_own_customers_quotes(world):
    own = _create(world)
    _send(world, own)
    other = _create(world, CUST_B)
    _send(world, other)
    resp = call(
        "http_list_quotes",
        "GET",
        "resellers/demo/quotes",
        route={"r": "demo"},
        token=world.token("CustomerReader"),
        params={"status": "open"},
    )
    assert resp.status_code == 200
    items = json_of(resp)["items"]
    assert [q["id"] for q in items] == [own["id"]] and cost_fields(items) == []
    staff = call(
        "http_list_quotes",
        "GET",
        "resellers/demo/quotes",
        route={"r": "demo"},
        token=world.token("Sales"),
        params={"status": "past"},
    )
    assert json_of(staff)["items"] == []


def test_a_margin_that_turned_negative_holds_the_order_for_approval_with_a_warning(world):
    quote = _create(world)
    token = _send(world, quote)
    stored = world.container.quotes.get("demo", quote_row_key(quote["id"]))
    # Today's cost rose above the quoted price: the distributor's mark-up went up a lot.
    demo = world.container.resellers.get("reseller", "demo")
    demo.distributor_markup_percent = Decimal(50)
    world.container.resellers.update(demo)
    assert _link("http_link_accept_quote", token).status_code == 200
    [order] = _orders(world)
    assert order.status is OrderStatus.PENDING_APPROVAL
    assert any("margin is negative" in w for w in order.warnings)
    # The customer pays what it was quoted; only the cost moved.
    quoted, now = stored.lines[0].priced.extended, order.lines[0].priced.extended
    assert now.customer_price == quoted.customer_price and now.reseller_cost > quoted.reseller_cost
    assert world.container.orders.sent == []  # nothing provisions


def test_an_acceptance_interrupted_before_its_order_is_finished_by_the_timer(world):
    quote = _create(world)
    token = _send(world, quote)
    orders = world.container.orders
    real_add = orders.add

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("process died")

    orders.add = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        quotes.link_answer(
            world.container.quote_book,
            token,
            "-",
            quotes.answers.QuoteAnswerKind.ACCEPT,
            quotes.answers.QuoteAnswer(),
        )
    orders.add = real_add  # type: ignore[method-assign]
    stored = world.container.quotes.get("demo", quote_row_key(quote["id"]))
    assert stored.status is QuoteStatus.ACCEPTED and stored.order_pending
    quotes.run(world.container.quote_book)
    [order] = _orders(world)
    assert order.id == stored.order_id
    assert not world.container.quotes.get("demo", quote_row_key(quote["id"])).order_pending
    with pytest.raises(Conflict):
        orders.add(order)


def test_draft_order_becomes_a_quote_and_the_draft_is_gone(world):
    c = world.container
    created = call(
        "http_create_order",
        "POST",
        f"resellers/demo/customers/{CUST_A}/orders",
        route={"r": "demo", "c": CUST_A},
        token=world.token("Sales"),
        body={"lines": [_line(world)]},
    )
    order = json_of(created)
    resp = call(
        "http_quote_order",
        "POST",
        f"resellers/demo/customers/{CUST_A}/orders/{order['id']}/quote",
        route={"r": "demo", "c": CUST_A, "o": order["id"]},
        token=world.token("Sales"),
        body={"validDays": 10},
    )
    assert resp.status_code == 201, resp.get_body()
    quote = json_of(resp)
    assert quote["sourceOrderId"] == order["id"] and quote["validDays"] == 10
    assert c.orders.find("demo", order_row_key(order["id"])) is None


def test_patch_changes_a_draft_and_refuses_once_sent(world):
    quote = _create(world)
    route = {"r": "demo", "c": CUST_A, "q": quote["id"]}
    resp = call(
        "http_update_quote",
        "PATCH",
        f"{BASE}/{quote['id']}",
        route=route,
        token=world.token("Sales"),
        headers={"If-Match": quote["etag"]},
        body={"lines": [_line(world, quantity=5)], "note": "Five now"},
    )
    assert resp.status_code == 200, resp.get_body()
    assert json_of(resp)["lines"][0]["quantity"] == 5
    _send(world, {**quote, "etag": resp.headers["ETag"]})
    refused = call(
        "http_update_quote",
        "PATCH",
        f"{BASE}/{quote['id']}",
        route=route,
        token=world.token("Sales"),
        headers={"If-Match": "*"},
        body={"note": "x"},
    )
    assert refused.status_code == 409
    bad = call(
        "http_create_quote",
        "POST",
        BASE,
        route={"r": "demo", "c": CUST_A},
        token=world.token("Sales"),
        body={"lines": [_line(world)], "validDays": 0},
    )
    assert bad.status_code == 400 and [e["field"] for e in json_of(bad)["errors"]] == ["validDays"]


def _crash_queueing_emails(world: World) -> Any:
    """Make queueing any e-mail die like the process would; returns the undo."""
    repo = world.container.quote_book.orders.notifications
    real_add = repo.add

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("process died")

    repo.add = crash

    def undo() -> None:
        repo.add = real_add

    return undo


def test_a_send_interrupted_before_its_email_is_queued_is_mailed_by_housekeeping(world):
    quote = _create(world)
    undo = _crash_queueing_emails(world)
    with pytest.raises(RuntimeError):
        quotes.send(world.container.quote_book, _sales(world), "demo", CUST_A, quote["id"], "*")
    undo()
    stored = world.container.quotes.get("demo", quote_row_key(quote["id"]))
    assert stored.status is QuoteStatus.SENT and _deliver(world) == []

    quotes.run(world.container.quote_book)
    [text] = _deliver(world)
    match = LINK.search(text)
    assert match, text
    assert _link("http_link_quote", match.group(1), "GET").status_code == 200
    # The link is on the row no longer than its e-mail was unqueued.
    done = world.container.quotes.get("demo", quote_row_key(quote["id"]))
    assert not done.mail_due and done.pending_link is None
    assert match.group(1).split(".")[-1] not in done.model_dump_json()
    quotes.run(world.container.quote_book)
    assert len(_deliver(world)) == 1  # queued once


def test_an_answer_interrupted_before_the_reseller_is_told_is_mailed_by_housekeeping(world):
    token = _send(world, _create(world))
    undo = _crash_queueing_emails(world)
    with pytest.raises(RuntimeError):
        quotes.link_answer(
            world.container.quote_book,
            token,
            "-",
            quotes.answers.QuoteAnswerKind.DECLINE,
            quotes.answers.QuoteAnswer(comment="Too dear"),
        )
    undo()
    assert not any("declined" in t for t in _deliver(world))
    quotes.run(world.container.quote_book)
    assert any("declined quote" in t and "Too dear" in t for t in _deliver(world))


def _sales(world: World) -> Principal:
    return Principal("s", "demo", None, Role.SALES, "sales@demo.example", SignInKind.PLATFORM)


def test_the_negative_margin_warning_reaches_staff_but_never_the_customer(world):
    token = _send(world, _create(world))
    demo = world.container.resellers.get("reseller", "demo")
    demo.distributor_markup_percent = Decimal(50)
    world.container.resellers.update(demo)
    assert _link("http_link_accept_quote", token).status_code == 200
    [order] = _orders(world)
    cost = order.lines[0].priced.extended.reseller_cost.amount
    path = f"resellers/demo/customers/{CUST_A}/orders/{order.id}"
    route = {"r": "demo", "c": CUST_A, "o": order.id}
    seen = {
        role: json_of(call("http_get_order", "GET", path, route=route, token=world.token(role)))
        for role in ("CustomerReader", "Sales")
    }
    customer_view = str(seen["CustomerReader"])
    assert seen["CustomerReader"]["status"] == "PendingApproval"
    assert str(cost) not in customer_view and "margin" not in customer_view.lower()
    assert any("margin is negative" in w for w in seen["Sales"]["warnings"])


def test_a_caller_cannot_escape_the_per_client_limit_by_forging_x_forwarded_for(world):
    def guess(i: int) -> int:
        # A new made-up token each time (no token bucket fills), a forged first entry each
        # time, and the address the front end appended: always the same caller.
        forged = f"10.0.{i // 250}.{i % 250}, 203.0.113.7:{40000 + i}"
        token = f"demo.{'0' * 26}.{i:043d}"
        return _link(
            "http_link_quote", token, "GET", headers={"X-Forwarded-For": forged}
        ).status_code

    codes = [guess(i) for i in range(61)]
    assert codes[:60] == [404] * 60 and codes[60] == 429
    # Another caller is not limited by the first one's guesses.
    other = {"X-Forwarded-For": "[2001:db8::1]:5000"}
    assert (
        _link("http_link_quote", f"demo.{'0' * 26}.{'B' * 43}", "GET", headers=other).status_code
        == 404
    )


STAFF_EMAIL = "sales@demo.example"


def _as(world: World, role: str, name: str, path: str, route: dict[str, str]) -> Any:
    resp = call(name, "GET", path, route=route, token=world.token(role))
    assert resp.status_code == 200, resp.get_body()
    return resp


def test_customer_users_and_link_holders_see_the_reseller_by_name_never_a_staff_email(world):
    quote = _create(world)
    token = _send(world, quote)
    route = {"r": "demo", "c": CUST_A, "q": quote["id"]}
    link = _link("http_link_quote", token, "GET")
    seen = [link] + [
        _as(world, role, name, path, route)
        for role in ("CustomerReader", "CustomerAdmin")
        for name, path in (
            ("http_get_quote", f"{BASE}/{quote['id']}"),
            ("http_list_quotes", "resellers/demo/quotes"),
        )
    ]
    for resp in seen:
        assert STAFF_EMAIL not in resp.get_body().decode()
    assert [e["by"] for e in json_of(link)["history"]] == ["Demo Reseller", "Demo Reseller"]
    staff = _as(world, "Sales", "http_get_quote", f"{BASE}/{quote['id']}", route)
    assert {e["by"] for e in json_of(staff)["history"]} == {STAFF_EMAIL}


def test_a_customer_sees_its_own_users_email_and_the_system_in_words_on_the_accepted_order(world):
    quote = _create(world)
    _send(world, quote)
    route = {"r": "demo", "c": CUST_A, "q": quote["id"]}
    path = f"{BASE}/{quote['id']}/accept"
    accepted = call(
        "http_accept_quote", "POST", path, route=route, token=world.token("CustomerAdmin")
    )
    assert accepted.status_code == 200, accepted.get_body()
    assert json_of(accepted)["history"][-1]["by"] == "cadmin@a.example"
    order_id = json_of(accepted)["orderId"]
    order = world.container.orders.get("demo", order_row_key(order_id))
    order.move(OrderStatus.FAILED, world.clock.now(), "system", "Partner Center said no")
    world.container.orders.update(order)
    orders_path = f"resellers/demo/customers/{CUST_A}/orders"
    resp = _as(
        world,
        "CustomerReader",
        "http_get_order",
        f"{orders_path}/{order_id}",
        {"r": "demo", "c": CUST_A, "o": order_id},
    )
    assert json_of(resp)["history"][0]["by"] == "cadmin@a.example"
    assert json_of(resp)["history"][-1]["by"] == "system"
    assert STAFF_EMAIL not in resp.get_body().decode()


def test_a_quote_expiring_after_the_customer_asked_for_changes_says_so_to_the_reseller(world):
    quote = _create(world, validDays=2)
    token = _send(world, quote)
    asked = _link("http_link_request_changes_quote", token, body={"comment": "5 seats please"})
    assert asked.status_code == 200, asked.get_body()
    _deliver(world)
    world.clock.advance(days=2, seconds=1)
    assert quotes.run(world.container.quote_book) == 1
    text = _deliver(world)[-1]
    assert "asked for changes" in text and "no new version was sent" in text
    assert "did not answer" not in text


def test_a_customer_sees_a_quote_only_once_it_is_sent(world):
    draft = _create(world)
    route = {"r": "demo", "c": CUST_A, "q": draft["id"]}
    path = f"{BASE}/{draft['id']}"
    for role in ("CustomerReader", "CustomerAdmin"):
        hidden = call("http_get_quote", "GET", path, route=route, token=world.token(role))
        assert hidden.status_code == 404
        listed = _as(world, role, "http_list_quotes", "resellers/demo/quotes", {"r": "demo"})
        assert json_of(listed)["items"] == []
    assert _as(world, "Sales", "http_get_quote", path, route).status_code == 200
    _send(world, draft)
    seen = _as(world, "CustomerReader", "http_get_quote", path, route)
    assert seen.status_code == 200 and json_of(seen)["status"] == "Sent"
    reseller = {"r": "demo"}
    listed = _as(world, "CustomerReader", "http_list_quotes", "resellers/demo/quotes", reseller)
    assert [q["id"] for q in json_of(listed)["items"]] == [draft["id"]]
