"""The URL policy: which URLs a task may read and write, decided before any connection.

* The scheme must be in ``execution.url_schemes``; ``data:`` is read-only.
* ``http``/``https``/``s3`` URLs carry no userinfo; with ``execution.url_hosts`` set,
  the host (``host`` or ``host:port``) must be listed. For ``s3`` the host is the
  endpoint's (``execution.s3_endpoint_url``, else ``s3.amazonaws.com:443``).
* Every address the host resolves to (or the literal address) must be public:
  not loopback, private, link-local (incl. 169.254.169.254), shared (100.64/10),
  unspecified, multicast or reserved, also when embedded in an IPv6 address
  (IPv4-mapped, 6to4, NAT64) — unless the host is listed in ``execution.private_hosts``.

The connection itself is checked again at connect time against the
:class:`Clearance` (see ``teaclave.transport.remote.Gate``): a host that resolves
differently the second time (DNS rebinding) gains nothing, and a private host's
clearance covers only the addresses it had when it was checked.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, replace
from urllib.parse import SplitResult, urlsplit

from teaclave.config import ExecutionConfig
from teaclave.core.errors import Status, TeaclaveError, invalid_argument, permission_denied

SCHEMES = ("file", "data", "fusion", "http", "https", "s3")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_AWS_S3 = "https://s3.amazonaws.com"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (a module attribute so tests can replace it)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def split_url(url: str) -> SplitResult:
    """``url`` split into its parts (INVALID_ARGUMENT if malformed)."""
    try:
        return urlsplit(url)
    except ValueError:
        raise invalid_argument("malformed URL") from None


@dataclass(frozen=True)
class Endpoint:
    """The network peer of a remote URL."""

    scheme: str
    host: str
    port: int

    @property
    def name(self) -> str:
        """``host:port`` (IPv6 literals in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """``scheme://host:port``."""
        return f"{self.scheme}://{self.name}"

    def listed_in(self, entries: tuple[str, ...]) -> bool:
        """Whether ``entries`` (``host`` or ``host:port`` items) name this endpoint."""
        names = {self.host, f"[{self.host}]", self.name}
        return any(entry.lower() in names for entry in entries)


def endpoint(url: str, config: ExecutionConfig) -> Endpoint:
    """The peer an ``http``/``https``/``s3`` URL connects to (the s3 endpoint for ``s3:``)."""
    parts = split_url(url)
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None:
        raise invalid_argument(f"{scheme}:// URLs must not carry credentials (userinfo)")
    if scheme == "s3":
        if not parts.hostname:
            raise invalid_argument("s3:// URLs must name a bucket: s3://BUCKET/KEY")
        if not parts.path.strip("/"):
            raise invalid_argument(f"s3://{parts.hostname} names no object key")
        if parts.query or parts.fragment:
            raise invalid_argument("s3:// URLs take no query or fragment")
        return replace(endpoint(config.s3_endpoint_url or _AWS_S3, config), scheme="s3")
    if scheme not in _DEFAULT_PORTS:
        raise invalid_argument(f"not a network URL scheme: {scheme!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise invalid_argument(f"{scheme}:// URL with an invalid port") from None
    if not parts.hostname:
        raise invalid_argument(f"{scheme}:// URL without a host")
    return Endpoint(scheme, parts.hostname.lower(), port)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` (and any IPv4 address embedded in it) is globally routable unicast."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved)


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (a zone index is dropped), or None for a host name."""
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


def _refusal(peer: Endpoint, address: object) -> str:
    return (
        f"{peer.origin} resolves to the non-public address {address}, "
        "which is not allowed (see execution.private_hosts)"
    )


@dataclass(frozen=True)
class Clearance:
    """A remote endpoint the policy allowed, with the addresses it resolved to then."""

    peer: Endpoint
    addresses: frozenset[IPAddress]

    def refusal(self, address: str) -> str | None:
        """Why dialling ``address`` now is refused (None: allowed).

        Public addresses are fine; a non-public one only if the policy allowed it
        for this endpoint (``private_hosts``) when it was checked.
        """
        parsed = parse_address(address)
        if parsed is not None and (is_public(parsed) or parsed in self.addresses):
            return None
        return _refusal(self.peer, address)


def _addresses(peer: Endpoint) -> list[IPAddress]:
    literal = parse_address(peer.host)
    if literal is not None:
        return [literal]
    try:
        resolved = [parse_address(address) for address in resolve_host(peer.host, peer.port)]
    except (OSError, UnicodeError) as exc:
        raise TeaclaveError(
            Status.UNAVAILABLE, f"cannot resolve host {peer.host!r} of a {peer.scheme}:// URL"
        ) from exc
    addresses = [address for address in resolved if address is not None]
    if not addresses:
        raise TeaclaveError(Status.UNAVAILABLE, f"host {peer.host!r} has no address")
    return addresses


def check_endpoint(peer: Endpoint, config: ExecutionConfig) -> Clearance:
    """Apply the host list and the address rule to ``peer`` (resolving its name)."""
    if config.url_hosts and not peer.listed_in(config.url_hosts):
        raise permission_denied(f"{peer.origin}: host not in execution.url_hosts")
    addresses = frozenset(_addresses(peer))
    if not peer.listed_in(config.private_hosts):
        for address in sorted(addresses, key=str):
            if not is_public(address):
                raise permission_denied(_refusal(peer, address))
    return Clearance(peer, addresses)


def url_scheme(url: str, config: ExecutionConfig, *, write: bool) -> str:
    """The scheme of ``url`` (lower case) if the policy allows it for this direction."""
    scheme = split_url(url).scheme.lower()
    if scheme not in SCHEMES:
        raise invalid_argument(f"unsupported URL scheme {scheme!r}")
    if scheme not in config.url_schemes:
        raise permission_denied(f"URL scheme {scheme!r} is not in execution.url_schemes")
    if write and scheme == "data":
        raise invalid_argument("data: URLs are read-only")
    return scheme
