"""Request checks every route shares: cross-site protection, redirects that do not trust the
Host header, and no caching unless a response says otherwise.

Cross-site: a browser tells where a request comes from, in ``Sec-Fetch-Site`` (current browsers)
or ``Origin`` (older ones, on every cross-origin POST). A state-changing request that a browser
sent from another site is refused with 403, so no other web page can make a visitor's browser
start, cancel or delete jobs, or post anything else. Clients that are not browsers (curl, HTTP
libraries) send neither header and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import Quart, Response, redirect, request
from werkzeug.routing import RequestRedirect

from ..config import Settings
from .errors import Problem

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# "none": the user started it (typed, bookmarked), so no other site did.
_TRUSTED_FETCH_SITES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin(scheme: str, host: str) -> str:
    """``scheme://host[:port]`` in lower case, without the scheme's default port."""
    scheme, host = scheme.lower(), host.lower()
    name, _, port = host.rpartition(":")
    if name and port == _DEFAULT_PORTS.get(scheme):
        host = name  # "example.org:443" is the origin https://example.org
    return f"{scheme}://{host}"


def trusted_origins(settings: Settings) -> set[str]:
    """The request's own origin (as its Host header says), and the configured public one."""
    origins = {_origin(request.scheme, request.host)}
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        origins.add(_origin(parts.scheme, parts.netloc))
    return origins


def cross_site_problem(settings: Settings) -> Problem | None:
    """A 403 for a state-changing request a browser sent from another site, else None."""
    if request.method not in UNSAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.strip().lower() in _TRUSTED_FETCH_SITES:
            return None
        reason = f"it comes from another site (Sec-Fetch-Site: {site[:20]})"
    else:
        origin = request.headers.get("Origin")
        if origin is None:
            return None  # not sent by a browser, or by one too old to say
        parts = urlsplit(origin.strip())
        if (
            parts.scheme
            and parts.netloc
            and _origin(parts.scheme, parts.netloc) in (trusted_origins(settings))
        ):
            return None
        reason = f"it comes from another origin (Origin: {origin[:60]})"
    return Problem(
        403,
        "Cross-site request refused",
        f"This {request.method} request was refused because {reason}. Use the pages of "
        "this site, or a client that is not a browser.",
    )


def relative_location(url: str) -> str:
    """The path and query of ``url``, as a Location that stays on this site."""
    parts = urlsplit(url)
    # "//x" or "/\\x" would send a browser to the host x: keep exactly one leading slash.
    path = "/" + parts.path.lstrip("/\\")
    return f"{path}?{parts.query}" if parts.query else path


def install(app: Quart, settings: Settings) -> None:
    @app.before_request
    async def _guard() -> Response | None:
        # Routing redirects (e.g. //fig//5_3 to /fig/5_3) are built from the Host header;
        # answer them with a relative Location instead.
        routing = request.routing_exception
        if isinstance(routing, RequestRedirect):
            resp = redirect(relative_location(routing.new_url), routing.code)
            resp.headers["Cache-Control"] = "no-store"
            return resp
        problem = cross_site_problem(settings)
        if problem is not None:
            raise problem
        return None

    @app.after_request
    async def _no_store_by_default(response: Response) -> Response:
        # Only responses that say so may be cached (seeded images, static files).
        response.headers.setdefault("Cache-Control", "no-store")
        return response
