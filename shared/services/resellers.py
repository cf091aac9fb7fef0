"""Resellers: onboarding and editing (distributor admins), reading one's own."""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import AliasChoices, AwareDatetime, Field

from shared.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from shared.domain.identity import (
    MPN_ID_PATTERN,
    RESELLER_PARTITION,
    SLUG_PATTERN,
    TENANT_ID_PATTERN,
    Appearance,
    Command,
    IndirectReseller,
    Principal,
    Reseller,
    ResellerSettings,
    same_partner_id,
)
from shared.domain.model import Page, WireModel, expected_version
from shared.ports import CatalogStore, Clock, IndirectResellers, Repository
from shared.services import access
from shared.services.catalog_editing import priced_entries

_SLUG = re.compile(SLUG_PATTERN)
# Slugs that would read as part of the platform itself in `https://<slug>.<domain>/`.
RESERVED_SLUGS = frozenset({"api", "www", "admin", "app", "mail", "login", "static", "platform"})


# The default mark-up was called a margin before; bodies may still use the old name.
_MARKUP_NAMES = AliasChoices(
    "defaultMarkupPercent", "default_markup_percent", "defaultMarginPercent"
)
_DISTRIBUTOR_MARKUP = (
    "Reseller cost = Microsoft cost × (1 + this %); null: DISTRIBUTOR_MARKUP_PERCENT. "
    "Distributor admins only: resellers see only the resulting reseller cost."
)


class ResellerCreate(Command):
    """Onboard a reseller."""

    slug: str = Field(pattern=SLUG_PATTERN, description="Lowercase name used in its portal URL.")
    name: str = Field(min_length=1, max_length=200)
    partner_center_tenant_id: str = Field(
        pattern=TENANT_ID_PATTERN,
        description="The reseller's Partner Center tenant id (GUID; its customers' "
        "associatedPartnerId).",
    )
    mpn_id: str = Field(
        pattern=MPN_ID_PATTERN,
        description="The reseller's MPN id / PartnerID (digits; the reseller on its orders).",
    )
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217.")
    default_markup_percent: Decimal = Field(
        Decimal("10"),
        ge=0,
        le=1000,
        decimal_places=2,
        validation_alias=_MARKUP_NAMES,
        description="Customer price = reseller cost × (1 + this %) unless set otherwise.",
    )
    distributor_markup_percent: Decimal | None = Field(
        None, ge=0, le=1000, decimal_places=2, description=_DISTRIBUTOR_MARKUP
    )


class ResellerUpdate(Command):
    """Change a reseller's profile; fields left out stay as they are."""

    name: str | None = Field(None, min_length=1, max_length=200)
    partner_center_tenant_id: str | None = Field(None, pattern=TENANT_ID_PATTERN)
    mpn_id: str | None = Field(None, pattern=MPN_ID_PATTERN)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    default_markup_percent: Decimal | None = Field(
        None, ge=0, le=1000, decimal_places=2, validation_alias=_MARKUP_NAMES
    )
    distributor_markup_percent: Decimal | None = Field(
        None, ge=0, le=1000, decimal_places=2, description=_DISTRIBUTOR_MARKUP
    )


class ResellerStaff(WireModel):
    """A reseller as its staff see it (its default mark-up included)."""

    slug: str
    name: str
    partner_center_tenant_id: str | None
    mpn_id: str | None
    country: str
    currency: str
    default_markup_percent: Decimal
    appearance: Appearance
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ResellerDistributor(ResellerStaff):
    """A reseller as distributor admins see it: with the distributor's mark-up for it."""

    distributor_markup_percent: Decimal | None = Field(description=_DISTRIBUTOR_MARKUP)


class ResellerPublic(WireModel):
    """A reseller as its customers' users see it: no Partner Center ids, no margin."""

    slug: str
    name: str
    country: str
    currency: str
    appearance: Appearance


def _fields(reseller: Reseller) -> dict[str, object]:
    return {**dict(reseller), "appearance": reseller.settings.appearance}


def present(
    principal: Principal | None, reseller: Reseller
) -> ResellerDistributor | ResellerStaff | ResellerPublic:
    """The view of `reseller` the caller may see."""
    return access.view(
        principal,
        _fields(reseller),
        staff=ResellerStaff,
        public=ResellerPublic,
        distributor=ResellerDistributor,
    )


def check_partner_center_ids(
    partner_center: IndirectResellers, tenant_id: str | None, mpn_id: str | None
) -> IndirectReseller | None:
    """The reseller's entry in Partner Center's list, if the ids given name one (and agree).

    ValidationFailed names the field Partner Center contradicts: a tenant id that is not one of
    the distributor's active indirect resellers, or an MPN id other than that reseller's.
    """
    if tenant_id is None and mpn_id is None:
        return None
    known = partner_center.list_indirect_resellers()
    if tenant_id is None:
        match = next((r for r in known if r.mpn_id == mpn_id), None)
        if match is None:
            raise ValidationFailed(
                [FieldError("mpnId", f"Partner Center knows no indirect reseller {mpn_id}")]
            )
        return match
    entry = next((r for r in known if same_partner_id(r.tenant_id, tenant_id)), None)
    if entry is None or not entry.active:
        why = "is not active" if entry else "is not one of the distributor's indirect resellers"
        raise ValidationFailed(
            [FieldError("partnerCenterTenantId", f"in Partner Center, {tenant_id} {why}")]
        )
    if mpn_id is not None and entry.mpn_id != mpn_id:
        raise ValidationFailed(
            [
                FieldError(
                    "mpnId",
                    f"Partner Center lists {entry.name or tenant_id} with MPN id "
                    f"{entry.mpn_id or '(none)'}, not {mpn_id}",
                )
            ]
        )
    return entry


def onboard(
    repo: Repository[Reseller],
    clock: Clock,
    command: ResellerCreate,
    partner_center: IndirectResellers,
) -> Reseller:
    """Create a reseller with default settings, once Partner Center confirms its two ids.

    Conflict if the slug is taken; ValidationFailed (nothing stored) if Partner Center does not
    know the reseller.
    """
    if command.slug in RESERVED_SLUGS:
        raise Conflict(f"the slug {command.slug!r} is reserved")
    tenant_id = command.partner_center_tenant_id.lower()
    check_partner_center_ids(partner_center, tenant_id, command.mpn_id)
    now = clock.now()
    reseller = Reseller(
        slug=command.slug,
        name=command.name,
        partner_center_tenant_id=tenant_id,
        mpn_id=command.mpn_id,
        country=command.country,
        currency=command.currency,
        default_markup_percent=command.default_markup_percent,
        distributor_markup_percent=command.distributor_markup_percent,
        settings=ResellerSettings(appearance=Appearance(display_name=command.name)),
        created_at=now,
        updated_at=now,
    )
    try:
        return repo.add(reseller)
    except Conflict as exc:
        raise Conflict(f"a reseller with slug {command.slug!r} already exists") from exc


def get(repo: Repository[Reseller], slug: str) -> Reseller:
    """One reseller (NotFound if there is none, or the slug cannot be one)."""
    if not _SLUG.match(slug):
        raise NotFound("reseller not found")
    return repo.get(RESELLER_PARTITION, slug)


def list_resellers(
    repo: Repository[Reseller], *, page_size: int, continuation_token: str | None
) -> Page[ResellerDistributor]:
    """A page of every reseller (for distributor admins)."""
    page = repo.list(RESELLER_PARTITION, page_size=page_size, continuation_token=continuation_token)
    return Page[ResellerDistributor](
        items=[ResellerDistributor.model_validate(_fields(r)) for r in page.items],
        continuation_token=page.continuation_token,
    )


def update(
    repo: Repository[Reseller],
    clock: Clock,
    slug: str,
    etag: str,
    command: ResellerUpdate,
    catalog: CatalogStore,
    partner_center: IndirectResellers,
) -> Reseller:
    """Change the fields given, if the reseller is still at `etag`.

    Currency and market cannot change while catalog entries hold prices or mark-ups: those are
    in the old currency and for the old market's offers (Conflict, naming what to clear). A
    changed Partner Center id is checked with Partner Center together with the other one.
    """
    reseller = get(repo, slug)
    reseller.etag = expected_version(reseller.etag, etag)
    changes = command.model_dump(exclude_unset=True, exclude_none=True)
    moved = [
        name
        for name in ("currency", "country")
        if name in changes and changes[name] != getattr(reseller, name)
    ]
    if moved and (priced := priced_entries(catalog, slug)):
        shown = ", ".join(priced[:5]) + (" …" if len(priced) > 5 else "")
        raise Conflict(
            f"the {' and '.join(moved)} cannot change while {len(priced)} catalog entries set "
            f"prices or mark-ups in {reseller.currency} for market {reseller.country} "
            f"({shown}); clear their prices first"
        )
    if "partner_center_tenant_id" in changes:
        changes["partner_center_tenant_id"] = changes["partner_center_tenant_id"].lower()
    ids = ("partner_center_tenant_id", "mpn_id")
    if any(changes.get(k, getattr(reseller, k)) != getattr(reseller, k) for k in ids):
        check_partner_center_ids(
            partner_center,
            changes.get("partner_center_tenant_id", reseller.partner_center_tenant_id),
            changes.get("mpn_id", reseller.mpn_id),
        )
    for name, value in changes.items():
        setattr(reseller, name, value)
    reseller.updated_at = clock.now()
    return repo.update(reseller)
