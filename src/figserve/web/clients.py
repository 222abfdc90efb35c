"""Who a request comes from, for per-client limits: an address, or the network of one machine.

Without a proxy the client is the connection's peer. Behind a reverse proxy every connection
comes from the proxy, which names the client in ``X-Forwarded-For`` (nginx appends the address
it saw to what the client sent). That header is believed only from the addresses the operator
lists in ``FIGSERVE_TRUSTED_PROXIES``, and read from the right: the first address that is not a
trusted proxy is the client (entries further left were written by the client itself and prove
nothing). An IPv6 client counts by its /64 network, which one machine usually has whole.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import cache

from quart import request

from ..config import Settings, proxy_networks

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_FORWARDED = 32  # hops of X-Forwarded-For looked at; a longer chain is the client's own


@cache
def _trusted(text: str) -> tuple[Network, ...]:
    return proxy_networks(text)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(peer: str | None, forwarded: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: ``peer`` (the connection's), or if that is a trusted proxy, the
    right-most address of the ``X-Forwarded-For`` values that is not a trusted proxy."""
    address = _address(peer or "")
    if address is None:
        return peer or "unknown"
    if not trusted or not _is_trusted(address, trusted):
        return str(address)
    hops = [hop for value in forwarded for hop in value.split(",")][-MAX_FORWARDED:]
    for hop in reversed(hops):
        named = _address(hop)
        if named is None:
            break  # garbage in the chain: trust nothing further left
        address = named
        if not _is_trusted(named, trusted):
            break
    return str(address)


def bucket_of(address: str) -> str:
    """What a per-client limit counts: the address, or an IPv6 address's /64 network."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


def request_client(settings: Settings) -> str:
    """The client bucket of the current request (see the module's docstring)."""
    trusted = _trusted(settings.trusted_proxies)
    forwarded = request.headers.getlist("X-Forwarded-For") if trusted else []
    return bucket_of(client_address(request.remote_addr, forwarded, trusted))
