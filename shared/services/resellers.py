"""Resellers: onboarding and editing (distributor admins), reading one's own."""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import AwareDatetime, Field

from shared.domain.errors import Conflict, NotFound
from shared.domain.identity import (
    PARTNER_ID_PATTERN,
    RESELLER_PARTITION,
    SLUG_PATTERN,
    Appearance,
    Command,
    Principal,
    Reseller,
    ResellerSettings,
)
from shared.domain.model import Page, WireModel, expected_version
from shared.ports import Clock, Repository
from shared.services import access

_SLUG = re.compile(SLUG_PATTERN)
# Slugs that would read as part of the platform itself in `https://<slug>.<domain>/`.
RESERVED_SLUGS = frozenset({"api", "www", "admin", "app", "mail", "login", "static", "platform"})


class ResellerCreate(Command):
    """Onboard a reseller."""

    slug: str = Field(pattern=SLUG_PATTERN, description="Lowercase name used in its portal URL.")
    name: str = Field(min_length=1, max_length=200)
    partner_center_id: str = Field(
        pattern=PARTNER_ID_PATTERN, description="Partner Center id (tenant GUID or MPN id)."
    )
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217.")
    default_margin_percent: Decimal = Field(
        Decimal("10"), ge=0, le=1000, decimal_places=2, description="Percent over cost."
    )


class ResellerUpdate(Command):
    """Change a reseller's profile; fields left out stay as they are."""

    name: str | None = Field(None, min_length=1, max_length=200)
    partner_center_id: str | None = Field(None, pattern=PARTNER_ID_PATTERN)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    default_margin_percent: Decimal | None = Field(None, ge=0, le=1000, decimal_places=2)


class ResellerStaff(WireModel):
    """A reseller as its staff and the distributor see it (margin included)."""

    slug: str
    name: str
    partner_center_id: str
    country: str
    currency: str
    default_margin_percent: Decimal
    appearance: Appearance
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ResellerPublic(WireModel):
    """A reseller as its customers' users see it: no Partner Center id, no margin."""

    slug: str
    name: str
    country: str
    currency: str
    appearance: Appearance


def _fields(reseller: Reseller) -> dict[str, object]:
    return {**dict(reseller), "appearance": reseller.settings.appearance}


def present(principal: Principal | None, reseller: Reseller) -> ResellerStaff | ResellerPublic:
    """The view of `reseller` the caller may see."""
    return access.view(principal, _fields(reseller), staff=ResellerStaff, public=ResellerPublic)


def onboard(repo: Repository[Reseller], clock: Clock, command: ResellerCreate) -> Reseller:
    """Create a reseller with default settings (Conflict if the slug is taken)."""
    if command.slug in RESERVED_SLUGS:
        raise Conflict(f"the slug {command.slug!r} is reserved")
    now = clock.now()
    reseller = Reseller(
        slug=command.slug,
        name=command.name,
        partner_center_id=command.partner_center_id.lower(),
        country=command.country,
        currency=command.currency,
        default_margin_percent=command.default_margin_percent,
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
) -> Page[ResellerStaff]:
    """A page of every reseller (for distributor admins)."""
    page = repo.list(RESELLER_PARTITION, page_size=page_size, continuation_token=continuation_token)
    return Page[ResellerStaff](
        items=[ResellerStaff.model_validate(_fields(r)) for r in page.items],
        continuation_token=page.continuation_token,
    )


def update(
    repo: Repository[Reseller], clock: Clock, slug: str, etag: str, command: ResellerUpdate
) -> Reseller:
    """Change the fields given, if the reseller is still at `etag`."""
    reseller = get(repo, slug)
    reseller.etag = expected_version(reseller.etag, etag)
    changes = command.model_dump(exclude_unset=True, exclude_none=True)
    if "partner_center_id" in changes:
        changes["partner_center_id"] = changes["partner_center_id"].lower()
    for name, value in changes.items():
        setattr(reseller, name, value)
    reseller.updated_at = clock.now()
    return repo.update(reseller)
