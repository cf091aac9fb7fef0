"""A small world for HTTP tests: two resellers, every role, two customers, target users."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.bootstrap import Container
from shared.domain.identity import DISTRIBUTOR, Role, SignInKind, User
from shared.services import users
from tests.fakes import FakeClock, FakeIndirectResellers, TestIssuer, fake_container, onboard

CUST_A = "01JCXSTA00000000000000000A"
CUST_B = "01JCXSTB00000000000000000B"

# Callers by role: (reseller, e-mail, role, customer).
CALLERS: dict[str, tuple[str, str, Role, str | None]] = {
    "DistributorAdmin": (DISTRIBUTOR, "admin@distributor.example", Role.DISTRIBUTOR_ADMIN, None),
    "AccountManager": ("demo", "owner@demo.example", Role.ACCOUNT_MANAGER, None),
    "Sales": ("demo", "sales@demo.example", Role.SALES, None),
    "ReadOnly": ("demo", "viewer@demo.example", Role.READ_ONLY, None),
    "CustomerAdmin": ("demo", "cadmin@a.example", Role.CUSTOMER_ADMIN, CUST_A),
    "CustomerReader": ("demo", "creader@a.example", Role.CUSTOMER_READER, CUST_A),
}
# Users the user routes act on, one per scope variant.
TARGETS: dict[str, tuple[str, str, Role, str | None]] = {
    "own_reseller": ("demo", "target@demo.example", Role.READ_ONLY, None),
    "other_reseller": ("other", "target@other.example", Role.READ_ONLY, None),
    "own_customer": ("demo", "target@a.example", Role.CUSTOMER_READER, CUST_A),
    "other_customer": ("demo", "target@b.example", Role.CUSTOMER_READER, CUST_B),
}


@dataclass
class World:
    """The container and who is who in it."""

    container: Container
    issuer: TestIssuer
    clock: FakeClock
    users: dict[str, User] = field(default_factory=dict)

    def token(self, role: str, kind: SignInKind = SignInKind.PLATFORM) -> str:
        """A valid token of the caller with `role`."""
        return self.issuer.token(CALLERS[role][1], kind)


def build_world(**settings: object) -> World:
    """Resellers `demo` and `other`, a caller per role, a target user per scope variant."""
    issuer, clock = TestIssuer(), FakeClock()
    c = fake_container(issuer, clock, **settings)
    # Partner Center as far as onboarding resellers needs it (add_customers extends it).
    c.__dict__["partner_center"] = FakeIndirectResellers()
    for slug, currency in (("demo", "CZK"), ("other", "EUR")):
        onboard(c.resellers, clock, slug, currency, name=f"{slug.title()} Reseller")
    world = World(c, issuer, clock)
    for name, (reseller, email, role, customer) in {**CALLERS, **TARGETS}.items():
        world.users[name] = users.ensure_user(
            c.directory,
            reseller,
            email,
            role,
            customer_id=customer,
            sign_ins=[issuer.sign_in(email)],
        )
    return world


# A customer of `other`, for routes about another reseller's customer.
CUST_OTHER = "01JCXSTC00000000000000000C"


def add_customers(world: World) -> None:
    """Customer records for CUST_A, CUST_B (demo) and CUST_OTHER (other), Active; a
    customer-capable Partner Center fake and a fake mailer (tests.fakes.install_customers)."""
    from shared.domain.customers import Address, Contact, Customer, CustomerStatus
    from tests.fakes import install_customers

    c = world.container
    install_customers(c, fallback=c.__dict__.get("partner_center"))
    for reseller, customer_id, name in (
        ("demo", CUST_A, "Alfa s.r.o."),
        ("demo", CUST_B, "Beta a.s."),
        ("other", CUST_OTHER, "Gama s.r.o."),
    ):
        c.customers.add(
            Customer(
                reseller=reseller,
                id=customer_id,
                name=name,
                company_id="25596641",
                address=Address(country="CZ", street="Ulice 1", city="Praha", postcode="110 00"),
                contact=Contact(first_name="Jana", last_name="Nová", email="jana@a.example"),
                domain=f"{name.split()[0].lower()}.onmicrosoft.com",
                tenant_id=None,
                status=CustomerStatus.ACTIVE,
            )
        )
