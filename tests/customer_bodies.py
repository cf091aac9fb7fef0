"""Request bodies for customer tests."""

from __future__ import annotations

from typing import Any


def new_customer_body(tenant_name: str = "alfanova", **overrides: Any) -> dict[str, Any]:
    """A valid `POST /customers` body for a Czech company (IČO 25596641)."""
    body: dict[str, Any] = {
        "name": "Alfa Nova s.r.o.",
        "companyId": "25596641",
        "address": {
            "street": "Vodičkova 681/14",
            "city": "Praha",
            "postcode": "11000",
            "country": "CZ",
        },
        "contact": {
            "firstName": "Jana",
            "lastName": "Nováková",
            "email": "jana@alfanova.example",
            "phone": "+420 601 123 456",
        },
        "tenantName": tenant_name,
        "industry": "Manufacturing",
        "segment": "commercial",
    }
    body.update(overrides)
    return body
