"""Customers: the field rules (IČO, postcode, phone, tenant name) and the services with fakes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.domain.customers import (
    FAILED_FOR_CUSTOMER_USERS,
    CustomerCreate,
    CustomerOrigin,
    CustomerStatus,
    CustomerUpdate,
    ProvisionCustomerMessage,
    Qualification,
    ico_check_digit,
    is_tenant_name,
    is_valid_ico,
    normalise_phone,
    normalise_postcode,
)
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    ConflictingFields,
    Forbidden,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
    ValidationFailed,
)
from shared.domain.failures import Failure, FailureKind
from shared.domain.identity import Principal, Reseller, Role, SignInKind
from shared.domain.model import ANY_VERSION
from shared.domain.notifications import Notification
from shared.domain.outbox import Queue
from shared.services import customers
from shared.services.customers import CustomerBook, CustomerSegments
from tests.customer_bodies import new_customer_body
from tests.fakes import (
    FakeClock,
    FakeCustomerPartnerCenter,
    FakeMailer,
    InMemoryRepository,
    onboard,
    reseller_ids,
)

OWNER = Principal(
    "u1", "demo", None, Role.ACCOUNT_MANAGER, "owner@demo.example", SignInKind.PLATFORM
)
OTHER = Principal("u9", "other", None, Role.ACCOUNT_MANAGER, "o@other.example", SignInKind.PLATFORM)
DEMO_TENANT, DEMO_MPN = reseller_ids("demo")
OTHER_TENANT, _ = reseller_ids("other")
DIGITS = st.text(alphabet="0123456789", min_size=7, max_size=7)


# --- IČO ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ico", ["25596641", "26168685", "00006947", "45274649", "27074358"])
def test_real_icos_are_valid(ico):
    assert is_valid_ico(ico)


@given(DIGITS)
def test_every_seven_digits_have_exactly_one_valid_check_digit(first):
    valid = [d for d in "0123456789" if is_valid_ico(first + d)]
    assert valid == [str(ico_check_digit(first))]


@given(DIGITS)
def test_check_digit_follows_the_mod_11_rule(first):
    total = sum(int(d) * w for d, w in zip(first, [8, 7, 6, 5, 4, 3, 2], strict=True))
    remainder = total % 11
    expected = {0: 1, 1: 0}.get(remainder, 11 - remainder)
    assert ico_check_digit(first) == expected


@given(DIGITS, st.integers(0, 7), st.integers(1, 9))
def test_changing_one_digit_of_a_valid_ico_makes_it_invalid(first, position, delta):
    ico = first + str(ico_check_digit(first))
    changed = ico[:position] + str((int(ico[position]) + delta) % 10) + ico[position + 1 :]
    # Weights 8..2 and 1 are all coprime with 11: one changed digit always changes the sum mod 11,
    # except where the check digit folds 10 and 0 (remainder 0 or 1) onto one value.
    if changed != ico:
        assert not is_valid_ico(changed) or {ico[7], changed[7]} <= {"0", "1"}


@given(st.text(max_size=12))
def test_anything_but_eight_ascii_digits_is_no_ico(text):
    if not (len(text) == 8 and text.isascii() and text.isdigit()):
        assert not is_valid_ico(text)


# --- other fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "given_", "stored"),
    [("CZ", "11000", "110 00"), ("CZ", "110 00", "110 00"), ("SK", "81101", "811 01")],
)
def test_cz_and_sk_postcodes_are_stored_as_nnn_nn(country, given_, stored):
    assert normalise_postcode(country, given_) == stored


@pytest.mark.parametrize("bad", ["1100", "110000", "11 000", "ABCDE", "110-00", ""])
def test_bad_cz_postcodes_are_refused(bad):
    with pytest.raises(ValueError):
        normalise_postcode("CZ", bad)


def test_other_countries_take_any_short_postcode():
    assert normalise_postcode("GB", "SW1A 1AA") == "SW1A 1AA"


@pytest.mark.parametrize(
    ("given_", "stored"),
    [("+420 601 123 456", "+420601123456"), ("+4915112345678", "+4915112345678")],
)
def test_phones_are_e164(given_, stored):
    assert normalise_phone(given_) == stored


@pytest.mark.parametrize("bad", ["601123456", "+0601123456", "+4201234", "+4201234567890123", "x"])
def test_non_e164_phones_are_refused(bad):
    with pytest.raises(ValueError):
        normalise_phone(bad)


@pytest.mark.parametrize("good", ["a", "contoso", "Contoso2024", "a" * 27])
def test_tenant_names(good):
    assert is_tenant_name(good)


@pytest.mark.parametrize("bad", ["", "a" * 28, "con-toso", "con.toso", "čapek", "a b"])
def test_bad_tenant_names(bad):
    assert not is_tenant_name(bad)


def test_every_invalid_field_is_named_at_once():
    body = new_customer_body(
        "bad-name",
        companyId="12345678",
        address={"street": "", "city": "Praha", "postcode": "1100", "country": "cz"},
        contact={"firstName": "J", "lastName": "N", "email": "nope", "phone": "123"},
        segment="Not A Segment",
    )
    with pytest.raises(ValidationError) as err:
        CustomerCreate.model_validate(body)
    fields = {".".join(str(p) for p in e["loc"]) for e in err.value.errors()}
    assert fields == {
        "companyId",
        "address.street",
        "address.postcode",
        "contact.email",
        "contact.phone",
        "tenantName",
        "segment",
    }


def test_country_is_upper_cased_and_company_id_is_free_text_outside_cz_sk():
    body = new_customer_body(
        companyId="HRB 12345",
        address={"street": "Str 1", "city": "Berlin", "postcode": "10115", "country": "de"},
    )
    command = CustomerCreate.model_validate(body)
    assert command.address.country == "DE" and command.company_id == "HRB 12345"


def test_slovak_ico_uses_the_same_rule():
    body = new_customer_body(
        companyId="12345678",
        address={"street": "Hlavná 1", "city": "Bratislava", "postcode": "81101", "country": "SK"},
    )
    with pytest.raises(ValidationError):
        CustomerCreate.model_validate(body)


# --- services ----------------------------------------------------------------------------------


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.resellers = InMemoryRepository[Reseller](lambda r: ("reseller", r.slug))
        for slug in ("demo", "other"):
            onboard(self.resellers, self.clock, slug)
        self.repo = InMemoryRepository[customers.Customer](lambda c: (c.reseller, c.id))
        self.notifications = InMemoryRepository[Notification](lambda n: (n.scope, n.id))
        self.book = CustomerBook(
            self.repo, self.resellers, self.clock, notifications=self.notifications
        )
        self.pc = FakeCustomerPartnerCenter()
        self.mailer = FakeMailer()

    def create(self, tenant: str = "alfanova", **overrides: object) -> customers.Customer:
        command = CustomerCreate.model_validate(new_customer_body(tenant, **overrides))
        return customers.create(self.book, self.pc, OWNER, "demo", command)

    def message(self, customer: customers.Customer) -> ProvisionCustomerMessage:
        return ProvisionCustomerMessage(reseller=customer.reseller, customer_id=customer.id)


@pytest.fixture
def w() -> World:
    return World()


def test_create_stores_provisioning_with_its_message_and_a_request_id(w):
    customer = w.create()
    assert customer.status is CustomerStatus.PROVISIONING
    assert customer.domain == "alfanova.onmicrosoft.com"
    assert (customer.language, customer.culture) == ("cs", "cs-CZ")
    [message] = w.repo.sent
    assert message.queue is Queue.PROVISION_CUSTOMER
    assert message.body == {"reseller": "demo", "customerId": customer.id}
    assert len(customer.request_id) == 36


def test_a_taken_name_stores_nothing(w):
    w.pc.taken.add("alfanova.onmicrosoft.com")
    with pytest.raises(ConflictingFields) as err:
        w.create()
    assert [e.field for e in err.value.errors] == ["tenantName"]
    assert w.repo.rows == {} and w.repo.sent == []


def test_a_name_being_provisioned_here_counts_as_taken(w):
    w.create()
    with pytest.raises(ConflictingFields):
        w.create("AlfaNova")
    assert len(w.repo.rows) == 1


def test_partner_center_down_during_the_check_stores_nothing(w):
    w.pc.fail_domain_check_with = UpstreamUnavailable("down", retry_after=5)
    with pytest.raises(UpstreamUnavailable):
        w.create()
    assert w.repo.rows == {}


def test_an_unknown_segment_is_refused(w):
    with pytest.raises(ValidationFailed):
        w.create(segment="my-own")


def test_provisioning_creates_one_tenant_mails_the_contact_and_activates(w, caplog):
    caplog.set_level(logging.DEBUG)
    customer = w.create()
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    stored = w.repo.get("demo", customer.id)
    assert stored.status is CustomerStatus.ACTIVE
    [tenant_id] = w.pc.tenants
    assert stored.tenant_id == tenant_id
    assert w.pc.tenants[tenant_id].associated_partner_id == DEMO_TENANT
    assert w.pc.create_calls == [customer.request_id]
    [(message_id, email)] = w.mailer.sent
    assert message_id == customers.welcome_email_id(customer)
    assert email.to == ["jana@alfanova.example"] and "owner@demo.example" in email.cc
    password = w.pc.passwords[tenant_id]
    assert password in email.text and "admin@alfanova.onmicrosoft.com" in email.text
    # Never in a record, never in a log line.
    assert password not in stored.model_dump_json()
    assert all(password not in r.model_dump_json() for r in w.repo.rows.values())
    assert password not in caplog.text


def test_a_redelivered_message_for_an_active_customer_does_nothing(w):
    customer = w.create()
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    assert len(w.pc.create_calls) == 1 and len(w.mailer.sent) == 1


def test_a_crash_before_activation_repeats_the_same_request_and_the_same_email(w):
    customer = w.create()
    w.repo.update = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("process died"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    del w.repo.update  # back to the class's method
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    assert w.pc.create_calls == [customer.request_id, customer.request_id]
    assert len(w.pc.tenants) == 1
    [(id1, first), (id2, second)] = w.mailer.sent
    assert id1 == id2 and first == second  # the same message, the same password
    assert w.repo.get("demo", customer.id).status is CustomerStatus.ACTIVE


def test_a_refusal_is_raised_for_give_up_which_marks_failed_with_the_reason(w):
    customer = w.create()
    w.pc.fail_create_with = UpstreamRejected("Domain is reserved", code="1001", status=400)
    with pytest.raises(UpstreamRejected):
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    customers.give_up(
        w.book, w.message(customer), Failure(FailureKind.REFUSED, "Domain is reserved")
    )
    stored = w.repo.get("demo", customer.id)
    assert stored.status is CustomerStatus.FAILED and stored.failure_reason == "Domain is reserved"
    assert w.mailer.sent == []


def test_give_up_never_undoes_an_active_customer(w):
    customer = w.create()
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    customers.give_up(w.book, w.message(customer), Failure(FailureKind.TRANSIENT, "late"))
    assert w.repo.get("demo", customer.id).status is CustomerStatus.ACTIVE


def test_activation_survives_a_concurrent_patch(w):
    customer = w.create()
    stored = w.repo.get("demo", customer.id)
    original_get = w.repo.find

    def find_then_patch(partition: str, row: str):  # a PATCH lands between read and write
        found = original_get(partition, row)
        w.repo.find = original_get  # type: ignore[method-assign]
        customers.update(w.book, OWNER, "demo", row, stored.etag, CustomerUpdate(industry="Retail"))
        return found

    w.repo.find = find_then_patch  # type: ignore[method-assign]
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    final = w.repo.get("demo", customer.id)
    assert final.status is CustomerStatus.ACTIVE and final.industry == "Retail"


def test_list_filters_by_status_and_name_and_pages(w):
    made = [w.create(f"firma{i}", name=f"Firma {i} s.r.o.") for i in range(5)]
    customers.provision(w.book, w.pc, w.mailer, w.message(made[0]))
    page = customers.list_customers(w.book, OWNER, "demo", status=CustomerStatus.ACTIVE)
    assert [c.id for c in page.items] == [made[0].id]
    page = customers.list_customers(w.book, OWNER, "demo", name="FIRMA 3")
    assert [c.name for c in page.items] == ["Firma 3 s.r.o."]
    seen, token = [], None
    while True:
        page = customers.list_customers(
            w.book, OWNER, "demo", page_size=2, continuation_token=token
        )
        seen += [c.id for c in page.items]
        token = page.continuation_token
        if token is None:
            break
    assert sorted(seen) == sorted(c.id for c in made)


def test_a_customer_user_lists_and_reads_its_own_customer_only(w):
    mine, theirs = w.create("mine"), w.create("theirs")
    user = Principal(
        "u2", "demo", mine.id, Role.CUSTOMER_ADMIN, "it@c.example", SignInKind.PLATFORM
    )
    assert [c.id for c in customers.list_customers(w.book, user, "demo").items] == [mine.id]
    assert customers.get(w.book, user, "demo", mine.id).id == mine.id
    with pytest.raises(NotFound):
        customers.get(w.book, user, "demo", theirs.id)
    with pytest.raises(Forbidden):
        customers.update(w.book, user, "demo", mine.id, "etag", CustomerUpdate(industry="X"))


def test_another_reseller_and_odd_ids_are_not_found(w):
    customer = w.create()
    with pytest.raises(NotFound):
        customers.get(w.book, OTHER, "demo", customer.id)
    for odd in ("..", "x" * 300, "01JCXSTA0000000000000000A?", "%2F"):
        with pytest.raises(NotFound):
            customers.get(w.book, OWNER, "demo", odd)


def test_update_changes_contact_and_address_and_keeps_the_ico_rule(w):
    customer = w.create()
    contact = {
        "firstName": "Petr",
        "lastName": "Malý",
        "email": "petr@a.example",
        "phone": "+420777000111",
    }
    changed = customers.update(
        w.book,
        OWNER,
        "demo",
        customer.id,
        customer.etag or "",
        CustomerUpdate.model_validate({"contact": contact}),
    )
    assert changed.contact.email == "petr@a.example"
    foreign = w.create(
        "foreign",
        companyId="HRB 1",
        address={"street": "S 1", "city": "Wien", "postcode": "1010", "country": "AT"},
    )
    with pytest.raises(ValidationFailed) as err:
        customers.update(
            w.book,
            OWNER,
            "demo",
            foreign.id,
            foreign.etag or "",
            CustomerUpdate.model_validate(
                {
                    "address": {
                        "street": "S 1",
                        "city": "Praha",
                        "postcode": "11000",
                        "country": "CZ",
                    }
                }
            ),
        )
    assert err.value.errors[0].field == "address.country"


def test_check_domain_and_relationship_link(w):
    w.pc.taken.add("taken.onmicrosoft.com")
    assert customers.check_domain(w.book, w.pc, "demo", "Taken").available is False
    assert customers.check_domain(w.book, w.pc, "demo", "free").available is True
    with pytest.raises(ValidationFailed):
        customers.check_domain(w.book, w.pc, "demo", "not valid")
    link = customers.relationship_link(w.book, w.pc, "demo")
    assert f"indirectCSPId={DEMO_TENANT}#" in link.url


def test_import_an_existing_tenant_by_domain_or_id_once(w):
    from shared.domain.customers import CustomerImport

    tenant = w.pc.add_tenant(DEMO_TENANT, "old.onmicrosoft.com", "Old")
    foreign = w.pc.add_tenant(OTHER_TENANT, "foreign.onmicrosoft.com")
    imported = customers.import_existing(
        w.book, w.pc, OWNER, "demo", CustomerImport(domain="OLD.onmicrosoft.com")
    )
    assert imported.status is CustomerStatus.ACTIVE and imported.tenant_id == tenant.id
    with pytest.raises(Exception, match="already"):
        customers.import_existing(w.book, w.pc, OWNER, "demo", CustomerImport(tenant_id=tenant.id))
    with pytest.raises(NotFound):
        customers.import_existing(w.book, w.pc, OWNER, "demo", CustomerImport(tenant_id=foreign.id))
    with pytest.raises(ValidationFailed):
        customers.import_existing(w.book, w.pc, OWNER, "demo", CustomerImport())


def test_the_catalog_reads_a_customers_segment(w):
    customer = w.create(segment="education")
    segments = CustomerSegments(w.repo)
    assert segments.segment_of("demo", customer.id) == "education"
    with pytest.raises(NotFound):
        segments.segment_of("other", customer.id)


# --- retrying a Failed customer, adopting the tenant an earlier attempt made -------------------


def _failed_after_the_tenant_was_made(w: World) -> customers.Customer:
    """Partner Center created the tenant, but the sign-in e-mail failed on every try."""
    customer = w.create()
    w.mailer.fail_with = UpstreamUnavailable("smtp down")
    for _ in range(5):
        with pytest.raises(UpstreamUnavailable):
            customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    customers.give_up(
        w.book,
        w.message(customer),
        Failure(FailureKind.TRANSIENT, "gave up after 5 tries: smtp down"),
    )
    w.mailer.fail_with = None
    failed = w.repo.get("demo", customer.id)
    assert failed.status is CustomerStatus.FAILED and len(w.pc.tenants) == 1
    return failed


def _fail(
    w: World,
    customer: customers.Customer,
    reason: str = "refused",
    kind: FailureKind = FailureKind.REFUSED,
) -> customers.Customer:
    customers.give_up(w.book, w.message(customer), Failure(kind, reason))
    return w.repo.get("demo", customer.id)


def test_retry_puts_a_failed_customer_back_to_provisioning_with_the_same_request_id(w):
    failed = _failed_after_the_tenant_was_made(w)
    sent_before = len(w.repo.sent)
    retried = customers.retry(w.book, OWNER, "demo", failed.id, failed.etag)
    assert retried.status is CustomerStatus.PROVISIONING and retried.failure_reason is None
    assert retried.request_id == failed.request_id
    [message] = w.repo.sent[sent_before:]
    assert message.queue is Queue.PROVISION_CUSTOMER
    assert message.body == {"reseller": "demo", "customerId": failed.id}

    # Partner Center replays the create that did happen: the same tenant, the sign-in e-mail.
    customers.provision(w.book, w.pc, w.mailer, w.message(retried))
    active = w.repo.get("demo", failed.id)
    [tenant_id] = w.pc.tenants
    assert active.status is CustomerStatus.ACTIVE and active.tenant_id == tenant_id
    assert set(w.pc.create_calls) == {failed.request_id}
    [(message_id, email)] = w.mailer.sent
    assert message_id == customers.welcome_email_id(failed)
    assert w.pc.passwords[tenant_id] in email.text


def test_retry_without_if_match_works_and_a_stale_etag_is_refused(w):
    failed = _fail(w, w.create())
    with pytest.raises(ConcurrencyConflict):
        customers.retry(w.book, OWNER, "demo", failed.id, "etag-stale")
    assert w.repo.get("demo", failed.id).status is CustomerStatus.FAILED
    retried = customers.retry(w.book, OWNER, "demo", failed.id)
    assert retried.status is CustomerStatus.PROVISIONING


@pytest.mark.parametrize("state", ["Provisioning", "Active", "imported"])
def test_retry_is_refused_unless_failed_and_created_with_a_new_tenant(w, state):
    customer = w.create()
    if state == "Active":
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    elif state == "imported":
        stored = w.repo.get("demo", customer.id)
        stored.origin, stored.status = CustomerOrigin.EXISTING_TENANT, CustomerStatus.FAILED
        w.repo.update(stored)
    before = w.repo.get("demo", customer.id)
    sent_before = len(w.repo.sent)
    with pytest.raises(Conflict) as err:
        customers.retry(w.book, OWNER, "demo", customer.id)
    assert not isinstance(err.value, ConcurrencyConflict)
    assert ("new tenant" if state == "imported" else "Failed") in err.value.detail
    after = w.repo.get("demo", customer.id)
    assert (after.status, after.etag) == (before.status, before.etag)
    assert len(w.repo.sent) == sent_before


def test_a_failed_customer_keeps_its_domain_until_it_is_renamed(w):
    failed = _fail(w, w.create())
    with pytest.raises(ConflictingFields, match=failed.id):
        w.create()
    customers.update(
        w.book, OWNER, "demo", failed.id, failed.etag, CustomerUpdate(tenant_name="alfanova2")
    )
    assert w.create().domain == "alfanova.onmicrosoft.com"  # the old name is free again


def test_retry_is_refused_when_another_customer_now_holds_the_domain(w):
    failed = _fail(w, w.create())
    # Data from before claim rows: the Failed record holds no claim, another record does.
    w.repo.claims_held.clear()
    w.create()
    with pytest.raises(Conflict, match="another customer"):
        customers.retry(w.book, OWNER, "demo", failed.id)


def test_retry_outside_the_callers_world_is_not_found(w):
    failed = _fail(w, w.create())
    with pytest.raises(NotFound):
        customers.retry(w.book, OTHER, "other", failed.id)
    with pytest.raises(NotFound):
        customers.retry(w.book, OTHER, "demo", failed.id)
    assert w.repo.get("demo", failed.id).status is CustomerStatus.FAILED


def test_a_taken_domain_that_is_the_resellers_earlier_tenant_is_adopted_without_a_password(
    w, caplog
):
    caplog.set_level(logging.DEBUG)
    failed = _failed_after_the_tenant_was_made(w)
    [tenant_id] = w.pc.tenants
    password = w.pc.passwords[tenant_id]
    w.pc.replies.clear()  # Partner Center no longer replays the first create: 409, domain taken
    retried = customers.retry(w.book, OWNER, "demo", failed.id)
    customers.provision(w.book, w.pc, w.mailer, w.message(retried))

    active = w.repo.get("demo", failed.id)
    assert active.status is CustomerStatus.ACTIVE and active.tenant_id == tenant_id
    assert active.failure_reason is None and len(w.pc.tenants) == 1
    assert w.mailer.sent == []  # no sign-in e-mail: no credentials came back
    [note] = w.notifications.rows.values()
    assert note.id == customers.reset_notice_id(failed) and note.scope == "demo"
    assert note.email.to == ["owner@demo.example"]
    assert "Microsoft 365 admin center" in note.email.text and "alfanova" in note.email.subject
    [queued] = w.notifications.sent
    assert queued.queue is Queue.NOTIFICATIONS and queued.body["id"] == note.id
    # The password is nowhere: not in the e-mail, a record or a log line.
    assert password not in note.model_dump_json()
    assert all(password not in r.model_dump_json() for r in w.repo.rows.values())
    assert password not in caplog.text

    # A redelivery does nothing more.
    customers.provision(w.book, w.pc, w.mailer, w.message(retried))
    assert len(w.notifications.rows) == 1 and w.mailer.sent == []


def test_adoption_interrupted_before_activation_queues_its_email_once(w):
    failed = _failed_after_the_tenant_was_made(w)
    w.pc.replies.clear()
    retried = customers.retry(w.book, OWNER, "demo", failed.id)
    w.repo.update = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("process died"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        customers.provision(w.book, w.pc, w.mailer, w.message(retried))
    del w.repo.update
    customers.provision(w.book, w.pc, w.mailer, w.message(retried))
    assert w.repo.get("demo", failed.id).status is CustomerStatus.ACTIVE
    assert len(w.notifications.rows) == 1 and len(w.notifications.sent) == 1


def test_a_domain_taken_by_someone_else_still_fails(w):
    customer = w.create()
    # Another partner's customer, and a tenant outside Partner Center, take names meanwhile.
    w.pc.add_tenant(OTHER_TENANT, "alfanova.onmicrosoft.com")
    with pytest.raises(UpstreamRejected) as err:
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    assert err.value.status == 409
    customers.give_up(w.book, w.message(customer), Failure.of(err.value))
    stored = w.repo.get("demo", customer.id)
    assert stored.status is CustomerStatus.FAILED and stored.tenant_id is None
    assert w.mailer.sent == [] and w.notifications.rows == {}

    other = w.create("betanova")
    w.pc.taken.add("betanova.onmicrosoft.com")
    with pytest.raises(UpstreamRejected):
        customers.provision(w.book, w.pc, w.mailer, w.message(other))
    assert w.notifications.rows == {}


def test_a_tenant_already_another_customers_is_not_adopted(w):
    first = w.create()
    customers.provision(w.book, w.pc, w.mailer, w.message(first))
    # A second record for the same domain (e.g. made while the first one was Failed).
    second = w.repo.add(
        w.repo.get("demo", first.id).model_copy(
            update={
                "id": "01JCXSTC00000000000000000Z",
                "status": CustomerStatus.PROVISIONING,
                "tenant_id": None,
                "request_id": "22222222-0000-0000-0000-000000000000",
            }
        )
    )
    with pytest.raises(UpstreamRejected):
        customers.provision(w.book, w.pc, w.mailer, w.message(second))
    assert w.repo.get("demo", second.id).tenant_id is None and w.notifications.rows == {}


# --- If-Match: * and the views of a failure ---------------------------------------------------


class _WriteAfterRead(InMemoryRepository[customers.Customer]):
    """A repository where someone else changes the customer right after each read."""

    def find(self, partition: str, row: str) -> customers.Customer | None:
        found = super().find(partition, row)
        if found is not None:
            other = found.model_copy(deep=True)
            other.industry = "changed meanwhile"
            super().update(other)
        return found


def test_if_match_star_updates_the_current_version(w):
    customer = w.create()
    updated = customers.update(
        w.book, OWNER, "demo", customer.id, ANY_VERSION, CustomerUpdate(industry="Retail")
    )
    assert updated.industry == "Retail" and updated.etag != customer.etag


def test_if_match_star_still_loses_to_a_write_between_read_and_write(w):
    customer = w.create()
    racing = _WriteAfterRead(lambda c: (c.reseller, c.id))
    racing.rows = w.repo.rows
    book = CustomerBook(racing, w.resellers, w.clock)
    with pytest.raises(ConcurrencyConflict):
        customers.update(book, OWNER, "demo", customer.id, ANY_VERSION, CustomerUpdate())
    assert w.repo.get("demo", customer.id).industry == "changed meanwhile"


@pytest.mark.parametrize("etag", [None, "", ANY_VERSION])
def test_the_fake_repository_refuses_a_write_without_a_read_version_as_storage_does(w, etag):
    customer = w.repo.get("demo", w.create().id)
    customer.etag = etag
    with pytest.raises(ValueError, match="ETag the record was read at"):
        w.repo.update(customer)


def test_a_customer_user_reads_a_failure_as_a_sentence_and_staff_read_the_recorded_reason(w):
    raw = "Partner Center 400 (2001): CompanyProfile.Address is invalid; correlation 4f1c"
    failed = _fail(w, w.create(), raw)
    user = Principal(
        "u2", "demo", failed.id, Role.CUSTOMER_READER, "it@c.example", SignInKind.PLATFORM
    )
    for shown in (
        customers.present(user, customers.get(w.book, user, "demo", failed.id)),
        *customers.list_customers(w.book, user, "demo").items,
    ):
        assert shown.failure_reason == FAILED_FOR_CUSTOMER_USERS
        assert raw not in shown.model_dump_json()
    for shown in (
        customers.present(OWNER, customers.get(w.book, OWNER, "demo", failed.id)),
        *customers.list_customers(w.book, OWNER, "demo").items,
    ):
        assert shown.failure_reason == raw
    active = w.create("fine")
    assert customers.present(user, active).failure_reason is None


def test_staff_see_when_a_customer_stopped_being_the_resellers_and_its_qualification(w):
    customer = w.repo.get("demo", w.create("leaving").id)
    customer.unassociated_since = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    customer.qualification = Qualification.PENDING
    shown = customers.present(OWNER, customer)
    fields = {"unassociated_since", "qualification"}
    assert shown.model_dump(mode="json", by_alias=True, include=fields) == {
        "unassociatedSince": "2026-11-30T01:00:00Z",
        "qualification": "Pending",
    }
