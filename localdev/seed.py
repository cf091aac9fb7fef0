"""Demo data for `make run`: the distributor admin, reseller `demo` with three users, and
reseller `other` with one (for isolation checks). Idempotent: a second run changes nothing.

    python -m localdev.seed
"""

from __future__ import annotations

from dataclasses import dataclass

from localdev.tokens import local_sign_ins
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import DISTRIBUTOR, RESELLER_PARTITION, Role, User
from shared.services import resellers, users
from shared.services.resellers import ResellerCreate


@dataclass(frozen=True)
class DemoUser:
    """One seeded user."""

    reseller: str
    email: str
    role: Role
    name: str


RESELLERS = [
    ResellerCreate(
        slug="demo",
        name="Demo Reseller s.r.o.",
        partner_center_id="3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10",
        country="CZ",
        currency="CZK",
    ),
    ResellerCreate(
        slug="other",
        name="Other Reseller a.s.",
        partner_center_id="7b1e9d2c-5a3f-4e8b-8c6d-1f0a2b3c4d5e",
        country="CZ",
        currency="EUR",
    ),
]
USERS = [
    DemoUser(DISTRIBUTOR, "admin@distributor.example", Role.DISTRIBUTOR_ADMIN, "Distributor Admin"),
    DemoUser("demo", "owner@demo.example", Role.ACCOUNT_MANAGER, "Olga Owner"),
    DemoUser("demo", "sales@demo.example", Role.SALES, "Sam Sales"),
    DemoUser("demo", "viewer@demo.example", Role.READ_ONLY, "Vera Viewer"),
    DemoUser("other", "owner@other.example", Role.ACCOUNT_MANAGER, "Oscar Other"),
]


def seed(c: Container) -> list[User]:
    """Create whatever of the demo data is missing; returns the demo users."""
    for command in RESELLERS:
        if c.resellers.find(RESELLER_PARTITION, command.slug) is None:
            resellers.onboard(c.resellers, c.clock, command)
    return [
        users.ensure_user(
            c.directory,
            u.reseller,
            u.email,
            u.role,
            display_name=u.name,
            sign_ins=local_sign_ins(c.settings, u.email),
        )
        for u in USERS
    ]


def main() -> int:
    """Seed the storage that the settings (environment, local.settings.json) point at."""
    from localdev.funchost.config import load_settings
    from localdev.tokens import ROOT

    load_settings(ROOT / "local.settings.json")
    seeded = seed(Container(Settings()))
    for user in seeded:
        print(f"seeded {user.role.value:<17} {user.email}  ({user.reseller})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
