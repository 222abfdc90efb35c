"""Who a request comes from: the peer, or the client a trusted proxy names."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from figserve.config import Settings, SettingsError, proxy_networks
from figserve.web.clients import bucket_of, client_address

PROXY = proxy_networks("127.0.0.1, 10.0.0.0/8, ::1")


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_address("203.0.113.9", ["198.51.100.1"], ()) == "203.0.113.9"
    # A peer that is no trusted proxy may write what it likes: it is not read.
    assert client_address("203.0.113.9", ["198.51.100.1"], PROXY) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client_right_to_left():
    assert client_address("127.0.0.1", ["198.51.100.1"], PROXY) == "198.51.100.1"
    # Entries the client wrote itself come first; the proxy appended the address it saw.
    assert client_address("127.0.0.1", ["6.6.6.6, 198.51.100.1"], PROXY) == "198.51.100.1"
    # Proxies behind proxies: every trusted hop is passed over.
    assert client_address("127.0.0.1", ["198.51.100.1, 10.1.2.3"], PROXY) == "198.51.100.1"
    assert client_address("127.0.0.1", ["198.51.100.1", "10.1.2.3"], PROXY) == "198.51.100.1"
    # Nothing forwarded, or garbage where the proxy's entry should be: the proxy itself.
    assert client_address("127.0.0.1", [], PROXY) == "127.0.0.1"
    assert client_address("127.0.0.1", ["nonsense"], PROXY) == "127.0.0.1"
    assert client_address("::1", ["[2001:db8::5]:443"], PROXY) == "2001:db8::5"
    assert client_address("::ffff:127.0.0.1", ["192.0.2.4:8080"], PROXY) == "192.0.2.4"


def test_an_ipv6_client_counts_by_its_network():
    assert bucket_of("2001:db8:1:2:3:4:5:6") == bucket_of("2001:db8:1:2:ffff::1")
    assert bucket_of("2001:db8:1:2::1") != bucket_of("2001:db8:1:3::1")
    assert bucket_of("192.0.2.1") == "192.0.2.1"


def test_trusted_proxies_are_checked_at_start():
    assert Settings.from_env({"trusted_proxies": " 127.0.0.1 ,10.0.0.0/8,"}).trusted_proxies
    with pytest.raises(SettingsError, match="FIGSERVE_TRUSTED_PROXIES: 'localhost'"):
        Settings.from_env({"trusted_proxies": "127.0.0.1,localhost"})


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
junk = st.text(max_size=30)


@pytest.mark.property
@given(
    peer=st.one_of(addresses, junk),
    hops=st.lists(st.one_of(addresses, junk), max_size=40),
    split=st.booleans(),
)
def test_the_client_is_never_made_up_by_an_untrusted_party(peer, hops, split):
    """Whatever arrives, the client is the peer, or a forwarded address with only trusted
    proxies to its right (never one that an untrusted party could have written)."""
    forwarded = hops if split else [", ".join(hops)]
    found = client_address(peer, forwarded, PROXY)
    peer_ip = _ip(peer)
    if peer_ip is None or not _trusted(peer_ip):
        assert found == (str(peer_ip) if peer_ip is not None else peer or "unknown")
        return
    chain = [h for value in forwarded for h in value.split(",")]
    possible = {str(peer_ip)}
    for hop in reversed(chain):
        ip = _ip(hop)
        if ip is None:
            break
        possible.add(str(ip))
        if not _trusted(ip):
            break
    assert found in possible


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip in n for n in PROXY if n.version == ip.version)
