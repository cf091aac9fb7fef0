"""Order lines: validated against the catalog and the tenant (every error in one answer), then
priced; nothing here stores anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.domain.catalog import (
    CatalogEntry,
    MicrosoftSegment,
    OfferKey,
    Product,
    ProductSku,
    SkuAvailability,
    SkuPrice,
    Term,
)
from shared.domain.customers import Customer, Qualification
from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.identity import Reseller
from shared.domain.orders import SMALL_BUSINESS_SEAT_CAP, OrderCreate, OrderLine, OrderLineInput
from shared.domain.pricing import LineOverride, PricedLine
from shared.domain.subscriptions import Subscription
from shared.services.catalog import CatalogSnapshot, Listing
from shared.services.orders.book import OrderBook, ensure_orderable
from shared.services.pricing import (
    ResellerPricing,
    price_line,
    price_offer,
    reseller_pricing,
    sheet_row,
)

_DISCOUNTED = frozenset(
    {MicrosoftSegment.EDUCATION, MicrosoftSegment.GOVERNMENT, MicrosoftSegment.NONPROFIT}
)


@dataclass(frozen=True)
class _Offer:
    """One offer of a SKU: where it is sold and for which term."""

    sku: ProductSku
    availability: SkuAvailability
    segment: MicrosoftSegment
    term: Term
    price: SkuPrice


@dataclass(frozen=True)
class _Resolved:
    """A line's offer, found in the reseller's catalog."""

    listing: Listing
    offer: _Offer


def _listing(snap: CatalogSnapshot, product: Product) -> Listing:
    found = snap.by_id.get(product.id)
    if found is not None:
        return found
    # Offered by Microsoft but not curated by the reseller: priced with its defaults.
    return Listing(
        entry=CatalogEntry(reseller=snap.reseller.slug, product_id=product.id),
        product=product,
        name=product.title,
        description=product.description,
        features=(),
        search="",
        segments=frozenset(),
        categories=(),
    )


def base_segment(snap: CatalogSnapshot, customer: Customer) -> MicrosoftSegment:
    """The Microsoft segment the customer buys in (its reseller segment's base)."""
    segment = snap.settings.segment(customer.segment) or snap.settings.segment("commercial")
    return segment.base if segment is not None else MicrosoftSegment.COMMERCIAL


def _resolve(
    snap: CatalogSnapshot,
    products: dict[str, Product],
    customer: Customer,
    i: int,
    line: OrderLineInput,
    errors: list[FieldError],
) -> _Resolved | None:
    at = f"lines[{i}]"
    product_id, sku_id, _availability = line.catalog_item_id.upper().split(":")
    product = products.get(product_id)
    sku = (
        next((s for s in product.skus if s.id.upper() == sku_id), None)
        if product is not None and not product.withdrawn
        else None
    )
    if product is None or sku is None:
        errors.append(FieldError(f"{at}.catalogItemId", "is not an offer of the catalog"))
        return None
    availability = next(
        (
            a
            for a in sku.availabilities
            if a.catalog_item_id.upper() == line.catalog_item_id.upper()
        ),
        None,
    )
    if availability is None:
        errors.append(FieldError(f"{at}.catalogItemId", "is not an offer of the catalog"))
        return None
    base = base_segment(snap, customer)
    if availability.segment != base.value:
        errors.append(
            FieldError(
                f"{at}.catalogItemId",
                f"is sold in the {availability.segment} segment; this customer buys in "
                f"{base.value}",
            )
        )
        return None
    if base in _DISCOUNTED and customer.qualification is not Qualification.APPROVED:
        errors.append(
            FieldError(
                f"{at}.catalogItemId",
                f"{base.value} offers need the customer's {base.value} qualification approved "
                f"by Microsoft (it is {customer.qualification.value})",
            )
        )
        return None
    term = Term(duration=line.term_duration, billing_cycle=line.billing_cycle)
    if term not in availability.terms:
        pairs = ", ".join(f"{t.duration}/{t.billing_cycle}" for t in availability.terms)
        errors.append(
            FieldError(
                f"{at}.billingCycle",
                f"{line.term_duration} with {line.billing_cycle} billing is not offered; "
                f"choose one of {pairs}",
            )
        )
        return None
    price = sku.price(base.value, term.duration, term.billing_cycle, snap.currency)
    if price is None and sku.is_trial:
        # Trials are free: Microsoft's price sheet has no row for them.
        price = SkuPrice(
            segment=base.value,
            duration=term.duration,
            billing_cycle=term.billing_cycle,
            currency=snap.currency,
            cost=Decimal(0),
            erp=Decimal(0),
        )
    if price is None:
        errors.append(
            FieldError(f"{at}.termDuration", f"has no price in {snap.currency} in the price sheet")
        )
        return None
    if not sku.minimum_quantity <= line.quantity <= (sku.maximum_quantity or 10**6):
        errors.append(
            FieldError(
                f"{at}.quantity",
                f"must be between {sku.minimum_quantity} and {sku.maximum_quantity} for "
                f"{sku.title}",
            )
        )
    if line.unit_price is not None and line.unit_price.currency != snap.currency:
        errors.append(
            FieldError(f"{at}.unitPrice", f"must be in the reseller's currency, {snap.currency}")
        )
    return _Resolved(_listing(snap, product), _Offer(sku, availability, base, term, price))


def _price_lines(
    pricing: ResellerPricing, lines: Sequence[tuple[int, OrderLineInput, _Resolved]]
) -> list[PricedLine]:
    """Every price layer of each line (`price_offer`): the one place orders price anything.

    The catalog entry's overrides apply; a line's own mark-up or unit price wins over them.
    Refusals name the line (`lines[i].…`), all of them in one answer.
    """
    out: list[PricedLine] = []
    errors: list[FieldError] = []
    for i, line, found in lines:
        offer = found.offer
        override = LineOverride(markup_percent=line.markup_percent, unit_price=line.unit_price)
        try:
            if offer.sku.is_trial:  # not a catalog offer: priced from its own price-sheet row
                row = sheet_row(found.listing.product.id, offer.sku.id, offer.price)
                out.append(price_line(pricing, row, quantity=line.quantity, line=override))
                continue
            out.append(
                price_offer(
                    pricing,
                    found.listing.product,
                    found.listing.entry,
                    OfferKey(
                        sku_id=offer.sku.id,
                        segment=offer.segment,
                        term=offer.term.duration,
                        billing_cycle=offer.term.billing_cycle,
                    ),
                    quantity=line.quantity,
                    line=override,
                    field=f"lines[{i}]",
                )
            )
        except ValidationFailed as exc:
            errors += [
                e
                if e.field.startswith("lines[")
                else FieldError(f"lines[{i}].{e.field}", e.message)
                for e in exc.errors
            ]
    if errors:
        raise ValidationFailed(errors)
    return out


def _existing_subscriptions(
    book: OrderBook, customer: Customer, replacing: str | None
) -> list[Subscription]:
    return [
        s
        for s in book.subscriptions.list(customer.id, page_size=1000).items
        if s.reseller == customer.reseller
        and (replacing is None or s.id.lower() != replacing.lower())
    ]


def _check_tenant_rules(
    lines: Sequence[OrderLineInput],
    resolved: Sequence[_Resolved | None],
    existing: Sequence[Subscription],
    errors: list[FieldError],
) -> None:
    """Seat caps across the tenant, one trial per product, add-ons with their base."""
    live = [s for s in existing if s.live]
    seats: dict[str, int] = {}
    for s in live:
        if s.product_id:
            seats[s.product_id] = seats.get(s.product_id, 0) + s.quantity
    trials = {s.product_id for s in existing if s.is_trial}
    for i, (line, found) in enumerate(zip(lines, resolved, strict=True)):
        if found is None:
            continue
        sku, product_id = found.offer.sku, found.listing.product.id
        at = f"lines[{i}]"
        if sku.small_business:
            cap = sku.maximum_quantity or SMALL_BUSINESS_SEAT_CAP
            used = seats.get(product_id, 0)
            if used + line.quantity > cap:
                errors.append(
                    FieldError(
                        f"{at}.quantity",
                        f"at most {max(cap - used, 0)} more licences of {sku.title} for this "
                        f"tenant (it has {used} of {cap})",
                    )
                )
            seats[product_id] = used + line.quantity
        if sku.is_trial:
            if product_id in trials:
                errors.append(
                    FieldError(
                        f"{at}.catalogItemId", f"the customer already had a trial of {sku.title}"
                    )
                )
            trials.add(product_id)
        _check_base(i, line, sku, lines, resolved, live, errors)


def _check_base(
    i: int,
    line: OrderLineInput,
    sku: ProductSku,
    lines: Sequence[OrderLineInput],
    resolved: Sequence[_Resolved | None],
    live: Sequence[Subscription],
    errors: list[FieldError],
) -> None:
    at = f"lines[{i}]"
    needs = {p.upper() for p in sku.prerequisites}
    if line.parent_line is not None:
        parent = resolved[line.parent_line] if line.parent_line < len(lines) else None
        if line.parent_line == i or line.parent_line >= len(lines):
            errors.append(FieldError(f"{at}.parentLine", "must be the index of another line"))
        elif parent is not None and needs:
            key = f"{parent.listing.product.id}:{parent.offer.sku.id}".upper()
            if key not in needs:
                errors.append(
                    FieldError(f"{at}.parentLine", f"line {line.parent_line} is not its base")
                )
        elif lines[line.parent_line].parent_line is not None:
            errors.append(FieldError(f"{at}.parentLine", "an add-on cannot be a base"))
        return
    if line.parent_subscription_id is not None:
        base = next((s for s in live if s.id.lower() == line.parent_subscription_id.lower()), None)
        if base is None:
            errors.append(
                FieldError(
                    f"{at}.parentSubscriptionId", "is not a live subscription of this customer"
                )
            )
        return
    if sku.is_addon or needs:
        on_tenant = any(
            s.catalog_item_id and ":".join(s.catalog_item_id.split(":")[:2]).upper() in needs
            for s in live
        )
        if not on_tenant:
            errors.append(
                FieldError(
                    f"{at}.parentLine",
                    f"{sku.title} is an add-on: name its base line (parentLine) or an "
                    "existing subscription (parentSubscriptionId)",
                )
            )


def build_lines(
    book: OrderBook,
    reseller: Reseller,
    customer: Customer,
    command: OrderCreate,
    *,
    replacing: str | None = None,
) -> list[OrderLine]:
    """Validate every line (all errors in one answer) and price them; nothing is stored.

    `replacing` names a subscription the lines stand for (a Change order): its seats are not
    counted twice against the tenant's limits.
    """
    ensure_orderable(customer)
    snap = book.catalog.snapshot(reseller.slug)
    products = book.catalog.market_products(
        reseller.country, book.catalog.import_id(reseller.country)
    )
    errors: list[FieldError] = []
    resolved = [
        _resolve(snap, products, customer, i, line, errors) for i, line in enumerate(command.lines)
    ]
    _check_tenant_rules(
        command.lines, resolved, _existing_subscriptions(book, customer, replacing), errors
    )
    if errors:
        raise ValidationFailed(errors)
    pairs = [
        (i, line, found)
        for i, (line, found) in enumerate(zip(command.lines, resolved, strict=True))
        if found
    ]
    pricing = reseller_pricing(reseller, book.catalog.distributor_markup_percent)
    prices = _price_lines(pricing, pairs)
    return [
        OrderLine(
            catalog_item_id=line.catalog_item_id.upper(),
            product_id=found.listing.product.id,
            sku_id=found.offer.sku.id,
            name=f"{found.listing.name} — {found.offer.sku.title}"
            if found.offer.sku.title != found.listing.name
            else found.listing.name,
            quantity=line.quantity,
            term_duration=line.term_duration,
            billing_cycle=line.billing_cycle,
            markup_percent=line.markup_percent,
            unit_price=line.unit_price,
            parent_line=line.parent_line,
            parent_subscription_id=line.parent_subscription_id,
            friendly_name=line.friendly_name,
            is_trial=found.offer.sku.is_trial,
            priced=price,
        )
        for (_, line, found), price in zip(pairs, prices, strict=True)
    ]
