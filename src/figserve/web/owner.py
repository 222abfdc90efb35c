"""Who a job belongs to: an owner cookie per client, and the operator's admin token.

The response to a job submission sets an owner token as an HttpOnly cookie (browsers keep it;
API clients keep it in their cookie jar, e.g. ``curl -c jar -b jar``). A token is one the server
issued: a random part and its HMAC under the server's owner key (``FIGSERVE_OWNER_SECRET``, else
a key made once and kept by the job store, so every worker and instance checks the same way). A
token the server did not issue (made up, altered, or signed by a key since replaced) counts as no
cookie at all: it neither opens anyone's jobs nor earns a share of the per-client limit of its
own. The job store keeps only a hash of the token, so reading it does not give the tokens away.

Every job route acts only on the caller's jobs; an operator who configured
``FIGSERVE_ADMIN_TOKEN`` sees all of them by sending it as ``Authorization: Bearer <token>``.
Other kinds of ``Authorization`` (a proxy's basic auth) are not the operator's and are ignored.
"""

from __future__ import annotations

import base64
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
_NONCE_BYTES = 18  # 144 random bits, 24 characters
_MAC_BYTES = 24  # 192 bits of the HMAC, 32 characters
_TOKEN = re.compile(r"([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{32})", re.ASCII)


@dataclass(frozen=True)
class Caller:
    """The client of a request, as far as jobs go."""

    token: str | None  # the owner token of its cookie, if the server issued it
    admin: bool = False

    @property
    def client(self) -> str | None:
        """What the store keeps of the token: its hash."""
        return token_hash(self.token) if self.token else None


def token_hash(token: str) -> str:
    # The token holds 144 random bits: a plain hash cannot be reversed by guessing.
    return hashlib.sha256(b"figserve-owner:" + token.encode()).hexdigest()


def _mac(key: bytes, nonce: str) -> str:
    digest = hmac.new(key, b"figserve-owner:" + nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode()


def new_token(key: bytes) -> str:
    """A new owner token signed with ``key``."""
    nonce = secrets.token_urlsafe(_NONCE_BYTES)
    return f"{nonce}.{_mac(key, nonce)}"


def issued(token: str, key: bytes) -> bool:
    """Whether ``token`` is one the server issued under ``key``."""
    match = _TOKEN.fullmatch(token)
    return (
        bool(key)
        and match is not None
        and hmac.compare_digest(match.group(2), _mac(key, match.group(1)))
    )


def caller(settings: Settings, key: bytes) -> Caller:
    """The caller of this request: its owner token (if issued here), and whether it is the
    operator."""
    raw = request.cookies.get(COOKIE, "")
    return Caller(token=raw if issued(raw, key) else None, admin=_is_admin(settings))


def _is_admin(settings: Settings) -> bool:
    header = request.headers.get("Authorization")
    if not settings.admin_token or header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False  # a proxy's own credentials: this is an ordinary client
    # Compare digests, so the time taken tells nothing about the token, not even its length.
    if hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(),
        hashlib.sha256(settings.admin_token.encode()).digest(),
    ):
        return True
    raise Problem(
        401,
        "Invalid admin token",
        "The Authorization header's bearer token is not the operator's token.",
        headers={"WWW-Authenticate": 'Bearer realm="figserve jobs"'},
    )


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
