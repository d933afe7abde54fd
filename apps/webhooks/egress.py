"""Outbound HTTP to a URL a key holder chose (webhook endpoints), without server-side request forgery.

The host is resolved once, here; every address it resolves to is checked, and the connection goes
to the first of them: the HTTP client never resolves the name again, so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot send us to loopback or to our own
network. The request still names the host: the ``Host`` header is the URL's, and for https the
TLS server name (SNI) and the certificate check use the hostname, not the address. Redirects are
not followed, environment proxies are ignored (a proxy would resolve the name itself), and a
refused address is refused before any connection is made.

Refused (unless ``allow_private``, development only): loopback, private, link-local, shared
(100.64/10), multicast, reserved and unspecified addresses, also when embedded in an IPv6 address
(IPv4-mapped, 6to4, Teredo, NAT64)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressRefused(requests.ConnectionError):
    """The host resolves to an address we must not connect to (nothing was sent)."""


def address_is_public(address: str) -> bool:
    """Whether ``address`` (an IP literal) is a public unicast address, embedded IPv4 included."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(v4 is None or (v4.is_global and not v4.is_multicast) for v4 in embedded)
    return True


def host_resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for ``host``: the first it resolves to. Raises AddressRefused when
    any of its addresses is not public (unless ``allow_private``), requests.ConnectionError when it
    does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise requests.ConnectionError(f"{host} does not resolve: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise requests.ConnectionError(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            if not address_is_public(address):
                raise AddressRefused(f"{host} resolves to a non-public address ({address.split('%')[0]})")
    return addresses[0]


class PinnedAddressAdapter(HTTPAdapter):
    """Sends requests for ``hostname`` over a connection to ``address`` (one already checked):
    the pool is keyed by the address, with the hostname as TLS server name and certificate name.
    Refuses any other host and any proxy. No retries."""

    def __init__(self, *, hostname: str, address: str):
        self.hostname = hostname
        self.address = address
        super().__init__(max_retries=0)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies and any(proxies.values()):
            raise AddressRefused("webhook deliveries never go through a proxy")
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        if (host_params["host"] or "").lower() != self.hostname.lower():
            raise AddressRefused(f"this connection is pinned to {self.hostname}, not {host_params['host']}")
        kwargs: dict = dict(pool_kwargs)
        if host_params["scheme"] == "https":
            kwargs.update(server_hostname=self.hostname, assert_hostname=self.hostname)
        return self.poolmanager.connection_from_host(
            host=self.address, port=host_params["port"], scheme=host_params["scheme"], pool_kwargs=kwargs
        )


def host_header(url: str) -> str:
    """The ``Host`` header ``url`` calls for (the port only when it is not the scheme's default)."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    name = f"[{hostname}]" if ":" in hostname else hostname
    default = 443 if parts.scheme == "https" else 80
    return name if parts.port in (None, default) else f"{name}:{parts.port}"


def post_pinned(
    url: str, *, data: bytes, headers: Mapping[str, str], timeout: float, allow_private: bool
) -> requests.Response:
    """POST ``data`` to ``url`` over a connection to the address checked here (see the module's
    docstring). Raises requests exceptions (AddressRefused before connecting to a refused address)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise requests.ConnectionError(f"not a valid URL: {url}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise requests.ConnectionError(f"not an http(s) URL: {url}")
    address = host_resolve(parts.hostname, port, allow_private=allow_private)
    with requests.Session() as session:
        session.trust_env = False  # no proxies or netrc from the environment
        session.mount(f"{parts.scheme}://", PinnedAddressAdapter(hostname=parts.hostname, address=address))
        return session.post(
            url,
            data=data,
            headers={**headers, "Host": host_header(url)},
            timeout=timeout,
            allow_redirects=False,
        )
