"""`GET /v1/relationships`: the distributor's indirect resellers, mapped to our records."""

from __future__ import annotations

from shared.adapters.partner_center.wire import PartnerCenterModel
from shared.domain.identity import IndirectReseller

# The relationship type that lists a distributor's (indirect provider's) resellers.
INDIRECT_RESELLERS = "IsIndirectCloudSolutionProviderOf"


class PartnerRelationship(PartnerCenterModel):
    """One item of `/v1/relationships`: `{id (tenant id), name, relationshipType, state, mpnId,
    location}` as Microsoft documents it."""

    id: str
    name: str | None = None
    relationship_type: str | None = None
    state: str | None = None
    mpn_id: str | None = None
    location: str | None = None

    def to_indirect_reseller(self) -> IndirectReseller:
        """Our record of the reseller; a state Partner Center may add later reads as inactive."""
        return IndirectReseller(
            tenant_id=self.id.lower(),
            name=self.name or "",
            mpn_id=(self.mpn_id or "").strip() or None,
            active=(self.state or "").lower() == "active",
            location=self.location,
        )
