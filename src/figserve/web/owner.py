"""Who a job belongs to: an owner cookie per client, and the operator's admin token.

The response to a job submission sets a random owner token as an HttpOnly cookie (browsers keep
it; API clients keep it in their cookie jar, e.g. ``curl -c jar -b jar``). The job store keeps
only a hash of the token, so reading the database does not give the tokens away. Every job route
acts only on the caller's jobs; an operator who configured ``FIGSERVE_ADMIN_TOKEN`` sees all of
them by sending it as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

from quart import Response, request, url_for

from ..config import Settings
from .errors import Problem

COOKIE = "figserve_owner"
_TOKEN_BYTES = 32
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)  # token_urlsafe(32)


@dataclass(frozen=True)
class Caller:
    """The client of a request, as far as jobs go."""

    token: str | None  # the owner token from its cookie, if it sent a valid one
    admin: bool = False

    @property
    def client(self) -> str | None:
        """What the store keeps of the token: its hash."""
        return token_hash(self.token) if self.token else None


def token_hash(token: str) -> str:
    # The token is 256 random bits: a plain hash cannot be reversed by guessing.
    return hashlib.sha256(b"figserve-owner:" + token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


def caller(settings: Settings) -> Caller:
    """The caller of this request: its owner token, and whether it is the operator."""
    raw = request.cookies.get(COOKIE, "")
    token = raw if _TOKEN.fullmatch(raw) else None
    return Caller(token=token, admin=_is_admin(settings))


def _is_admin(settings: Settings) -> bool:
    header = request.headers.get("Authorization")
    if not settings.admin_token or header is None:
        return False
    scheme, _, given = header.partition(" ")
    # Compare digests, so the time taken tells nothing about the token, not even its length.
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(),
        hashlib.sha256(settings.admin_token.encode()).digest(),
    )
    if not ok:
        raise Problem(
            401,
            "Invalid admin token",
            "The Authorization header does not carry the operator's token.",
            headers={"WWW-Authenticate": 'Bearer realm="figserve jobs"'},
        )
    return True


def bucket(who: Caller) -> str:
    """What the per-client job limit counts: the owner token, or for a client without one, its
    IP address (an IPv6 client by its /64 network, which one machine usually has whole)."""
    if who.client is not None:
        return who.client
    address = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        key = address
    else:
        key = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
    return "ip:" + hashlib.sha256(key.encode()).hexdigest()


def set_owner_cookie(resp: Response, token: str, settings: Settings) -> None:
    """Give (or renew) the owner cookie: only the job routes receive it, never scripts."""
    secure = request.scheme == "https" or settings.public_url.startswith("https:")
    resp.set_cookie(
        COOKIE,
        token,
        max_age=int(settings.owner_cookie_max_age),
        path=url_for("jobs.jobs"),
        secure=secure,
        httponly=True,
        samesite="Lax",
    )


def require_admin(settings: Settings) -> None:
    """Let only the operator through: 403 while no admin token is configured, 401 without
    the right ``Authorization: Bearer <token>``."""
    if not settings.admin_token:
        raise Problem(
            403,
            "No admin token configured",
            "This endpoint needs the operator's token: set FIGSERVE_ADMIN_TOKEN on the server "
            "and send it as Authorization: Bearer <token>.",
        )
    if not _is_admin(settings):
        raise Problem(
            401,
            "Admin token required",
            "Send the operator's token as Authorization: Bearer <FIGSERVE_ADMIN_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="figserve"'},
        )
