"""What a notification is, apart from any database or network: the URL a run may name (SSRF rules),
the signature of its body, and when a failed delivery is tried again.

A URL is http(s) with a host, and every address its host resolves to must be public: loopback,
link-local, private, multicast, unspecified and reserved addresses are refused (a webhook must not
probe the platform's own network), unless `EMGAPI_NOTIFY__ALLOWED_PRIVATE_HOSTS` names the host or a
network holding the address. It is checked when a run asks for it, and again at each delivery, which
then connects to the very address it checked (no second DNS answer in between)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import SplitResult, urlsplit

from emgapiv2.config import NotifySettings, get_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SIGNATURE_HEADER = "X-Emgapi-Signature"
EVENT_HEADER = "X-Emgapi-Event"
DELIVERY_HEADER = "X-Emgapi-Delivery"


class UrlRefused(ValueError):
    """The URL may not be notified; the message says why."""


class UrlUnresolved(UrlRefused):
    """Its host does not resolve (now): a delivery tries again later; a request is refused."""


@dataclass(frozen=True)
class Target:
    """Where a delivery connects: the URL's host resolved to `address`, checked."""

    url: str
    parts: SplitResult
    host: str
    port: int
    address: str

    @property
    def connect_url(self) -> str:
        """The URL with its host replaced by the checked address (the Host header and TLS name keep the host)."""
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return self.parts._replace(netloc=f"{literal}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        default = 443 if self.parts.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def check_url_syntax(url: str, max_length: int) -> SplitResult:
    """http(s), a host, a port if any that is a number, no credentials: else UrlRefused saying which."""
    if len(url) > max_length:
        raise UrlRefused(f"the URL is {len(url)} characters long; the most is {max_length}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"the URL must be http or https, not {parts.scheme or 'schemeless'!r}")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL may not hold credentials (sign with your webhook secret instead)")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number, or out of range)
    except ValueError as exc:
        raise UrlRefused(f"the URL's port is invalid: {exc}") from None
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise UrlRefused("the URL holds spaces or control characters")
    return parts


def why_refused(address: IPAddress) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return why_refused(address.ipv4_mapped)
    for kind, flag in (
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("an unspecified address", address.is_unspecified),
        ("a reserved address", address.is_reserved),
        ("a private address", address.is_private),
    ):
        if flag:
            return kind
    return None if address.is_global else "not a public address"


def _allowed(host: str, address: IPAddress, allowed: list[str]) -> bool:
    for entry in allowed:
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name, not a network
    return False


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlUnresolved(f"the URL's host {host!r} does not resolve: {exc}") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


def check_url(url: str, settings: NotifySettings | None = None) -> Target:
    """The URL checked, its host resolved: every address must be public or allowed; else UrlRefused."""
    settings = settings or get_settings().notify
    parts = check_url_syntax(url, settings.max_url_length)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not addresses:
        raise UrlUnresolved(f"the URL's host {host!r} resolves to no address")
    for address in addresses:
        why = why_refused(address)
        if why and not _allowed(host, address, settings.allowed_private_hosts):
            named = "" if host == str(address) else f"{host!r} resolves to "
            raise UrlRefused(
                f"the URL's host {named}{address}, {why}, is refused: notifications go to public addresses "
                "unless EMGAPI_NOTIFY__ALLOWED_PRIVATE_HOSTS allows it"
            )
    return Target(url=url, parts=parts, host=host, port=port, address=str(addresses[0]))


def sign(secret: str, body: bytes) -> str:
    """The X-Emgapi-Signature header's value, as GitHub signs webhooks: `sha256=<hex HMAC-SHA256 of the body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(attempts: int, settings: NotifySettings) -> timedelta:
    """The wait after the `attempts`-th failed attempt (1, 2, …): exponential, bounded."""
    seconds = settings.backoff_seconds * settings.backoff_factor ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.max_backoff_seconds))


def next_attempt_at(created_at: datetime, attempts: int, now: datetime, settings: NotifySettings) -> datetime | None:
    """When to try again after `attempts` failures, or None: the next try would fall past the give-up time."""
    at = now + retry_delay(attempts, settings)
    return None if at > created_at + timedelta(hours=settings.give_up_after_hours) else at
