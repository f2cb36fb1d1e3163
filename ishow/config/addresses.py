"""Host, origin and token rules: pure string checks shared by config validation and the request guard."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MIN_REMOTE_TOKEN_CHARS = 16
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def token_problem(token: str, loopback: bool) -> str | None:
    """Why ``token`` is not acceptable (the message never contains the token), or None."""
    if not token.isascii() or not token.isprintable() or " " in token:
        return "must be printable ASCII without spaces (it travels in an HTTP header)"
    if not loopback and len(token) < MIN_REMOTE_TOKEN_CHARS:
        return (
            f"too short: {len(token)} characters; off loopback at least {MIN_REMOTE_TOKEN_CHARS} are required "
            "(`ishow token` prints a random one)"
        )
    return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header (or ``allowed_hosts`` entry) → (lower-case name without brackets, port or None); None when
    malformed."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/\\@?# \t"):
        return None
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:])
            if port is None:
                return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        return name, port
    name, sep, port_text = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if sep:
        port = _port(port_text)
        if port is None:
            return None
    name = name.rstrip(".")
    if not is_ip(name) and not _HOSTNAME.match(name):
        return None
    return name, port


def _port(text: str) -> int | None:
    if not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normalize_origin(value: str) -> str | None:
    """``scheme://host:port`` (explicit port, lower case) of an ``Origin`` value; None when malformed or "null"."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = split_host(parts.netloc)
    if host is None:
        return None
    name, port = host
    shown = f"[{name}]" if ":" in name else name
    return f"{parts.scheme}://{shown}:{port or _DEFAULT_PORTS[parts.scheme]}"


def host_entry_problem(entry: str) -> str | None:
    return None if split_host(entry) is not None else "not a host name, IP or name:port (no scheme, no path)"


def origin_entry_problem(entry: str) -> str | None:
    if normalize_origin(entry) is None:
        return "not an origin: expected scheme://host[:port] with http or https and no path, e.g. https://x.example"
    return None
