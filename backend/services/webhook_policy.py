"""Where department webhooks may be sent (DESIGN.md §4, docs/webhooks.md): never to loopback,
link-local, private or otherwise special addresses, unless an operator allow-lists them.

Two checks, both pure (no database, no Flask):

* `check_url` looks at the URL alone, without DNS: the scheme (https; http only for
  allow-listed hosts), a literal address (in any of its numeric spellings), names that are
  local by definition (`localhost`, `*.localhost`, ...). It runs when an admin sets a webhook
  URL (a refusal is a 422) and again before every delivery.
* `resolve` runs at delivery: the host is looked up once, every address it resolves to is
  checked, and the caller connects only to those vetted addresses, sending the original host
  in the Host header and TLS SNI (backend/services/outbox.py `http_post`). A name that
  resolves to a public address for the check cannot then resolve to 127.0.0.1 for the
  connection (DNS rebinding): there is no second lookup.

`GRIDPATROL_WEBHOOK_ALLOW` (backend/config.py) is a comma-separated list of CIDRs and host
names, for deployments whose departments sit on a private network:

* an address inside an allow-listed network may be used whatever it is (loopback too), and a
  literal address inside one may be reached over http;
* an allow-listed host name may use http and may resolve to private addresses (RFC 1918,
  unique-local fc00::/7, carrier-grade NAT 100.64/10) — not to loopback, link-local or other
  special addresses, which need their network listed;
* unspecified (0.0.0.0/8, ::) and multicast addresses are never used.

A refusal is a `Refused` exception whose `reason` names the address and why: shown to admins
only; everyone else reads `REFUSED`.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from backend.config import webhook_allow_from_env

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# getaddrinfo(host, port, family, type) -> [(family, type, proto, canonname, sockaddr)]
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

REFUSED = "refused by policy"
ENV = "GRIDPATROL_WEBHOOK_ALLOW"
MAX_URL_CHARS = 2000

#: what an address is, for the rules above
PUBLIC = "public"
PRIVATE = "private"
NEVER = frozenset({"unspecified", "multicast"})

_PRIVATE_NETS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# special-purpose blocks this Python's `is_global` may still call global (IANA registries)
_SPECIAL_NETS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.0.0/24", "192.88.99.0/24", "2001::/23", "3fff::/20", "5f00::/16")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address in the last 32 bits
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
LOCAL_SUFFIXES = (".localhost", ".local")  # RFC 6761 loopback; RFC 6762 multicast DNS

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# a last label like these makes a WHATWG URL parser (and inet_aton) read the host as IPv4
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


class Refused(Exception):
    """The policy refuses a URL or an address; `reason` says which and why (admins only)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- allow-list


@dataclass(frozen=True)
class AllowList:
    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str | Iterable[str]) -> AllowList:
        """From `10.20.0.0/16, hooks.gov.example, 192.168.1.5`; entries that are neither a
        network nor a host name are ignored (with a warning): an error never widens it."""
        entries = raw.split(",") if isinstance(raw, str) else list(raw)
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _ascii_host(entry)
            if name is None or _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
                log.warning("%s: ignoring %r (neither a CIDR nor a host name)", ENV, entry)
                continue
            hosts.add(name)
        return cls(tuple(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def covers(self, address: IPAddress) -> bool:
        """The address is inside an allow-listed network (an IPv4-mapped IPv6 address counts
        as its IPv4 address)."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(a in n for a in candidates for n in self.networks if a.version == n.version)


@functools.lru_cache(maxsize=8)
def _parse_cached(raw: str) -> AllowList:
    return AllowList.parse(raw)


def allow_list_from_env() -> AllowList:
    """The allow-list of this process (GRIDPATROL_WEBHOOK_ALLOW), read when asked."""
    return _parse_cached(webhook_allow_from_env())


# --------------------------------------------------------------------------- addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, translated, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_TRANSLATED or address in _NAT64:
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return low32
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def classify(address: IPAddress) -> str:
    """`public`, `private` (RFC 1918, fc00::/7, 100.64/10) or what makes it special:
    `unspecified`, `loopback`, `link-local`, `multicast`, `reserved`. An IPv6 address that
    embeds an IPv4 one is what that IPv4 address is, when that is not public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if address.is_unspecified:
            return "unspecified"
        if address.is_loopback:
            return "loopback"
        embedded = _embedded_ipv4(address)
        if embedded is not None and (kind := classify(embedded)) != PUBLIC:
            return kind
        if address in _LOCAL_NAT64:
            return "reserved"
    elif address in _THIS_NETWORK:
        return "unspecified"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in n for n in _PRIVATE_NETS if n.version == address.version):
        return PRIVATE
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return PRIVATE
    if address.is_reserved or address.is_private or not address.is_global:
        return "reserved"
    if any(address in n for n in _SPECIAL_NETS if n.version == address.version):
        return "reserved"
    return PUBLIC


def refusal(address: IPAddress, allow: AllowList, *, host_allowed: bool = False) -> str | None:
    """Why the policy refuses to connect to `address` (None: it may), for a host that is
    allow-listed by name or not."""
    kind = classify(address)
    if kind in NEVER:
        return f"{address} is {_article(kind)} {kind} address, never a webhook's"
    if kind == PUBLIC or allow.covers(address) or (kind == PRIVATE and host_allowed):
        return None
    listed = "its network is not" if host_allowed else "it is not"
    return f"{address} is {_article(kind)} {kind} address and {listed} in {ENV}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class Target:
    """A URL the policy accepted (before DNS): where to connect and what to ask for."""

    scheme: str
    host: str  # ASCII (IDNA), lower case, no brackets, no trailing dot: Host header and SNI
    port: int
    path: str  # path and query, as sent in the request line
    literal: IPAddress | None  # the host, when it is an address
    host_allowed: bool  # the host name is allow-listed

    @property
    def https(self) -> bool:
        return self.scheme == "https"


def _ascii_host(host: str) -> str | None:
    """The host as lower-case ASCII (IDNA for other scripts, so fullwidth digits and dots
    become what they stand for), or None when it is not a valid host name."""
    name = host.strip().lower()
    if not name:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            return None
    bare = name[:-1] if name.endswith(".") else name
    if not bare or len(bare) > 253 or not all(_LABEL.fullmatch(p) for p in bare.split(".")):
        return None
    return name


def check_url(url: str, allow: AllowList) -> Target:
    """Accept a webhook URL or raise `Refused` (no DNS lookup: see `resolve`)."""
    if not isinstance(url, str) or not url:
        raise Refused("A webhook URL is required.")
    if len(url) > MAX_URL_CHARS:
        raise Refused(f"A webhook URL may have at most {MAX_URL_CHARS} characters.")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise Refused("A webhook URL may not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
        raw_host = parts.hostname
        has_userinfo = "@" in parts.netloc
    except ValueError as exc:
        raise Refused(f"Not a valid URL: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused("A webhook URL must be https:// (http:// only for allow-listed hosts).")
    if has_userinfo:
        raise Refused("A webhook URL may not carry a user name or password.")
    if not raw_host:
        raise Refused("A webhook URL must name a host.")
    if port == 0:
        raise Refused("A webhook URL may not use port 0.")
    literal: IPAddress | None = None
    if ":" in raw_host:  # [IPv6]
        try:
            literal = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise Refused(f"{raw_host!r} is not a valid IPv6 address.") from None
        host = str(literal)
    else:
        ascii_host = _ascii_host(raw_host)
        if ascii_host is None:
            raise Refused(f"{raw_host!r} is not a valid host name.")
        host = ascii_host.rstrip(".")
        literal = _ipv4_literal(ascii_host)
    host_allowed = literal is None and allow.allows_host(host)
    if literal is not None:
        reason = refusal(literal, allow)
        if reason:
            raise Refused(reason)
        plain_http = allow.covers(literal)
    else:
        if not host_allowed and (host in LOCAL_NAMES or host.endswith(LOCAL_SUFFIXES)):
            raise Refused(f"{host} is a local name and it is not in {ENV}.")
        plain_http = host_allowed
    if scheme == "http" and not plain_http:
        raise Refused(f"A webhook URL must use https; http only for hosts in {ENV}.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        path=path,
        literal=literal,
        host_allowed=host_allowed,
    )


def _ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The address, when the host is an IPv4 address written a.b.c.d in decimal; `Refused`
    for any other numeric spelling (2130706433, 0x7f.1, 017700000001, 127.1, 127.0.0.1.),
    which resolvers read as an address too; None for a host name."""
    bare = host[:-1] if host.endswith(".") else host
    numeric = bool(_NUMERIC_LABEL.fullmatch(bare.rsplit(".", 1)[-1]))
    if not numeric:
        try:
            socket.inet_aton(bare)
        except (OSError, ValueError):
            return None
    try:
        address = ipaddress.IPv4Address(bare)
    except ValueError:
        address = None
    if address is None or str(address) != host:
        raise Refused(
            f"{host!r} is a numeric host not written as a.b.c.d; write the address as four "
            "decimal numbers (and it must be a public one)."
        )
    return address


# --------------------------------------------------------------------------- delivery


def resolve(
    target: Target, allow: AllowList, resolver: Resolver | None = None
) -> list[tuple[int, str]]:
    """The addresses to connect to, as (family, address): one lookup of the target's host,
    every address checked. `Refused` if any is refused (a name that resolves to a private
    address among public ones is refused as a whole); `socket.gaierror` passes through."""
    if target.literal is not None:
        found: list[tuple[int, IPAddress]] = [
            (socket.AF_INET6 if target.literal.version == 6 else socket.AF_INET, target.literal)
        ]
    else:
        lookup = resolver or socket.getaddrinfo
        found = []
        for info in lookup(target.host, target.port, 0, socket.SOCK_STREAM):
            family, sockaddr = info[0], info[4]
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                found.append((family, ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])))
            except ValueError:
                raise Refused(
                    f"{target.host} resolves to {sockaddr[0]!r}, not an address."
                ) from None
        if not found:
            raise Refused(f"{target.host} resolves to no IPv4 or IPv6 address.")
    for _, address in found:
        reason = refusal(address, allow, host_allowed=target.host_allowed)
        if reason:
            where = "" if target.literal is not None else f"{target.host} resolves to "
            raise Refused(where + reason)
    return list(dict.fromkeys((family, str(address)) for family, address in found))
