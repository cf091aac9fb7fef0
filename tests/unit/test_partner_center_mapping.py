"""The adapter maps Partner Center's JSON to our records; services never see the wire shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from shared.adapters.partner_center import catalog, customers
from shared.adapters.partner_center import subscriptions as subs
from shared.adapters.partner_center import wire as pc
from shared.domain.customers import Address, Contact, TenantRequest


def _request() -> TenantRequest:
    return TenantRequest(
        domain="alfanova.onmicrosoft.com",
        company_name="Alfa Nova s.r.o.",
        registration_number="25596641",
        contact=Contact(first_name="Jana", last_name="Nováková", email="j@a.example", phone="+420"),
        address=Address(country="CZ", street="Vodičkova 1", city="Praha", postcode="110 00"),
        culture="cs-CZ",
        language="cs",
        reseller_tenant_id="r-1",
    )


def test_a_tenant_request_becomes_an_indirect_resellers_customer_body():
    body = customers.customer_body(_request()).to_wire()
    assert body["associatedPartnerId"] == "r-1"
    assert body["companyProfile"] == {
        "domain": "alfanova.onmicrosoft.com",
        "companyName": "Alfa Nova s.r.o.",
        "organizationRegistrationNumber": "25596641",
    }
    address = body["billingProfile"]["defaultAddress"]
    assert address["addressLine1"] == "Vodičkova 1" and address["postalCode"] == "110 00"
    assert body["billingProfile"]["culture"] == "cs-CZ"


def test_the_admins_sign_in_is_taken_from_the_answer_and_qualified_with_the_domain():
    answer = pc.Customer.model_validate(
        {
            "id": "t-1",
            "companyProfile": {"tenantId": "t-1", "domain": "AlfaNova.onmicrosoft.com"},
            "userCredentials": {"userName": "admin", "password": "s3cret"},
        }
    )
    created = customers.created_tenant(answer, "alfanova.onmicrosoft.com")
    assert created.tenant.id == "t-1" and created.tenant.domain == "alfanova.onmicrosoft.com"
    assert created.sign_in is not None
    assert created.sign_in.user_name == "admin@alfanova.onmicrosoft.com"
    assert "s3cret" not in repr(created)


def test_an_answer_without_a_password_has_no_sign_in_and_keeps_the_requested_domain():
    answer = pc.Customer.model_validate({"id": "t-2", "userCredentials": {"userName": "x"}})
    created = customers.created_tenant(answer, "Beta.onmicrosoft.com")
    assert created.sign_in is None
    assert created.tenant.id == "t-2" and created.tenant.domain == "beta.onmicrosoft.com"


def test_a_tenant_reads_names_and_contact_from_billing_with_the_address_as_fallback():
    tenant = customers.tenant(
        pc.Customer.model_validate(
            {
                "id": "t-3",
                "associatedPartnerId": "r-1",
                "customDomains": ["Contoso.cz"],
                "companyProfile": {"domain": "contoso.onmicrosoft.com"},
                "billingProfile": {
                    "companyName": "Contoso",
                    "email": "it@contoso.cz",
                    "defaultAddress": {"country": "cz", "firstName": "Eva", "phoneNumber": "+4"},
                },
            }
        )
    )
    assert tenant.company_name == "Contoso" and tenant.associated_partner_id == "r-1"
    assert tenant.contact.first_name == "Eva" and tenant.contact.phone == "+4"
    assert tenant.address.country == "CZ"
    assert tenant.domains() == {"contoso.onmicrosoft.com", "contoso.cz"}


def test_a_price_sheet_row_is_normalised_into_a_price_line():
    row = pc.PriceSheetRow.model_validate(
        {
            "ProductId": "cfq7ttc0lh18",
            "SkuId": "0001",
            "TermDuration": " p1y ",
            "BillingPlan": "Monthly",
            "Currency": "czk",
            "UnitPrice": "123.40",
            "Segment": "",
            "EffectiveStartDate": "2026-01-01T00:00:00",
        }
    )
    line = catalog.price_line(row)
    assert (line.product_id, line.duration, line.billing_cycle) == (
        "CFQ7TTC0LH18",
        "P1Y",
        "monthly",
    )
    assert line.currency == "CZK" and line.segment == "commercial"
    assert line.cost == Decimal("123.40") and line.tier_min == Decimal(0)
    assert line.effective_from == datetime(2026, 1, 1, tzinfo=UTC)


def test_an_unpurchasable_availability_is_left_out_of_the_sku():
    sku = pc.Sku.model_validate(
        {"id": "0001", "title": "Basic", "dynamicAttributes": {"isAddon": True}}
    )
    availabilities = [
        pc.Availability.model_validate(
            {
                "id": "A",
                "segment": "Commercial",
                "terms": [{"duration": "p1m", "billingCycle": "Monthly"}],
            }
        ),
        pc.Availability.model_validate({"id": "B", "isPurchasable": False}),
    ]
    mapped = catalog.product_sku("cfq7", sku, availabilities)
    assert mapped.is_addon and [a.id for a in mapped.availabilities] == ["A"]
    assert mapped.availabilities[0].catalog_item_id == "CFQ7:0001:A"
    assert mapped.availabilities[0].terms[0].duration == "P1M"


def test_a_subscriptions_billing_cycle_and_term_come_in_the_catalogs_spelling_whatever_case():
    facts = subs.subscription_facts(
        pc.Subscription.model_validate(
            {
                "id": "s-1",
                "offerId": "CFQ7TTC0LH18:0001:0001",
                "quantity": 3,
                "status": "active",
                "termDuration": "p1y",
                "billingCycle": "Monthly",
                "scheduledNextTermInstructions": {
                    "product": {
                        "productId": "CFQ7TTC0LH18",
                        "skuId": "0001",
                        "availabilityId": "0002",
                        "billingCycle": "ANNUAL",
                        "termDuration": "P1Y",
                    },
                    "quantity": 3,
                },
            }
        )
    )
    assert (facts.billing_cycle, facts.term_duration) == ("monthly", "P1Y")
    assert facts.next_term is not None and facts.next_term.billing_cycle == "annual"
