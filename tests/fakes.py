"""In-memory fakes of the ports, for fast unit tests of the services."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

from pydantic import BaseModel

from shared.adapters.tables.repository import read_version
from shared.domain.claims import Claim
from shared.domain.errors import ClaimTaken, ConcurrencyConflict, Conflict, NotFound
from shared.domain.model import Page, Record
from shared.domain.notifications import Email
from shared.domain.outbox import OutboxMessage

M = TypeVar("M", bound=Record)
_etags = itertools.count(1)


class FakeClock:
    """A clock that stands still until told to move."""

    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 1, 15, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """The current fake time."""
        return self.current

    def advance(self, **delta: float) -> None:
        """Move the clock forward."""
        self.current += timedelta(**delta)


class InMemoryRepository(Generic[M]):
    """The Repository port in memory, with the same ETag and outbox semantics."""

    def __init__(self, keys: Callable[[M], tuple[str, str]]) -> None:
        self.keys = keys
        self.rows: dict[tuple[str, str], M] = {}
        # Claim rows: (partition, claim RowKey) → the RowKey of the record holding it.
        self.claims_held: dict[tuple[str, str], str] = {}
        self.sent: list[OutboxMessage] = []
        self._lock = threading.Lock()

    def _store(self, item: M) -> M:
        saved = item.model_copy(deep=True)
        saved.etag = f'W/"etag-{next(_etags)}"'  # storage's form (read_version checks it)
        self.rows[self.keys(saved)] = saved
        return saved.model_copy(deep=True)

    def find(self, partition: str, row: str) -> M | None:
        """The record, or None."""
        item = self.rows.get((partition, row))
        return item.model_copy(deep=True) if item else None

    def get(self, partition: str, row: str) -> M:
        """The record, or NotFound."""
        item = self.find(partition, row)
        if item is None:
            raise NotFound("not found")
        return item

    def _check(self, adds: Sequence[M], updates: Sequence[M]) -> None:
        for item in adds:
            if self.keys(item) in self.rows:
                raise Conflict("already exists")
        for item in updates:
            read_version(item.etag)  # as the table repository: never an empty ETag nor `*`
            current = self.rows.get(self.keys(item))
            if current is None or current.etag != item.etag:
                raise ConcurrencyConflict("changed by someone else")

    def add(
        self, item: M, *, messages: Sequence[OutboxMessage] = (), claims: Collection[Claim] = ()
    ) -> M:
        """Insert a new record with its outbox messages and claims."""
        pk, rk = self.keys(item)
        return self.save_all(pk, adds=[item], messages=messages, claims=[(c, rk) for c in claims])[
            0
        ]

    def update(
        self,
        item: M,
        *,
        messages: Sequence[OutboxMessage] = (),
        claims: Collection[Claim] = (),
        releases: Collection[Claim] = (),
    ) -> M:
        """Replace the record if unchanged since read; take and give up claims with it."""
        pk, rk = self.keys(item)
        return self.save_all(
            pk,
            updates=[item],
            messages=messages,
            claims=[(c, rk) for c in claims],
            releases=[(c, rk) for c in releases],
        )[0]

    def claim_owner(self, partition: str, claim: Claim) -> str | None:
        """The RowKey of the record holding `claim` in `partition`, or None."""
        return self.claims_held.get((partition, claim.row_key))

    def delete(self, item: M) -> None:
        """Delete the record if unchanged since read."""
        self._check([], [item])
        del self.rows[self.keys(item)]

    def claims(self, partition: str, kind: str) -> Iterator[tuple[Claim, str]]:
        """Every claim of `kind` in `partition` with its holder."""
        prefix = Claim(kind, "").row_key
        for (pk, row), owner in sorted(self.claims_held.items()):
            if pk == partition and row.startswith(prefix):
                yield Claim(kind, unquote(row[len(prefix) :])), owner

    def drop_claims(self, partition: str, claims: Collection[Claim]) -> int:
        """Delete claim rows (ones already gone are skipped); how many."""
        with self._lock:
            keys = {(partition, c.row_key) for c in claims} & set(self.claims_held)
            for key in keys:
                del self.claims_held[key]
        return len(keys)

    def save_all(
        self,
        partition: str,
        *,
        adds: Sequence[M] = (),
        updates: Sequence[M] = (),
        messages: Sequence[OutboxMessage] = (),
        claims: Sequence[tuple[Claim, str]] = (),
        releases: Sequence[tuple[Claim, str]] = (),
    ) -> list[M]:
        """All or nothing, like a table transaction (claims as the real repository takes them)."""
        for item in [*adds, *updates]:
            if self.keys(item)[0] != partition:
                raise ValueError("every record of a transaction must share its partition")
        if len(adds) + len(updates) + len(messages) + len(claims) + len(releases) > 100:
            raise ValueError("a transaction holds at most 100 operations")
        with self._lock:
            self._check(adds, updates)
            for claim, owner in claims:
                holder = self.claims_held.get((partition, claim.row_key))
                if holder is not None and holder != owner:
                    raise ClaimTaken(claim.kind, claim.value, holder)
            saved = [self._store(i) for i in [*adds, *updates]]
            for claim, owner in releases:
                if self.claims_held.get((partition, claim.row_key)) == owner:
                    del self.claims_held[(partition, claim.row_key)]
            for claim, owner in claims:
                self.claims_held[(partition, claim.row_key)] = owner
        self.sent.extend(messages)
        return saved

    def list(
        self,
        partition: str | None = None,
        *,
        equals: Mapping[str, Any] | None = None,
        page_size: int = 50,
        continuation_token: str | None = None,
        before: Mapping[str, datetime] | None = None,
        since: Mapping[str, datetime] | None = None,
        rows: tuple[str, str] | None = None,
    ) -> Page[M]:
        """One page, in key order (a field missing on a record never matches `before` nor
        `since`)."""
        keys = sorted(
            k
            for k in self.rows
            if (partition is None or k[0] == partition)
            and (rows is None or rows[0] <= k[1] <= rows[1])
        )
        items = [
            self.rows[k]
            for k in keys
            if all(getattr(self.rows[k], f) == v for f, v in (equals or {}).items())
            and all(
                getattr(self.rows[k], f) is not None and getattr(self.rows[k], f) < t
                for f, t in (before or {}).items()
            )
            and all(
                getattr(self.rows[k], f) is not None and getattr(self.rows[k], f) >= t
                for f, t in (since or {}).items()
            )
        ]
        start = int(continuation_token or 0)
        page = items[start : start + page_size]
        more = start + page_size < len(items)
        return Page(
            items=[i.model_copy(deep=True) for i in page],
            continuation_token=str(start + page_size) if more else None,
        )

    def iterate(self, partition: str | None = None, **query: Any) -> Iterator[M]:
        """Every record (all pages) of a partition or the table."""
        token: str | None = None
        while True:
            page = self.list(partition, page_size=1000, continuation_token=token, **query)
            yield from page.items
            token = page.continuation_token
            if token is None:
                return

    def column(self, partition: str, field: str, *, rows: tuple[str, str]) -> dict[str, Any]:
        """One field of the partition's records with row keys from low to high, by row key
        (a field that is not a scalar is a ValueError, as in the table adapter)."""
        if not _scalar(self.rows.values(), field):
            raise ValueError(f"no scalar field {field}")
        out = {}
        for (pk, rk), item in sorted(self.rows.items()):
            if pk == partition and rows[0] <= rk <= rows[1]:
                value = getattr(item, field)
                if value is not None:
                    out[rk] = value
        return out


def _scalar(items: Iterable[BaseModel], field: str) -> bool:
    """Whether `field` holds a scalar (not a nested model, list or dict) in the records."""
    for item in items:
        if field not in type(item).model_fields:
            return False
        value = getattr(item, field)
        return not isinstance(value, (BaseModel, list, dict, tuple, set))
    return True


class Crash(BaseException):
    """The process died here (not an error any code path handles)."""


class WriteBudget:
    """Counts writes across repositories and 'kills the process' once `allowed` are spent."""

    def __init__(self, allowed: int | None = None) -> None:
        self.allowed = allowed
        self.done = 0

    def spend(self) -> None:
        """Allow one more write, or crash."""
        if self.allowed is not None and self.done >= self.allowed:
            raise Crash(f"crashed before write {self.done + 1}")
        self.done += 1


class CrashingRepository(Generic[M]):
    """Wraps a repository: reads pass through, writes spend a shared WriteBudget first."""

    def __init__(self, inner: InMemoryRepository[M], budget: WriteBudget) -> None:
        self.inner = inner
        self.budget = budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def add(self, item: M, *, messages: Sequence[OutboxMessage] = ()) -> M:
        """Insert, unless the budget is spent."""
        self.budget.spend()
        return self.inner.add(item, messages=messages)

    def update(self, item: M, *, messages: Sequence[OutboxMessage] = ()) -> M:
        """Replace, unless the budget is spent."""
        self.budget.spend()
        return self.inner.update(item, messages=messages)

    def delete(self, item: M) -> None:
        """Delete, unless the budget is spent."""
        self.budget.spend()
        self.inner.delete(item)

    def save_all(self, partition: str, **kw: Any) -> list[M]:
        """One transaction, unless the budget is spent."""
        self.budget.spend()
        return self.inner.save_all(partition, **kw)


class FakeMailer:
    """Keeps sent e-mails; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Email]] = []
        self.fail_with: Exception | None = None

    def send(self, email: Email, *, message_id: str) -> None:
        """Record the e-mail (or raise the configured failure)."""
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((message_id, email))


# --- Sign-in, users and resellers ------------------------------------------------------------

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from localdev.tokens import local_subject, mint, public_jwk  # noqa: E402
from shared.adapters.auth import JwtVerifier  # noqa: E402
from shared.bootstrap import Container  # noqa: E402
from shared.config import Settings, TrustedIssuer  # noqa: E402
from shared.domain.idempotency import IdempotencyRecord  # noqa: E402
from shared.domain.identity import (  # noqa: E402
    Identity,
    Invitation,
    Reseller,
    SignInKind,
    User,
    VerifiedToken,
)
from shared.domain.notifications import Notification  # noqa: E402
from shared.domain.sync import SyncChunk, SyncRun, chunk_row_key, sync_row_key  # noqa: E402
from shared.services.identity import Directory  # noqa: E402

AUDIENCE = "api://csp-test"
_KEY: rsa.RSAPrivateKey | None = None


def _shared_key() -> rsa.RSAPrivateKey:
    # One RSA key per test process: generating keys is the slow part of token tests.
    global _KEY
    if _KEY is None:
        _KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEY


class TestIssuer:
    """Three trusted issuers (one per sign-in kind) signing with one real RSA key."""

    __test__ = False

    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self.key = key or _shared_key()
        self.jwks_fetches = 0

    @staticmethod
    def issuer(kind: SignInKind) -> str:
        """The issuer URL of a kind."""
        return f"https://issuer.test/{kind.value}"

    def trusted(self) -> list[TrustedIssuer]:
        """AUTH_ISSUERS for these issuers."""
        return [
            TrustedIssuer(
                issuer=self.issuer(k),
                jwks_uri=f"https://issuer.test/{k.value}/jwks",
                audience=AUDIENCE,
                kind=k,
            )
            for k in SignInKind
        ]

    def _jwks(self, uri: str) -> dict[str, Any]:
        self.jwks_fetches += 1
        return {"keys": [public_jwk(self.key)]}

    def verifier(self, **kw: Any) -> JwtVerifier:
        """A real verifier whose JWKS comes from memory."""
        return JwtVerifier(self.trusted(), fetch=self._jwks, **kw)

    def token(self, email: str, kind: SignInKind = SignInKind.PLATFORM, **kw: Any) -> str:
        """A valid token of `email`'s stable subject at the issuer of `kind`."""
        kw.setdefault("subject", local_subject(email, kind))
        kw.setdefault("issuer", self.issuer(kind))
        kw.setdefault("audience", AUDIENCE)
        return mint(self.key, email=email, **kw)

    def sign_in(self, email: str, kind: SignInKind = SignInKind.PLATFORM) -> VerifiedToken:
        """What the verifier makes of `token(email, kind)`."""
        return VerifiedToken(
            issuer=self.issuer(kind), subject=local_subject(email, kind), kind=kind, email=email
        )


def crashing_directory(directory: Directory, budget: WriteBudget) -> Directory:
    """The same records, but the process dies once `budget`'s writes are spent."""
    wrap = lambda repo: CrashingRepository(repo, budget)  # noqa: E731
    return dataclasses.replace(
        directory,
        users=wrap(directory.users),
        identities=wrap(directory.identities),
        invitations=wrap(directory.invitations),
        notifications=wrap(directory.notifications),
    )


# --- Partner Center's list of the distributor's indirect resellers -----------------------------

import hashlib as _hashlib  # noqa: E402
from decimal import Decimal as _Decimal  # noqa: E402
from uuid import NAMESPACE_URL as _NS  # noqa: E402
from uuid import uuid5 as _uuid5  # noqa: E402

from localdev.partner_center_sim.resellers import DEMO_RESELLERS  # noqa: E402
from shared.domain.identity import IndirectReseller  # noqa: E402
from shared.ports import Clock, Repository  # noqa: E402
from shared.services import resellers as _resellers  # noqa: E402
from shared.services.resellers import ResellerCreate  # noqa: E402


def reseller_ids(slug: str) -> tuple[str, str]:
    """A test reseller's (tenant id, MPN id), derived from its slug (stable across tests)."""
    tenant_id = str(_uuid5(_NS, f"reseller:{slug}"))
    mpn_id = str(int(_hashlib.sha256(slug.encode()).hexdigest(), 16) % 9_000_000 + 1_000_000)
    return tenant_id, mpn_id


def _known(slug: str) -> IndirectReseller:
    tenant_id, mpn_id = reseller_ids(slug)
    return IndirectReseller(tenant_id=tenant_id, name=slug, mpn_id=mpn_id)


# Resellers Partner Center knows in unit tests: the test slugs and the local demo resellers.
KNOWN_RESELLERS = [
    *(_known(slug) for slug in ("demo", "other", "acme", "fresh")),
    *(IndirectReseller(tenant_id=r.id, name=r.name, mpn_id=r.mpn_id) for r in DEMO_RESELLERS),
]


class FakeIndirectResellers:
    """The IndirectResellers port: Partner Center's `IsIndirectCloudSolutionProviderOf` list."""

    def __init__(self, resellers: list[IndirectReseller] | None = None) -> None:
        self.resellers = list(KNOWN_RESELLERS if resellers is None else resellers)
        self.fail_with: Exception | None = None

    def list_indirect_resellers(self) -> list[IndirectReseller]:
        """The distributor's indirect resellers (or the configured failure)."""
        if self.fail_with is not None:
            raise self.fail_with
        return list(self.resellers)

    def add(self, tenant_id: str, mpn_id: str | None, name: str = "", active: bool = True) -> None:
        """Make Partner Center know one more reseller."""
        self.resellers.append(
            IndirectReseller(tenant_id=tenant_id, name=name, mpn_id=mpn_id, active=active)
        )


def onboard(
    repo: Repository[Reseller],
    clock: Clock,
    slug: str,
    currency: str = "CZK",
    *,
    name: str | None = None,
    margin: str = "10",
) -> Reseller:
    """Onboard a test reseller through the service, with the ids Partner Center knows for it."""
    tenant_id, mpn_id = reseller_ids(slug)
    command = ResellerCreate(
        slug=slug,
        name=name or slug,
        partner_center_tenant_id=tenant_id,
        mpn_id=mpn_id,
        country="CZ",
        currency=currency,
        default_markup_percent=_Decimal(margin),
    )
    return _resellers.onboard(repo, clock, command, FakeIndirectResellers([_known(slug)]))


def fake_directory(clock: FakeClock | None = None) -> Directory:
    """A Directory of in-memory repositories."""
    return Directory(
        resellers=InMemoryRepository[Reseller](lambda r: ("reseller", r.slug)),
        users=InMemoryRepository[User](lambda u: (u.reseller, u.id)),
        identities=InMemoryRepository[Identity](lambda i: (i.issuer_key, i.subject_key)),
        invitations=InMemoryRepository[Invitation](lambda i: (i.reseller, i.token_hash)),
        notifications=InMemoryRepository[Notification](lambda n: (n.scope, n.id)),
        clock=clock or FakeClock(),
    )


class _Pingable:
    def __init__(self) -> None:
        self.poison: dict[str, int] = {}

    def ping(self) -> None:
        """Storage answers."""

    def poison_depths(self) -> dict[str, int]:
        """Depths of the poison queues, as a test sets them."""
        return dict(self.poison)


def fake_container(
    issuer: TestIssuer, clock: FakeClock | None = None, **settings: Any
) -> Container:
    """A Container whose repositories live in memory and whose tokens `issuer` signs."""
    values: dict[str, Any] = {
        "APP_ENVIRONMENT": "test",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AUTH_ISSUERS": [i.model_dump() for i in issuer.trusted()],
        "PUBLIC_BASE_URL": "https://portal.test",
        **settings,
    }
    clock = clock or FakeClock()
    c = Container(Settings(**values), clock=clock)
    d = fake_directory(clock)
    c.__dict__.update(
        resellers=d.resellers,
        users=d.users,
        identities=d.identities,
        invitations=d.invitations,
        notifications=d.notifications,
        idempotency=InMemoryRepository[IdempotencyRecord](lambda i: (i.scope, i.key_hash)),
        sync_runs=InMemoryRepository[SyncRun](lambda r: (r.reseller, sync_row_key(r.id))),
        sync_chunks=InMemoryRepository[SyncChunk](lambda k: (k.run_id, chunk_row_key(k.number))),
        directory=d,
        token_verifier=issuer.verifier(),
        store=_Pingable(),
        queues=_Pingable(),
    )
    return c


# --- Customers -------------------------------------------------------------------------------

import secrets as _secrets  # noqa: E402
import uuid as _uuid  # noqa: E402

from shared.domain.customers import (  # noqa: E402
    AdminSignIn,
    CreatedTenant,
    Customer,
    Tenant,
    TenantRequest,
)
from shared.domain.errors import UpstreamRejected  # noqa: E402
from shared.services.customers import CustomerBook  # noqa: E402


class FakeCustomerPartnerCenter(FakeIndirectResellers):
    """The customer half of the PartnerCenter port, with MS-RequestId replay like the real one.

    Other operations go to `fallback` (e.g. the catalog's fake) when one is given.
    """

    def __init__(self, fallback: Any = None) -> None:
        super().__init__(getattr(fallback, "resellers", None))
        self.fallback = fallback
        self.tenants: dict[str, Tenant] = {}
        self.passwords: dict[str, str] = {}
        self.taken: set[str] = set()
        self.replies: dict[str, CreatedTenant] = {}
        # Like Partner Center (and the simulator): a 4xx answer is replayed for its MS-RequestId.
        self.refusals: dict[str, UpstreamRejected] = {}
        self.create_calls: list[str | None] = []
        self.fail_create_with: Exception | None = None
        self.fail_domain_check_with: Exception | None = None
        # Partner Center's answer to a create may lack `userCredentials`.
        self.omit_credentials = False
        self.link = "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=p#/x"

    def __getattr__(self, name: str) -> Any:
        if self.fallback is None:
            raise AttributeError(name)
        return getattr(self.fallback, name)

    def is_domain_available(self, domain: str) -> bool:
        """Free unless taken or a tenant holds it."""
        if self.fail_domain_check_with is not None:
            raise self.fail_domain_check_with
        domain = domain.lower()
        return domain not in self.taken and all(t.domain != domain for t in self.tenants.values())

    def create_customer_tenant(
        self, request: TenantRequest, *, request_id: str | None = None
    ) -> CreatedTenant:
        """Create a tenant once per request id; the reply carries the admin's credentials."""
        self.create_calls.append(request_id)
        if request_id is not None and request_id in self.replies:
            return self.replies[request_id]
        if request_id is not None and request_id in self.refusals:
            raise self.refusals[request_id]
        try:
            return self._create(request, request_id)
        except UpstreamRejected as exc:
            if request_id is not None and exc.status not in (401, 429):
                self.refusals[request_id] = exc
            raise

    def _create(self, request: TenantRequest, request_id: str | None) -> CreatedTenant:
        if self.fail_create_with is not None:
            raise self.fail_create_with
        domain = request.domain.lower()
        if not self.is_domain_available(domain):
            raise UpstreamRejected(f"Domain {domain} already exists.", code="1001", status=409)
        tenant = self.add_tenant(
            request.reseller_tenant_id,
            domain,
            request.company_name,
            registration_number=request.registration_number,
            contact=request.contact,
            address=request.address,
            language=request.language,
            culture=request.culture,
        )
        password = _secrets.token_urlsafe(12)
        self.passwords[tenant.id] = password
        sign_in = None if self.omit_credentials else AdminSignIn(f"admin@{domain}", password)
        reply = CreatedTenant(tenant=tenant, sign_in=sign_in)
        if request_id is not None:
            self.replies[request_id] = reply
        return reply

    def add_tenant(
        self,
        reseller_tenant_id: str | None,
        domain: str,
        company_name: str | None = None,
        **fields: Any,
    ) -> Tenant:
        """A tenant Partner Center holds (made here, or earlier by anyone)."""
        tenant = Tenant(
            id=str(_uuid.uuid4()),
            domain=domain.lower(),
            company_name=company_name,
            associated_partner_id=reseller_tenant_id,
            **fields,
        )
        self.tenants[tenant.id] = tenant
        return tenant

    def customer_tenant(self, tenant_id: str) -> Tenant:
        """A tenant by id."""
        try:
            return self.tenants[tenant_id]
        except KeyError:
            raise NotFound(f"customer {tenant_id}") from None

    def customer_tenants(self, *, indirect_reseller_id: str | None = None) -> Iterator[Tenant]:
        """Tenants, optionally of one indirect reseller, with Partner Center's `starts_with` filter
        (a reseller whose id begins with another's sees both resellers' tenants)."""
        needle = (indirect_reseller_id or "").lower()
        for t in list(self.tenants.values()):
            if (t.associated_partner_id or "").lower().startswith(needle):
                yield t

    def relationship_request_url(self) -> str:
        """The partner's relationship request link."""
        return self.link


def install_customers(c: Container, fallback: Any = None) -> FakeCustomerPartnerCenter:
    """Customers in memory, a customer-capable Partner Center fake and a fake mailer on `c`."""
    partner_center = FakeCustomerPartnerCenter(fallback)
    repo = InMemoryRepository[Customer](lambda x: (x.reseller, x.id))
    catalog = c.__dict__.get("catalog_store")
    notifications = c.__dict__.get("notifications") or InMemoryRepository[Notification](
        lambda n: (n.scope, n.id)
    )
    if "directory" in c.__dict__:
        c.__dict__["directory"] = dataclasses.replace(c.__dict__["directory"], customers=repo)
    c.__dict__.update(
        customers=repo,
        notifications=notifications,
        customer_book=CustomerBook(repo, c.resellers, c.clock, catalog, notifications),
        partner_center=partner_center,
        mailer=FakeMailer(),
    )
    return partner_center
