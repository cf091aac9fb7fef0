"""A local OpenID issuer: the signing key, its JWKS over HTTP, and a CLI that mints tokens.

One RSA key (made once, kept in the state folder) signs for three issuers, one per sign-in
kind: `http://127.0.0.1:<port>/platform`, `/work` and `/personal`, each with its own
`/.well-known/openid-configuration` and `/jwks`. `local.settings.json` trusts them
(AUTH_ISSUERS).

    python -m localdev.tokens serve --port 7072 --state-dir .local/issuer
    python -m localdev.tokens --email owner@demo.example [--kind work] [--expires-in 3600]

Minting looks the user up in storage (AzureWebJobsStorage, from the environment or
local.settings.json, as the host reads it) to put the subject linked to it in the token; an
address that is no user yet gets a stable subject of its own (to accept an invitation with).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.domain.identity import SignInKind, VerifiedToken, normalise_email

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local" / "issuer"
DEFAULT_PORT = 7072
AUDIENCE = "api://csp-platform-local"
KEY_FILE = "signing-key.pem"


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def load_key(state_dir: Path = STATE_DIR) -> rsa.RSAPrivateKey:
    """The issuer's signing key, made on first use and kept in `state_dir`."""
    path = state_dir / KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pem)
        tmp.chmod(0o600)
        os.replace(tmp, path)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise SystemExit(f"{path} is not an RSA key")
    return loaded


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public key as a JWK; `kid` is its RFC 7638 thumbprint."""
    numbers = key.public_key().public_numbers()
    jwk = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
    thumb = hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode())
    kid = base64.urlsafe_b64encode(thumb.digest()).decode().rstrip("=")
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def issuer_url(base: str, kind: SignInKind | str) -> str:
    """The issuer of one sign-in kind under the local issuer's base URL."""
    return f"{base.rstrip('/')}/{SignInKind(kind).value}"


def local_subject(email: str, kind: SignInKind | str) -> str:
    """The stable subject the local issuer gives an e-mail address for one sign-in kind."""
    digest = hashlib.sha256(normalise_email(email).encode()).hexdigest()[:24]
    return f"local-{SignInKind(kind).value}-{digest}"


def mint(
    key: rsa.RSAPrivateKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    email: str | None = None,
    name: str | None = None,
    expires_in: int = 3600,
    not_before: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A signed RS256 token."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": int(not_before) if not_before is not None else now,
        "exp": now + expires_in,
        "jti": str(uuid.uuid4()),
    }
    if email:
        claims["email"] = email
    if name:
        claims["name"] = name
    claims.update(extra or {})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": public_jwk(key)["kid"]})


class _Handler(BaseHTTPRequestHandler):
    key: rsa.RSAPrivateKey

    def do_GET(self) -> None:
        base = f"http://{self.headers.get('Host') or '127.0.0.1'}"
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        kinds = {k.value for k in SignInKind}
        if len(parts) >= 2 and parts[0] in kinds:
            issuer = issuer_url(base, parts[0])
            rest = "/".join(parts[1:])
            if rest == ".well-known/openid-configuration":
                return self._json(
                    {
                        "issuer": issuer,
                        "jwks_uri": f"{issuer}/jwks",
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                    }
                )
            if rest == "jwks":
                return self._json({"keys": [public_jwk(self.key)]})
        self._json({"error": "not found"}, 404)

    def _json(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "max-age=300")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def server(
    port: int = DEFAULT_PORT, state_dir: Path = STATE_DIR, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """An HTTP server for the discovery documents and JWKS (call `serve_forever`)."""
    handler = type("Handler", (_Handler,), {"key": load_key(state_dir)})
    return ThreadingHTTPServer((host, port), handler)


def serve_in_thread(port: int = 0, state_dir: Path = STATE_DIR) -> tuple[ThreadingHTTPServer, str]:
    """Start the issuer in a daemon thread (tests); returns it and its base URL."""
    srv = server(port, state_dir)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def issuers_json(base: str, audience: str = AUDIENCE) -> str:
    """AUTH_ISSUERS trusting the three local issuers under `base`."""
    return json.dumps(
        [
            {
                "issuer": issuer_url(base, kind),
                "jwksUri": f"{issuer_url(base, kind)}/jwks",
                "audience": audience,
                "kind": kind.value,
            }
            for kind in SignInKind
        ],
        separators=(",", ":"),
    )


def local_sign_ins(settings: Any, email: str) -> list[VerifiedToken]:
    """The sign-ins of `email` at every local issuer the app trusts (for seeding)."""
    return [
        VerifiedToken(
            issuer=i.issuer,
            subject=local_subject(email, i.kind),
            kind=i.kind,
            email=normalise_email(email),
        )
        for i in settings.auth_issuers
        if "{tenantid}" not in i.issuer
        and i.jwks_uri.startswith(("http://127.0.0.1", "http://localhost"))
    ]


def _settings() -> Any:
    from localdev.funchost.config import load_settings
    from shared.config import Settings

    load_settings(ROOT / "local.settings.json")
    return Settings()


def token_for(
    email: str,
    kind: SignInKind,
    *,
    expires_in: int = 3600,
    state_dir: Path = STATE_DIR,
    settings: Any = None,
) -> str:
    """A token for the user with this e-mail, as the app's configured local issuer signs it."""
    from shared.bootstrap import Container

    settings = settings or _settings()
    trusted = next((i for i in settings.auth_issuers if i.kind is kind), None)
    if trusted is None:
        # An older local.settings.json without AUTH_ISSUERS: `make run` passes the default.
        from shared.config import TrustedIssuer

        base = f"http://127.0.0.1:{DEFAULT_PORT}"
        trusted = TrustedIssuer(
            issuer=issuer_url(base, kind),
            jwks_uri=f"{issuer_url(base, kind)}/jwks",
            audience=AUDIENCE,
            kind=kind,
        )
    address = normalise_email(email)
    subject = local_subject(address, kind)
    issuer = trusted.issuer
    users = list(Container(settings).users.iterate(equals={"email": address}))
    linked = next((u.linked(kind) for u in users if u.linked(kind) is not None), None)
    if linked is not None:
        subject, issuer = linked.subject, linked.issuer
    elif not users:
        print(
            f"note: {address} is no user yet; the token can accept an invitation", file=sys.stderr
        )
    else:
        print(f"note: {address} has no {kind.value} sign-in linked yet", file=sys.stderr)
    return mint(
        load_key(state_dir),
        issuer=issuer,
        audience=trusted.audience,
        subject=subject,
        email=address,
        expires_in=expires_in,
    )


def main(argv: list[str] | None = None) -> int:
    """`serve` the issuer, or print a token for `--email`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        p = argparse.ArgumentParser(prog="python -m localdev.tokens serve")
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
        p.add_argument("--state-dir", type=Path, default=STATE_DIR)
        opts = p.parse_args(args[1:])
        srv = server(opts.port, opts.state_dir)
        print(f"local issuer on http://127.0.0.1:{srv.server_address[1]}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            srv.serve_forever()
        return 0
    p = argparse.ArgumentParser(prog="python -m localdev.tokens")
    p.add_argument("--email", required=True)
    p.add_argument("--kind", choices=[k.value for k in SignInKind], default="platform")
    p.add_argument("--expires-in", type=int, default=3600, help="seconds")
    p.add_argument("--state-dir", type=Path, default=STATE_DIR)
    opts = p.parse_args(args)
    print(
        token_for(
            opts.email,
            SignInKind(opts.kind),
            expires_in=opts.expires_in,
            state_dir=opts.state_dir,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
