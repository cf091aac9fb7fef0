"""Subscription records for renewal and reminder tests (dates relative to a given moment)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.domain.pricing import PricedLine, PriceSheetRow, ResellerPricing, price_line
from shared.domain.subscriptions import Subscription


def priced(quantity: int = 10, currency: str = "CZK") -> PricedLine:
    """A price snapshot with every layer (cost 100, mark-up 10 %)."""
    row = PriceSheetRow(
        product_id="CFQ7TTC0LFLX",
        sku_id="0001",
        segment="commercial",
        term="P1Y",
        billing_cycle="annual",
        currency=currency,
        microsoft_cost=Decimal("100"),
        erp=Decimal("130"),
        effective_date=date(2026, 1, 1),
    )
    pricing = ResellerPricing(
        currency=currency,
        distributor_markup_percent=Decimal("0"),
        default_markup_percent=Decimal("10"),
    )
    return price_line(pricing, row, quantity=quantity)


def subscription(
    reseller: str,
    customer_id: str,
    sid: str,
    *,
    ends: datetime | None,
    auto_renew: bool = True,
    status: str = "active",
    **extra: Any,
) -> Subscription:
    """An active subscription whose commitment ends at `ends` (renews the day after)."""
    values: dict[str, Any] = {
        "reseller": reseller,
        "customer_id": customer_id,
        "id": sid,
        "catalog_item_id": "CFQ7TTC0LFLX:0001:0002",
        "name": "Microsoft 365 E3",
        "quantity": 10,
        "term_duration": "P1Y",
        "billing_cycle": "annual",
        "status": status,
        "start_date": ends - timedelta(days=365) if ends else None,
        "commitment_end_date": ends,
        "auto_renew": auto_renew,
        "priced": priced(),
        **extra,
    }
    return Subscription(**values)
