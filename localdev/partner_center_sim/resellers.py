"""The distributor's indirect resellers as the simulator's Partner Center knows them.

`DEMO_RESELLERS` are the resellers `localdev/seed.py` onboards: the simulator lists them after
every start and reset, so `make run` onboards them as Partner Center would allow. Tests add
others through `POST /_sim/resellers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MPN = re.compile(r"^\d{5,10}$")


@dataclass(slots=True)
class IndirectReseller:
    """One `IsIndirectCloudSolutionProviderOf` relationship of the distributor."""

    id: str  # the reseller's tenant id (GUID, lower case)
    name: str
    mpn_id: str
    location: str = "CZ"
    state: str = "Active"

    def to_json(self) -> dict[str, Any]:
        """Microsoft's shape of a relationship item."""
        return {
            "id": self.id,
            "name": self.name,
            "relationshipType": "IsIndirectCloudSolutionProviderOf",
            "state": self.state,
            "mpnId": self.mpn_id,
            "location": self.location,
            "attributes": {"objectType": "PartnerRelationship"},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndirectReseller:
        """From the control API's camelCase body; a 400 for ids of the wrong shape."""
        tenant_id = str(data.get("id") or "").lower()
        mpn_id = str(data.get("mpnId") or "")
        if not _GUID.match(tenant_id) or not _MPN.match(mpn_id):
            raise bad_request("A reseller needs id (a tenant GUID) and mpnId (5-10 digits).")
        return cls(
            id=tenant_id,
            name=str(data.get("name") or tenant_id),
            mpn_id=mpn_id,
            location=str(data.get("location") or "CZ"),
            state=str(data.get("state") or "Active"),
        )


DEMO_RESELLERS = (
    IndirectReseller("3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10", "Demo Reseller s.r.o.", "6412345"),
    IndirectReseller("7b1e9d2c-5a3f-4e8b-8c6d-1f0a2b3c4d5e", "Other Reseller a.s.", "6498765"),
)
