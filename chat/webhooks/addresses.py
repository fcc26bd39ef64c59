"""Where webhooks may go: URL form, and a host that resolves only to public addresses.

Checked at registration and again before every attempt (a name may be re-pointed since):
every address the host resolves to must be globally routable unicast, unless
``WEBHOOK_ALLOW_PRIVATE`` is on. A webhook must never be a way into the service's network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from flask import current_app

from chat.errors import Kind, ServiceError

MAX_URL_LENGTH = 2048


class UnsafeAddress(Exception):
    """The URL's host resolves to an address webhooks may not reach."""


class Unresolvable(Exception):
    """The URL's host does not resolve (now)."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(text: str) -> bool:
    """Whether a webhook may connect to this address: globally routable unicast only."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if address.version == 6:
        inner = _embedded_ipv4(address)
        if inner is not None and not address_is_public(str(inner)):
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def resolve(host: str, port: int, *, allow_private: bool | None = None) -> list[str]:
    """Every address ``host`` resolves to, all of them allowed, or an exception saying why.

    All must be allowed, not just one: a name that also resolves to an internal address
    could be connected there. ``allow_private`` defaults to ``WEBHOOK_ALLOW_PRIVATE`` (device
    notifications pass their own setting)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"the host {host!r} does not resolve") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise Unresolvable(f"the host {host!r} does not resolve")
    if allow_private is None:
        allow_private = current_app.config["WEBHOOK_ALLOW_PRIVATE"]
    if not allow_private:
        refused = [a for a in addresses if not address_is_public(a)]
        if refused:
            raise UnsafeAddress(
                f"the address of {host!r} is not allowed: webhooks only go to public addresses"
            )
    return addresses


def parse_url(url: str) -> tuple[str, int]:
    """Check a webhook URL's form; returns (host, port). Raises ``ServiceError`` (invalid)."""
    if len(url) > MAX_URL_LENGTH:
        raise ServiceError(Kind.INVALID, f"url is longer than {MAX_URL_LENGTH} characters", field="url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ServiceError(Kind.INVALID, "url must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ServiceError(
            Kind.INVALID, "url is not a valid URL (check the host and port)", field="url"
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ServiceError(Kind.INVALID, "url must start with http:// or https://", field="url")
    if not parts.hostname:
        raise ServiceError(Kind.INVALID, "url has no host", field="url")
    if port == 0:
        raise ServiceError(Kind.INVALID, "url has port 0: give a port from 1 to 65535", field="url")
    if parts.username is not None or parts.password is not None:
        # Credentials would be stored and listed in clear; the signature authenticates us.
        raise ServiceError(
            Kind.INVALID,
            "url must not contain a user name or password: verify X-Chat-Signature instead",
            field="url",
        )
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def check_url(url: str) -> None:
    """The whole registration-time check: form, then where the host resolves now."""
    host, port = parse_url(url)
    try:
        resolve(host, port)
    except Unresolvable as exc:
        raise ServiceError(Kind.INVALID, f"url: {exc}; give a host that resolves", field="url") from None
    except UnsafeAddress as exc:
        raise ServiceError(Kind.INVALID, f"url: {exc}", field="url") from None
