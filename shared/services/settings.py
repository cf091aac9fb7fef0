"""A reseller's settings: allowed sign-in methods, notification preferences, appearance."""

from __future__ import annotations

from shared.domain.identity import Reseller, ResellerSettings
from shared.domain.model import expected_version
from shared.ports import Clock, Repository
from shared.services import resellers


def get(repo: Repository[Reseller], slug: str) -> Reseller:
    """The reseller whose settings (and ETag) are asked for."""
    return resellers.get(repo, slug)


def replace(
    repo: Repository[Reseller], clock: Clock, slug: str, etag: str, new: ResellerSettings
) -> Reseller:
    """Replace the settings as a whole, if the reseller is still at `etag`."""
    reseller = resellers.get(repo, slug)
    reseller.etag = expected_version(reseller.etag, etag)
    reseller.settings = new
    reseller.updated_at = clock.now()
    return repo.update(reseller)
